import Foundation
import MoECheckpoint
import Testing

/// Hostile model args and checkpoints through the real binary (issue 16): each used to trap, hang,
/// allocate until killed or exit 0 with null logits.
@Suite struct HardeningCLITests {
    static let variant = "v022_softmax_basic"

    /// A scratch copy of a reference variant and its model args as a mutable dictionary.
    func setup() throws -> (dir: URL, args: [String: Any]) {
        let scratch = try CLI.scratch(copying: CLI.dsv3Fixtures.appendingPathComponent(Self.variant))
        let dir = scratch.appendingPathComponent(Self.variant)
        let args = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("model_args.json"))) as? [String: Any])
        return (dir, args)
    }

    func forward(_ dir: URL, modelArgs: URL, extra: [String] = []) throws -> CLI.Result {
        try CLI.run(
            [
                "forward", "--checkpoint", dir.appendingPathComponent("checkpoint").path, "--model-args", modelArgs.path,
                "--tokens-file", dir.appendingPathComponent("tokens.json").path,
                "--output", dir.appendingPathComponent("out.json").path,
            ] + extra)
    }

    func expectOneLineFailure(_ r: CLI.Result, _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(r.status != 0, "exit 0: \(r.stdout.prefix(200))", sourceLocation: sourceLocation)
        #expect(r.status < 128, "terminated by a signal: \(r.stderr)", sourceLocation: sourceLocation)
        #expect(r.stderrLines.count == 1, "expected one line, got: \(r.stderr)", sourceLocation: sourceLocation)
        for fragment in fragments {
            #expect(r.stderr.contains(fragment), "missing \"\(fragment)\" in: \(r.stderr)", sourceLocation: sourceLocation)
        }
        #expect(!r.stderr.contains("Optional("), sourceLocation: sourceLocation)
    }

    /// Values as JSON text (test arguments must be Sendable).
    @Test(arguments: [
        ("n_heads", "4611686018427387904"),
        ("v_head_dim", "4611686018427387904"),
        ("original_seq_len", "0"),
        ("n_layers", "1000000000"),
        ("rope_theta", "0"),
        ("rope_theta", "-10000.0"),
        ("norm_eps", "-1e-5"),
    ])
    func hostileModelArgs(field: String, value: String) throws {
        let (dir, base) = try setup()
        defer { CLI.cleanUp(dir.deletingLastPathComponent()) }
        var args = base
        let wrapped = try JSONSerialization.jsonObject(with: Data("{\"v\": \(value)}".utf8)) as? [String: Any]
        args[field] = try #require(wrapped?["v"])
        let file = dir.appendingPathComponent("hostile.json")
        try JSONSerialization.data(withJSONObject: args).write(to: file)
        let r = try forward(dir, modelArgs: file)
        expectOneLineFailure(r, [file.path, field])
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("out.json").path))
    }

    @Test(arguments: ["nan", "0", "inf"])
    func finalNormEpsMustBeFinitePositive(value: String) throws {
        let (dir, _) = try setup()
        defer { CLI.cleanUp(dir.deletingLastPathComponent()) }
        let r = try forward(dir, modelArgs: dir.appendingPathComponent("model_args.json"), extra: ["--final-norm-eps", value])
        expectOneLineFailure(r, ["final norm eps"])
    }

    /// A safetensors checkpoint with TorchTitan names and the given shapes (fp32 zeros).
    func checkpoint(_ shapes: [String: [Int]]) throws -> (file: URL, dir: URL) {
        let dir = try CLI.scratch()
        let file = dir.appendingPathComponent("model.safetensors")
        let tensors = try shapes.map { name, shape in
            let bytes = [UInt8](repeating: 0, count: 4 * shape.reduce(1, *))
            return try bytes.withUnsafeBytes { try StoredTensor(name: name, dtype: .float32, shape: shape, copying: $0) }
        }
        try SafetensorsWriter.write(tensors, to: file)
        return (file, dir)
    }

    @Test func strayLayerIndexDoesNotMakeInspectLoop() throws {
        let (file, dir) = try checkpoint([
            "tok_embeddings.weight": [4, 2], "layers.0.attention_norm.weight": [2],
            "layers.2000000000.attention_norm.weight": [2],
        ])
        defer { CLI.cleanUp(dir) }
        let start = Date()
        let r = try CLI.run(["inspect", "--checkpoint", file.path])
        #expect(Date().timeIntervalSince(start) < 60)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("layers.2000000000.attention_norm.weight"))
        #expect(r.stdout.contains("\"n_layers\": 1"), "\(r.stdout)")
    }

    @Test func matrixStoredAsScalarDoesNotTrapShapeInference() throws {
        let names = [
            "tok_embeddings.weight", "layers.0.attention.kv_norm.weight", "layers.0.attention.wkv_a.weight",
            "layers.0.attention.wkv_b.weight", "layers.0.attention.wo.weight", "layers.0.feed_forward.w1.weight",
        ]
        let (file, dir) = try checkpoint(Dictionary(uniqueKeysWithValues: names.map { ($0, [Int]()) }))
        defer { CLI.cleanUp(dir) }
        let inspect = try CLI.run(["inspect", "--checkpoint", file.path])
        #expect(inspect.status == 0, "\(inspect.stderr)")
        // The unknown-flavor path prints a template inferred from the same shapes.
        let template = try CLI.run(["inspect", "--checkpoint", file.path, "--flavor", "3B"])
        #expect(template.status == 1, "\(template.stderr)")
        #expect(template.stderrLines.first?.contains("unknown deepseek_v3 flavor \"3B\"") == true, "\(template.stderr)")
    }
}
