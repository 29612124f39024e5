import Foundation
import MoEModels
import Testing

/// Inputs users have (issue 12, item 5) and numbers they can trust (item 6), through the release binary.
@Suite struct FieldInputsCLITests {
    static let demo = CLI.repoRoot.appendingPathComponent("assets/demo")
    static let demoTokenizer = CLI.repoRoot.appendingPathComponent("assets/tokenizers/demo-dsv3")
    static var demoArguments: [String] {
        [
            "run", "--checkpoint", demo.appendingPathComponent("checkpoint/step-800").path,
            "--model-args", demo.appendingPathComponent("model_args.json").path, "--quiet",
        ]
    }

    static func onlyResults(in folder: URL) throws -> [String: Any] {
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasPrefix("eval_results_") }
        #expect(names.count == 1, "\(names)")
        let data = try Data(contentsOf: folder.appendingPathComponent(try #require(names.first)))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    @Test func routingDataFolderLikeTorchTitansDatasetPath() throws {
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let data = dir.appendingPathComponent("c4_like")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        let text = try String(contentsOf: Self.demo.appendingPathComponent("demo_text.txt"), encoding: .utf8)
        let lines = text.split(separator: "\n").map(String.init)
        let records = lines.map { try! String(decoding: JSONSerialization.data(withJSONObject: ["text": $0, "url": "x"]), as: UTF8.self) }
        try Data(records.joined(separator: "\n").utf8).write(to: data.appendingPathComponent("data.json"))
        try Data("a note that is not data".utf8).write(to: data.appendingPathComponent("README.md"))
        let out = dir.appendingPathComponent("out")
        let r = try CLI.run(
            Self.demoArguments + [
                "--tokenizer", Self.demoTokenizer.path, "--data", data.path, "--preset", "30s",
                "--output-dir", out.path,
            ])
        #expect(r.status == 0, "\(r.stderr)")
        let input = try #require((try Self.onlyResults(in: out)["moe_eval"] as? [String: Any])?["routing_input"] as? [String: Any])
        #expect(input["source"] as? String == data.path && input["kind"] as? String == "text")
        #expect((input["text_tokens"] as? Int ?? 0) >= 256, "at least one routing window of text")

        let empty = dir.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        let bad = try CLI.run(
            Self.demoArguments + [
                "--tokenizer", Self.demoTokenizer.path, "--data", empty.path, "--preset", "30s",
                "--output-dir", out.path,
            ])
        #expect(bad.status == 1 && bad.stderr.contains("\(empty.path): no routing data files in the folder"), "\(bad.stderr)")
    }

    @Test func hfFolderUsesItsOwnTokenizer() throws {
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let hf = dir.appendingPathComponent("hf")
        let c = try CLI.run([
            "convert", "--checkpoint", Self.demo.appendingPathComponent("checkpoint/step-800").path,
            "--model-args", Self.demo.appendingPathComponent("model_args.json").path,
            "--tokenizer", Self.demoTokenizer.path, "--output", hf.path,
        ])
        #expect(c.status == 0, "\(c.stderr)")
        #expect(FileManager.default.fileExists(atPath: hf.appendingPathComponent("tokenizer.json").path))
        let out = dir.appendingPathComponent("out")
        // No --tokenizer, --config or --model-args: config.json and tokenizer.json come from the folder.
        let r = try CLI.run(["run", "--checkpoint", hf.path, "--preset", "30s", "--quiet", "--output-dir", out.path])
        #expect(r.status == 0, "\(r.stderr)")
        let input = try #require((try Self.onlyResults(in: out)["moe_eval"] as? [String: Any])?["routing_input"] as? [String: Any])
        #expect(input["kind"] as? String == "text")
    }

    @Test func missingTokenizerOrArgsNameConfigAndModuleFirst() throws {
        let checkpoint = CLI.dsv3Fixtures.appendingPathComponent("v022_softmax_basic/checkpoint")
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let noTokenizer = try CLI.run(["run", "--checkpoint", checkpoint.path, "--preset", "30s", "--quiet", "--output-dir", dir.path])
        #expect(noTokenizer.status == 1)
        let first = noTokenizer.stderr.split(separator: "\n").first.map(String.init) ?? ""
        #expect(first.hasPrefix("error: no tokenizer") && first.contains("--module") && first.contains("--config"), "\(noTokenizer.stderr)")
        let noArgs = try CLI.run([
            "run", "--checkpoint", checkpoint.path, "--preset", "30s", "--routing-input", "random", "--quiet",
            "--output-dir", dir.path,
        ])
        #expect(noArgs.status == 1)
        let firstArgs = noArgs.stderr.split(separator: "\n").first.map(String.init) ?? ""
        #expect(firstArgs.contains("no model args") && firstArgs.contains("--module deepseek_v3 --config"), "\(noArgs.stderr)")
    }

    /// `--tasks`/`--limit` as lm-eval spells them; the 30s preset writes the seed's inference keys as null.
    @Test func lmEvalFlagNamesAndNullInferenceKeys() throws {
        let data = CLI.repoRoot.appendingPathComponent("../shared/data").standardized
        try #require(
            FileManager.default.fileExists(atPath: data.appendingPathComponent("hellaswag").path),
            "needs ../shared/data beside the repository")
        let out = try CLI.scratch()
        defer { CLI.cleanUp(out) }
        let r = try CLI.run(
            Self.demoArguments + [
                "--tokenizer", Self.demoTokenizer.path, "--preset", "30s", "--tasks", "hellaswag",
                "--limit", "2", "--data-dir", data.path, "--output-dir", out.path,
            ])
        #expect(r.status == 0, "\(r.stderr)")
        let results = try Self.onlyResults(in: out)
        let lmEval = try #require((results["moe_eval"] as? [String: Any])?["lm_eval"] as? [String: Any])
        #expect(lmEval["tasks"] as? [String] == ["hellaswag"] && lmEval["limit"] as? Int == 2 && lmEval["status"] as? String == "ran")
        let inference = try #require(results["inference_performance"] as? [String: Any])
        #expect(Set(inference.keys) == ["latency_ms", "throughput_tokens_per_sec", "memory_allocated_gb", "memory_reserved_gb"])
        #expect(inference.values.allSatisfy { $0 is NSNull })
    }

    @Test func checkpointDirIsTheStepFolderEvaluated() throws {
        let out = try CLI.scratch()
        defer { CLI.cleanUp(out) }
        let root = Self.demo.appendingPathComponent("checkpoint")
        let r = try CLI.run([
            "run", "--checkpoint", root.path, "--model-args", Self.demo.appendingPathComponent("model_args.json").path,
            "--routing-input", "random", "--preset", "30s", "--quiet", "--output-dir", out.path,
        ])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(try Self.onlyResults(in: out)["checkpoint_dir"] as? String == root.appendingPathComponent("step-800").path)
    }

    @Test func inspectPrintsCountsAbove2To31() throws {
        let r = try CLI.run([
            "inspect", "--checkpoint", CLI.dsv3Fixtures.appendingPathComponent("v022_softmax_basic/checkpoint").path,
            "--flavor", "16B",
        ])
        let total = try #require(Flavors.args(for: "16B")).totalParameters
        #expect(total > Int(Int32.max))
        #expect(r.stdout.contains(String(format: "total %.3fB (%@)", Double(total) / 1e9, String(total))), "\(r.stdout)")
        #expect(!r.stdout.contains("(-"), "no wrapped negative counts")
    }
}
