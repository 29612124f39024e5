import Foundation
import MoEModels
import Testing

/// `--module deepseek_v3 --config deepseek_v3_debugmodel` (TorchTitan 0.3.0's registry) against the equivalent
/// `--model-args`: the model args file is the golden's (extracted from TorchTitan 0.3.0's own registry source by
/// tools/reference/torchtitan030_registry.py), with `max_seq_len` set to the overridden training seq_len. The
/// checkpoint is a debugmodel-shaped safetensors file with TorchTitan 0.3.0 key names (`lm_head.weight`,
/// `routed_experts.inner_experts.w1_EFD`, `expert_bias_E`) and deterministic weights, written by the test: no
/// checkpoint of that size is committed.
@Suite(.serialized) struct RegistryConfigCLITests {
    static let golden = CLI.repoRoot.appendingPathComponent("Tests/MoEModelsTests/Fixtures/torchtitan030_registry.json")
    static let seqLen = 256

    /// The golden's debugmodel args with `max_seq_len` = the overridden training seq_len, as a `--model-args` file.
    static func goldenModelArgs(to url: URL) throws -> ModelArgs {
        let root = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: golden)) as? [String: Any])
        let configs = try #require(root["configs"] as? [String: Any])
        var fields = try #require((configs["deepseek_v3_debugmodel"] as? [String: Any])?["model_args"] as? [String: Any])
        fields["max_seq_len"] = seqLen
        let data = try JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
        try data.write(to: url)
        return try ModelArgs.decode(json: data, source: url.path)
    }

    /// 0.3.0's spelling of a canonical (v0.2) key.
    static func v030Name(_ canonical: String) -> String {
        if canonical == "output.weight" { return "lm_head.weight" }
        if canonical.hasSuffix("moe.expert_bias") { return canonical + "_E" }
        for (w, suffix) in [("w1", "w1_EFD"), ("w2", "w2_EDF"), ("w3", "w3_EFD")] where canonical.hasSuffix("moe.experts." + w) {
            return canonical.replacingOccurrences(of: "moe.experts." + w, with: "moe.routed_experts.inner_experts." + suffix)
        }
        return canonical
    }

    /// A bf16 safetensors file with every tensor the args imply: norms 1, other weights small deterministic values.
    static func writeCheckpoint(args: ModelArgs, to url: URL) throws {
        var shapes = args.expectedShapes()
        for layer in 0..<args.nLayers where args.isMoELayer(layer) { shapes["layers.\(layer).moe.expert_bias"] = [args.moeArgs.numExperts] }
        let names = shapes.keys.sorted()
        var header: [String: Any] = [:]
        var offset = 0
        for name in names {
            let count = shapes[name]!.reduce(1, *)
            header[v030Name(name)] = ["dtype": "BF16", "shape": shapes[name]!, "data_offsets": [offset, offset + 2 * count]]
            offset += 2 * count
        }
        var headerData = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while headerData.count % 8 != 0 { headerData.append(0x20) }
        var file = Data()
        var length = UInt64(headerData.count).littleEndian
        file.append(Data(bytes: &length, count: 8))
        file.append(headerData)
        var body = [UInt16](repeating: 0, count: offset / 2)
        var index = 0
        var state: UInt32 = 12345
        for name in names {
            let count = shapes[name]!.reduce(1, *)
            let isNorm = name.hasSuffix("norm.weight")
            for _ in 0..<count {
                state = state &* 1_664_525 &+ 1_013_904_223
                let value: Float = isNorm ? 1 : (Float(state >> 8) / Float(1 << 24) - 0.5) * 0.08
                body[index] = UInt16(value.bitPattern >> 16)
                index += 1
            }
        }
        body.withUnsafeBytes { file.append(contentsOf: $0) }
        try file.write(to: url)
    }

    static func prepare() throws -> (dir: URL, checkpoint: URL, argsFile: URL) {
        let dir = try CLI.scratch()
        let argsFile = dir.appendingPathComponent("model_args.json")
        let args = try goldenModelArgs(to: argsFile)
        let checkpoint = dir.appendingPathComponent("checkpoint")
        try FileManager.default.createDirectory(at: checkpoint, withIntermediateDirectories: true)
        try writeCheckpoint(args: args, to: checkpoint.appendingPathComponent("model.safetensors"))
        return (dir, checkpoint, argsFile)
    }

    static let registry = ["--module", "deepseek_v3", "--config", "deepseek_v3_debugmodel", "--training.seq_len", String(seqLen)]

    @Test func forwardWithRegistryNameEqualsModelArgs() throws {
        let (dir, checkpoint, argsFile) = try Self.prepare()
        defer { CLI.cleanUp(dir) }
        let tokens = dir.appendingPathComponent("tokens.json")
        try Data(#"{"tokens": [[1, 77, 300, 2047, 5, 900, 12, 64], [3, 1500, 8, 8, 42, 1999, 0, 7]]}"#.utf8).write(to: tokens)
        let viaRegistry = dir.appendingPathComponent("registry.json"), viaArgs = dir.appendingPathComponent("args.json")
        let a = try CLI.run(
            ["forward", "--checkpoint", checkpoint.path, "--tokens-file", tokens.path, "--output", viaRegistry.path] + Self.registry)
        #expect(a.status == 0, "\(a.stderr)")
        let b = try CLI.run([
            "forward", "--checkpoint", checkpoint.path, "--tokens-file", tokens.path, "--output", viaArgs.path,
            "--model-args", argsFile.path,
        ])
        #expect(b.status == 0, "\(b.stderr)")
        let left = try Data(contentsOf: viaRegistry), right = try Data(contentsOf: viaArgs)
        #expect(left.count > 1000 && left == right, "logits and routing must be byte-identical")
    }

    @Test func runWithRegistryNameEqualsModelArgs() throws {
        let (dir, checkpoint, argsFile) = try Self.prepare()
        defer { CLI.cleanUp(dir) }
        let common = ["run", "--checkpoint", checkpoint.path, "--preset", "30s", "--routing-input", "random", "--quiet"]
        let outA = dir.appendingPathComponent("a"), outB = dir.appendingPathComponent("b")
        let a = try CLI.run(common + Self.registry + ["--output-dir", outA.path])
        #expect(a.status == 0, "\(a.stderr)")
        let b = try CLI.run(common + ["--model-args", argsFile.path, "--output-dir", outB.path])
        #expect(b.status == 0, "\(b.stderr)")
        func results(_ folder: URL) throws -> [String: Any] {
            let name = try #require(try FileManager.default.contentsOfDirectory(atPath: folder.path).first { $0.hasSuffix(".json") })
            return try #require(
                try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent(name))) as? [String: Any])
        }
        let ra = try results(outA), rb = try results(outB)
        func canonical(_ value: Any?) throws -> Data {
            try JSONSerialization.data(withJSONObject: try #require(value), options: [.sortedKeys])
        }
        // The registry config states expert_parallel_degree 1, which adds the EP-overload metrics for that degree;
        // a model args file states none. Everything else must be identical.
        func withoutDegreeMetrics(_ value: Any?) -> Any? {
            guard let object = value as? [String: Any] else { return value }
            return object.filter { !$0.key.hasPrefix("ep_") && $0.key != "step_overload_factor" }.mapValues { withoutDegreeMetrics($0)! }
        }
        let aggregate = (ra["routing_stats"] as? [String: Any])?["aggregate"] as? [String: Any]
        #expect(aggregate?["ep_degree"] as? Int == 1)
        #expect(try canonical(withoutDegreeMetrics(ra["routing_stats"])) == canonical(withoutDegreeMetrics(rb["routing_stats"])))
        let layers = (ra["routing_stats"] as? [String: Any])?.keys.filter { $0.hasPrefix("layer_") } ?? []
        #expect(layers.count == 5, "debugmodel has five MoE layers")
        #expect(try canonical(ra["model_args"]) == canonical(rb["model_args"]))
        let costA = try #require(ra["computational_cost"] as? [String: Any]),
            costB = try #require(rb["computational_cost"] as? [String: Any])
        #expect(costA["num_flops_per_token"] as? Int == costB["num_flops_per_token"] as? Int)
        #expect(costA["flops_seq_len"] as? Int == Self.seqLen && costB["flops_seq_len"] as? Int == Self.seqLen)
        // The config block says what the registry resolved, with the override.
        let config = try #require(ra["config"] as? [String: Any])
        #expect(config["module"] as? String == "deepseek_v3" && config["config"] as? String == "deepseek_v3_debugmodel")
        #expect((config["training"] as? [String: Any])?["seq_len"] as? Int == Self.seqLen)
        #expect(config["hf_assets_path"] as? String == "./tests/assets/tokenizer")
        #expect(((ra["moe_eval"] as? [String: Any])?["key_naming"] as? String) == "v0_3")
    }

    @Test func unknownRegistryNameListsTheModulesConfigs() throws {
        let r = try CLI.run([
            "inspect", "--checkpoint", CLI.dsv3Fixtures.appendingPathComponent("v030_debug_like/checkpoint").path,
            "--module", "deepseek_v3", "--config", "deepseek_v3_debugmodle",
        ])
        #expect(r.status == 1)
        #expect(
            r.stderr.contains("--config deepseek_v3_debugmodle")
                && r.stderr.contains("deepseek_v3_debugmodel, deepseek_v3_debugmodel_hybridep"))
        #expect(!r.stderr.contains("moonlight"), "only the named module's configs are listed")
        let long = try CLI.run([
            "inspect", "--checkpoint", CLI.dsv3Fixtures.appendingPathComponent("v030_debug_like/checkpoint").path,
            "--module", "deepseek_v3", "--config", "deepseek_v3_debugmodel", "--training.seq_len", "20000",
        ])
        #expect(
            long.status == 1 && long.stderr.contains("training.seq_len 20000 exceeds the RoPE maximum sequence length 16384"),
            "\(long.stderr)")
    }
}
