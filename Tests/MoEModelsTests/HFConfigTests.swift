import Foundation
import MoEJSON
import Testing

@testable import MoEModels

/// A config written as a Foundation dictionary, as `HFModelConfig.load` would read it from a file.
func hfConfigObject(_ config: [String: Any]) throws -> JSONObject {
    try #require(try JSONValue.parse(Array(JSONSerialization.data(withJSONObject: config))).objectValue)
}

/// Model args from an HF `config.json` (DeepseekV3ForCausalLM) beside HF safetensors.
@Suite struct HFConfigTests {
    /// The config transformers would need for the v022_softmax_basic fixture.
    nonisolated(unsafe) static let config: [String: Any] = [
        "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "vocab_size": 160, "hidden_size": 32,
        "intermediate_size": 48, "moe_intermediate_size": 12, "num_hidden_layers": 3, "first_k_dense_replace": 1,
        "num_attention_heads": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "q_lora_rank": NSNull(),
        "kv_lora_rank": 16, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
        "max_position_embeddings": 64, "rope_theta": 10000.0, "rope_scaling": NSNull(), "n_routed_experts": 8,
        "n_shared_experts": 2, "num_experts_per_tok": 3, "scoring_func": "softmax", "norm_topk_prob": false,
        "routed_scaling_factor": 1.0, "n_group": 1, "topk_group": 1, "topk_method": "noaux_tc",
    ]

    @Test func mapsEveryArchitectureField() throws {
        let hf = try HFModelConfig.parse(hfConfigObject(Self.config), source: "config.json")
        let expected = try ModelArgs.load(jsonFile: DSV3Fixtures.root.appendingPathComponent("v022_softmax_basic/model_args.json"))
        var args = hf.args
        // Fields HF configs do not carry (they only matter when YaRN is on).
        args.originalSeqLen = expected.originalSeqLen
        args.mscale = expected.mscale
        #expect(args == expected)
        #expect(!hf.yarn && hf.finalNormEps == 1e-5)
    }

    @Test func yarnScalingIsRead() throws {
        var config = Self.config
        config["rope_scaling"] = [
            "type": "yarn", "factor": 40.0, "original_max_position_embeddings": 4096,
            "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707,
        ]
        let hf = try HFModelConfig.parse(hfConfigObject(config), source: "config.json")
        #expect(hf.yarn && hf.args.ropeFactor == 40 && hf.args.originalSeqLen == 4096 && hf.args.mscale == 0.707)
        config["rope_scaling"] = ["type": "dynamic", "factor": 2.0]
        #expect(throws: ModelArgsError.self) { try HFModelConfig.parse(hfConfigObject(config), source: "config.json") }
        config["model_type"] = "llama"
        #expect(throws: ModelArgsError.self) { try HFModelConfig.parse(hfConfigObject(config), source: "config.json") }
    }

    /// A config.json beside the weights is found without --model-args. HF applies rms_norm_eps to the final norm
    /// too, while TorchTitan 0.2.x used float32 epsilon there; with that override the logits are TorchTitan's.
    @Test func configBesideWeightsIsUsed() throws {
        let source = DSV3Fixtures.root.appendingPathComponent("v022_softmax_basic/hf")
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("hfcfg-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: folder) }
        try FileManager.default.copyItem(at: source, to: folder)
        try JSONSerialization.data(withJSONObject: Self.config).write(to: folder.appendingPathComponent("config.json"))
        let plain = try ModelLoader.load(ModelSpec(checkpoint: folder))
        #expect(plain.argsOrigin.hasPrefix("HF config") && plain.model.numerics.finalNormEps == 1e-5)
        let titan = try ModelLoader.load(ModelSpec(checkpoint: folder, finalNormEps: Float.ulpOfOne))
        #expect(titan.model.numerics.finalNormEps == Float.ulpOfOne)

        let rows = try #require(try DSV3Fixtures.json("v022_softmax_basic", "tokens.json")["tokens"] as? [[Int]])
        let expected = try #require(try DSV3Fixtures.json("v022_softmax_basic", "expected.json")["logits"] as? [[[Double]]])
        let logits = try titan.model.forward(tokens: rows.flatMap { $0.map(Int32.init) }, batch: rows.count, seqLen: rows[0].count)
        var worst = 0.0
        for b in 0..<rows.count {
            for t in 0..<rows[0].count {
                for (v, value) in expected[b][t].enumerated() {
                    worst = max(worst, abs(Double(logits.row(b * rows[0].count + t)[v]) - value))
                }
            }
        }
        #expect(worst < 1e-4, "max |Δlogit| \(worst)")
    }
}
