import Foundation
import Testing

/// Every malformed file or argument ends the command with one clear line on stderr naming the file
/// (and the tensor), a non-zero status, no crash, and no output file.
@Suite struct BadInputCLITests {
    static let variant = "v022_softmax_basic"

    struct Setup {
        let dir: URL
        var checkpoint: URL { dir.appendingPathComponent("checkpoint") }
        var modelArgs: URL { dir.appendingPathComponent("model_args.json") }
        var tokens: URL { dir.appendingPathComponent("tokens.json") }
        var output: URL { dir.appendingPathComponent("out.json") }
    }

    /// A scratch copy of a reference variant that a test may damage.
    func setup() throws -> Setup {
        let scratch = try CLI.scratch(copying: CLI.dsv3Fixtures.appendingPathComponent(Self.variant))
        return Setup(dir: scratch.appendingPathComponent(Self.variant))
    }

    func forward(_ s: Setup, modelArgs: URL? = nil, extra: [String] = []) throws -> CLI.Result {
        try CLI.run(
            [
                "forward", "--checkpoint", s.checkpoint.path, "--model-args", (modelArgs ?? s.modelArgs).path,
                "--tokens-file", s.tokens.path, "--output", s.output.path,
            ] + extra)
    }

    /// One error line containing every fragment; status ≠ 0; no crash report; no output file.
    func expectCleanFailure(_ r: CLI.Result, _ fragments: [String], output: URL?, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(r.status != 0, sourceLocation: sourceLocation)
        #expect(r.status < 128, "terminated by a signal: \(r.stderr)", sourceLocation: sourceLocation)
        let lines = r.stderrLines
        #expect(lines.count == 1, "expected one line, got: \(r.stderr)", sourceLocation: sourceLocation)
        for fragment in fragments {
            #expect(r.stderr.contains(fragment), "missing \"\(fragment)\" in: \(r.stderr)", sourceLocation: sourceLocation)
        }
        #expect(!r.stderr.contains("Fatal error"), sourceLocation: sourceLocation)
        if let output { #expect(!FileManager.default.fileExists(atPath: output.path), sourceLocation: sourceLocation) }
    }

    @Test func goodRunWritesOutput() throws {
        let s = try setup()
        defer { CLI.cleanUp(s.dir.deletingLastPathComponent()) }
        let r = try forward(s)
        #expect(r.status == 0, "\(r.stderr)")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: s.output)) as? [String: Any]
        #expect((json?["logits"] as? [Any])?.count == 2)
        #expect((json?["routing"] as? [String: Any])?.keys.sorted() == ["1", "2"])
    }

    @Test func missingMetadata() throws {
        let s = try setup()
        defer { CLI.cleanUp(s.dir.deletingLastPathComponent()) }
        try FileManager.default.removeItem(at: s.checkpoint.appendingPathComponent(".metadata"))
        expectCleanFailure(try forward(s), [s.checkpoint.path], output: s.output)
    }

    @Test func truncatedDistcp() throws {
        let s = try setup()
        defer { CLI.cleanUp(s.dir.deletingLastPathComponent()) }
        let file = s.checkpoint.appendingPathComponent("__0_0.distcp")
        let handle = try FileHandle(forWritingTo: file)
        try handle.truncate(atOffset: 100_000)
        try handle.close()
        expectCleanFailure(try forward(s), ["__0_0.distcp", "tensor '", "past the end"], output: s.output)
    }

    /// `.metadata` files damaged with torch's own Metadata objects (offset past the end, unknown dtype,
    /// a pickle naming subprocess.call) on the checkpoint-reader fixture they describe.
    @Test(arguments: [
        ("offset_past_end.metadata", ["past the end", "tensor 'f32'"]),
        ("unknown_dtype.metadata", ["tensor 'f32'", "dtype"]),
        ("disallowed_global.metadata", ["subprocess.call"]),
    ])
    func damagedMetadata(file: String, fragments: [String]) throws {
        let scratch = try CLI.scratch(copying: CLI.checkpointFixtures.appendingPathComponent("dcp_dtypes"))
        defer { CLI.cleanUp(scratch) }
        let checkpoint = scratch.appendingPathComponent("dcp_dtypes")
        let metadata = checkpoint.appendingPathComponent(".metadata")
        try FileManager.default.removeItem(at: metadata)
        try FileManager.default.copyItem(at: CLI.checkpointFixtures.appendingPathComponent("bad_metadata/\(file)"), to: metadata)
        let r = try CLI.run(["inspect", "--checkpoint", checkpoint.path])
        expectCleanFailure(r, [checkpoint.path] + fragments, output: nil)
    }

    @Test func tensorMissingFromCheckpoint() throws {
        let s = try setup()
        defer { CLI.cleanUp(s.dir.deletingLastPathComponent()) }
        var args = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: s.modelArgs)) as? [String: Any])
        args["n_layers"] = (args["n_layers"] as! Int) + 1
        let file = s.dir.appendingPathComponent("more_layers.json")
        try JSONSerialization.data(withJSONObject: args).write(to: file)
        expectCleanFailure(try forward(s, modelArgs: file), [s.checkpoint.path, "tensor layers.3.", "is missing"], output: s.output)
    }

    @Test func shapeDisagreesWithModelArgs() throws {
        let s = try setup()
        defer { CLI.cleanUp(s.dir.deletingLastPathComponent()) }
        var args = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: s.modelArgs)) as? [String: Any])
        args["moe_inter_dim"] = (args["moe_inter_dim"] as! Int) * 2
        let file = s.dir.appendingPathComponent("wide.json")
        try JSONSerialization.data(withJSONObject: args).write(to: file)
        expectCleanFailure(
            try forward(s, modelArgs: file), [s.checkpoint.path, "moe.experts.w1", "has shape", "model args imply"], output: s.output)
    }

    @Test func malformedModelArgsJSON() throws {
        let s = try setup()
        defer { CLI.cleanUp(s.dir.deletingLastPathComponent()) }
        let file = s.dir.appendingPathComponent("broken.json")
        try Data(#"{"dim": 32, "n_layers": "#.utf8).write(to: file)
        expectCleanFailure(try forward(s, modelArgs: file), [file.path, "malformed JSON"], output: s.output)
    }

    @Test func malformedTOML() throws {
        let s = try setup()
        defer { CLI.cleanUp(s.dir.deletingLastPathComponent()) }
        let file = s.dir.appendingPathComponent("train.toml")
        try Data("[model]\nname = \"deepseek_v3\"\nflavor = \"debugmodel\n".utf8).write(to: file)
        let r = try CLI.run([
            "forward", "--checkpoint", s.checkpoint.path, "--config", file.path,
            "--tokens-file", s.tokens.path, "--output", s.output.path,
        ])
        expectCleanFailure(r, [file.path, "malformed TOML at line 3"], output: s.output)
    }

    @Test(arguments: [
        (#"{"tokens": [[1, 2], [3]]}"#, "equal-length"),
        (#"{"tokens": [[1, -2]]}"#, "not a non-negative integer"),
        (#"{"tokens": [[1, 2.5]]}"#, "not a non-negative integer"),
        (#"{"ids": []}"#, "\"tokens\" array"),
        (#"{"tokens": [[1, 2]"#, "malformed JSON"),
        (#"{"tokens": [[true, 1]]}"#, "tokens[0][0] is the boolean true, not a non-negative integer id"),
        (#"{"tokens": [[1, false]]}"#, "tokens[0][1] is the boolean false"),
        (#"{"tokens": [[1, "2"]]}"#, "tokens[0][1] is the string \"2\""),
        (
            "{\"tokens\": [[" + Array(repeating: "1", count: 65).joined(separator: ",") + "]]}",
            "rows have 65 ids, more than the model's max_seq_len 64"
        ),
    ])
    func badTokensFile(content: String, fragment: String) throws {
        let s = try setup()
        defer { CLI.cleanUp(s.dir.deletingLastPathComponent()) }
        try Data(content.utf8).write(to: s.tokens)
        expectCleanFailure(try forward(s), [s.tokens.path, fragment], output: s.output)
    }

    @Test func tokenIdOutsideVocabulary() throws {
        let s = try setup()
        defer { CLI.cleanUp(s.dir.deletingLastPathComponent()) }
        try Data(#"{"tokens": [[1, 99999]]}"#.utf8).write(to: s.tokens)
        expectCleanFailure(try forward(s), ["token id 99999", "outside the vocabulary"], output: s.output)
    }

    @Test func existingOutputIsNotOverwritten() throws {
        let s = try setup()
        defer { CLI.cleanUp(s.dir.deletingLastPathComponent()) }
        try Data("keep me".utf8).write(to: s.output)
        let r = try forward(s)
        expectCleanFailure(r, [s.output.path, "already exists"], output: nil)
        #expect(try String(contentsOf: s.output, encoding: .utf8) == "keep me")
    }

    @Test func unwritableOutputLeavesNothingBehind() throws {
        let s = try setup()
        defer { CLI.cleanUp(s.dir.deletingLastPathComponent()) }
        let missing = s.dir.appendingPathComponent("no/such/folder/out.json")
        let r = try CLI.run([
            "forward", "--checkpoint", s.checkpoint.path, "--model-args", s.modelArgs.path,
            "--tokens-file", s.tokens.path, "--output", missing.path,
        ])
        expectCleanFailure(r, [missing.path, "does not exist"], output: missing)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: s.dir.path).filter { $0.hasSuffix(".tmp") }
        #expect(leftovers.isEmpty)
    }

    @Test func unknownFlavorPrintsTemplateFromShapes() throws {
        let s = try setup()
        defer { CLI.cleanUp(s.dir.deletingLastPathComponent()) }
        let r = try CLI.run(["inspect", "--checkpoint", s.checkpoint.path, "--flavor", "3B"])
        #expect(r.status != 0)
        let first = r.stderrLines.first ?? ""
        #expect(first.contains("unknown deepseek_v3 flavor \"3B\""), "\(r.stderr)")
        #expect(r.stderr.contains("\"dim\": 32"), "template filled from the checkpoint's shapes: \(r.stderr)")
    }

    @Test func noModelArgsAtAll() throws {
        let s = try setup()
        defer { CLI.cleanUp(s.dir.deletingLastPathComponent()) }
        let r = try CLI.run(["forward", "--checkpoint", s.checkpoint.path, "--tokens-file", s.tokens.path, "--output", s.output.path])
        #expect(r.status != 0)
        #expect(r.stderrLines.first?.contains("no model args") == true, "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: s.output.path))
    }

    @Test func badArgumentsAreUsageErrors() throws {
        let r = try CLI.run(["forward", "--era", "0.9", "--checkpoint", "x", "--tokens-file", "t", "--output", "o"])
        #expect(r.status != 0 && r.stderr.contains("--era must be 0.2 or 0.3"))
    }
}

@Suite struct InspectCLITests {
    @Test func reportsParametersAndMatch() throws {
        let dir = CLI.dsv3Fixtures.appendingPathComponent("v022_full_training")
        let r = try CLI.run([
            "inspect", "--checkpoint", dir.appendingPathComponent("checkpoint").path,
            "--model-args", dir.appendingPathComponent("model_args.json").path, "--json",
        ])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect((json["mismatches"] as? [Any])?.isEmpty == true)
        let roles = try #require(json["entries_by_role"] as? [String: Int])
        #expect((roles["optimizer"] ?? 0) > 0 && (roles["train_state"] ?? 0) == 2 && (roles["lr_scheduler"] ?? 0) > 0)
        #expect((json["tensors"] as? [Any])?.count == 28)
        #expect((json["total_params"] as? Int ?? 0) > (json["active_params"] as? Int ?? 0))
    }

    @Test func mismatchesExitWithStatusTwo() throws {
        let dir = CLI.dsv3Fixtures.appendingPathComponent("v022_softmax_basic")
        let r = try CLI.run(["inspect", "--checkpoint", dir.appendingPathComponent("checkpoint").path, "--flavor", "debugmodel"])
        #expect(r.status == 2)
        #expect(r.stdout.contains("mismatches with the given model args"))
        #expect(r.stdout.contains("tok_embeddings.weight: shape [160, 32], expected [2048, 256]"), "\(r.stdout)")
    }
}
