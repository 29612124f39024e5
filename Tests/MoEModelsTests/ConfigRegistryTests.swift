import Foundation
import Testing

@testable import MoEModels

/// moe-eval's TorchTitan 0.3.0 registry against the golden that tools/reference/torchtitan030_registry.py extracted
/// from the released torchtitan-0.3.0 wheel's registry source (values evaluated from the source, not typed in).
@Suite struct ConfigRegistryTests {
    nonisolated(unsafe) static let golden: [String: Any] = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/torchtitan030_registry.json")
        return (try? JSONSerialization.jsonObject(with: Data(contentsOf: url))) as? [String: Any] ?? [:]
    }()
    static var configs: [String: [String: Any]] { golden["configs"] as? [String: [String: Any]] ?? [:] }

    @Test func everyGoldenConfigIsKnown() throws {
        #expect(Self.configs.count >= 14, "golden missing")
        // gpt_oss configs have their own golden, taken from TorchTitan itself (GptOssArgsTests).
        #expect(Set(ConfigRegistry.names(module: nil)).subtracting(GptOssConfigs.names) == Set(Self.configs.keys))
        for module in ConfigRegistry.modules where module != GptOssConfigs.module {
            #expect(Set(ConfigRegistry.names(module: module)) == Set(Self.configs.filter { $0.value["module"] as? String == module }.keys))
        }
        #expect(Self.golden["dump_folder_default"] as? String == ConfigRegistry.dumpFolder)
        #expect(Self.golden["checkpoint_folder_default"] as? String == ConfigRegistry.checkpointFolder)
    }

    /// Every field of the model args, the training seq_len, assets path, dataset and expert-parallel degree.
    @Test(arguments: configs.keys.sorted())
    func resolvesTorchTitansValues(name: String) throws {
        let expected = try #require(Self.configs[name])
        let module = try #require(expected["module"] as? String)
        guard let goldenArgs = expected["model_args"] as? [String: Any] else {
            #expect(throws: ModelArgsError.self) { try ConfigRegistry.config(module: module, name: name) }
            #expect(expected["unsupported"] != nil)
            return
        }
        let config = try ConfigRegistry.config(module: module, name: name)
        let seqLen = try #require(expected["seq_len"] as? Int)
        #expect(config.seqLen == seqLen)
        #expect(config.hfAssetsPath == expected["hf_assets_path"] as? String)
        #expect(config.dataset == expected["dataset"] as? String)
        #expect(config.expertParallelDegree == expected["expert_parallel_degree"] as? Int)
        #expect(config.flavor == expected["flavor"] as? String)
        if module == "qwen3" {
            // The golden names every field, so none is a default by accident.
            #expect(Set(goldenArgs.keys) == Set(Qwen3Args.CodingKeys.allCases.map(\.rawValue)))
            var want = try Qwen3Args.decode(json: Array(JSONSerialization.data(withJSONObject: goldenArgs)), source: name)
            #expect(Qwen3Flavors.args(for: config.flavor)?.maxSeqLen == want.maxSeqLen)
            want.maxSeqLen = seqLen
            #expect(config.familyArgs as? Qwen3Args == want, "\(name)")
            #expect(config.modelName == "qwen3")
            return
        }
        // TorchTitan's update_from_config sets the RoPE max_seq_len to training.seq_len; the flavor's own is the cap.
        var want = try ModelArgs.decode(json: JSONSerialization.data(withJSONObject: goldenArgs), source: name)
        let entry = try ConfigRegistry.entry(module: module, name: name)
        #expect(entry.args.maxSeqLen == want.maxSeqLen)
        want.maxSeqLen = seqLen
        #expect(try config.modelArgs() == want, "\(name)")
        // Decoding fills defaults for absent fields; the golden must name every field so none is a default by accident.
        #expect(Set(goldenArgs.keys) == Set(ModelArgs.CodingKeys.allCases.map(\.rawValue)))
        #expect(Set((goldenArgs["moe_args"] as? [String: Any] ?? [:]).keys) == Set(MoEArgs.CodingKeys.allCases.map(\.rawValue)))
    }

    @Test func seqLenOverrideAndItsLimit() throws {
        let config = try ConfigRegistry.config(module: "deepseek_v3", name: "deepseek_v3_debugmodel", seqLen: 1024)
        #expect(try config.seqLen == 1024 && config.modelArgs().maxSeqLen == 1024)
        let block = try #require(try JSONSerialization.jsonObject(with: config.json) as? [String: Any])
        #expect((block["training"] as? [String: Any])?["seq_len"] as? Int == 1024)
        #expect(block["module"] as? String == "deepseek_v3" && block["config"] as? String == "deepseek_v3_debugmodel")
        #expect(throws: ModelArgsError.self) {
            try ConfigRegistry.config(module: "deepseek_v3", name: "deepseek_v3_debugmodel", seqLen: 16_385)
        }
        // Moonlight's RoPE cache is 8192 long.
        #expect(throws: ModelArgsError.self) { try ConfigRegistry.config(module: "kimi_k2_7", name: "moonlight_16b_a3b", seqLen: 8193) }
        #expect(try ConfigRegistry.config(module: nil, name: "moonlight_16b_a3b").modelName == "kimi_k2_7")
        // Qwen3-30B-A3B trains at 4096 with a 40960-position RoPE cache; the debug MoE model's cache is 4096.
        let qwen = try ConfigRegistry.config(module: "qwen3", name: "qwen3_30b_a3b", seqLen: 8192)
        #expect((qwen.familyArgs as? Qwen3Args)?.maxSeqLen == 8192 && qwen.seqLen == 8192)
        #expect(throws: ModelArgsError.self) { try ConfigRegistry.config(module: "qwen3", name: "qwen3_moe_debug", seqLen: 4097) }
        var debug = try ConfigRegistry.config(module: nil, name: "qwen3_moe_debug")
        try debug.overrideSeqLen(128)
        #expect((debug.familyArgs as? Qwen3Args)?.maxSeqLen == 128 && debug.modelName == "qwen3")
    }

    @Test func unknownNamesAndModules() {
        do {
            _ = try ConfigRegistry.config(module: "deepseek_v3", name: "deepseek_v3_15b")
            Issue.record("accepted an unknown name")
        } catch {
            let message = "\(error)"
            #expect(message.contains("--config deepseek_v3_15b") && message.contains("deepseek_v3_16b") && !message.contains("moonlight"))
        }
        #expect(throws: ModelArgsError.self) { try ConfigRegistry.config(module: "llama3", name: "llama3_debugmodel") }
        do {
            _ = try ConfigRegistry.config(module: nil, name: "configs/train.toml")
            Issue.record("accepted a missing TOML path")
        } catch {
            #expect("\(error)" == "cannot read config file configs/train.toml: no such file")
        }
        #expect(throws: ModelArgsError.self) { try ConfigRegistry.config(module: "deepseek_v3", name: "moonlight_16b_a3b") }
        #expect(throws: ModelArgsError.self) { try ConfigRegistry.config(module: "deepseek_v3", name: "qwen3_moe_debug") }
        do {
            _ = try ConfigRegistry.config(module: "qwen3", name: "qwen3_8b")
            Issue.record("accepted an unknown qwen3 name")
        } catch {
            #expect("\(error)".contains("qwen3_moe_debug") && "\(error)".contains("qwen3_30b_a3b") && !"\(error)".contains("deepseek"))
        }
        do {
            _ = try ConfigRegistry.config(module: "qwen3", name: "qwen3_14b")
            Issue.record("accepted a dense qwen3 config")
        } catch {
            #expect("\(error)".contains("dense"))
        }
    }

    /// `--training.seq_len` on a TOML config changes seq_len, max_seq_len and the results file's config block.
    @Test func tomlSeqLenOverride() throws {
        var config = try TrainConfig.parse(
            """
            [model]
            name = "deepseek_v3"
            flavor = "debugmodel"
            [training]
            seq_len = 2048
            """, path: "train.toml")
        try config.overrideSeqLen(512)
        #expect(try config.seqLen == 512 && config.modelArgs().maxSeqLen == 512)
        let block = try #require(try JSONSerialization.jsonObject(with: config.json) as? [String: Any])
        #expect((block["training"] as? [String: Any])?["seq_len"] as? Int == 512)
        #expect(throws: ModelArgsError.self) { try config.overrideSeqLen(0) }
    }
}
