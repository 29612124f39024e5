import Foundation
import MoEJSON
import Testing

@testable import MoEModels

/// Model args and shape inference given hostile values (issue 16): each used to trap, allocate without
/// bound or give NaN logits; each must now be one error naming the field.
@Suite struct ArgsHardeningTests {
    func decodeError(_ json: String) -> String? {
        do {
            let args = try ModelArgs.decode(json: Data(json.utf8), source: "args.json")
            // Accepted args must be usable: these are what trapped when validation let them through.
            _ = args.expectedShapes()
            _ = args.parameterCounts()
            _ = DeepSeekV3.ropeFrequencies(args: args, yarn: true)
            return nil
        } catch {
            return String(describing: error)
        }
    }

    @Test(arguments: [
        (#"{"n_heads": 4611686018427387904}"#, "n_heads"),
        (#"{"v_head_dim": 4611686018427387904}"#, "v_head_dim"),
        (#"{"qk_nope_head_dim": 9223372036854775000}"#, "qk_nope_head_dim"),
        (#"{"dim": 4294967296, "vocab_size": 4294967296}"#, "too large"),
        (#"{"moe_inter_dim": 4294967296, "dim": 4294967296}"#, "too large"),
        (#"{"moe_args": {"num_shared_experts": 4611686018427387904}}"#, "num_shared_experts"),
        (#"{"original_seq_len": 0}"#, "original_seq_len"),
        (#"{"max_seq_len": 0}"#, "max_seq_len"),
        (#"{"n_layers": 1000000000}"#, "n_layers"),
        (#"{"rope_theta": 0}"#, "rope_theta"),
        (#"{"rope_theta": -10000}"#, "rope_theta"),
        (#"{"rope_factor": 0}"#, "rope_factor"),
        (#"{"beta_fast": 0}"#, "beta_fast"),
        (#"{"beta_slow": -1}"#, "beta_slow"),
        (#"{"norm_eps": -0.00001}"#, "norm_eps"),
        (#"{"inter_dim": -1}"#, "inter_dim"),
        (#"{"moe_inter_dim": 0}"#, "moe_inter_dim"),
        (#"{"qk_nope_head_dim": -128}"#, "qk_nope_head_dim"),
    ])
    func hostileModelArgsAreRefusedByField(json: String, field: String) throws {
        let message = decodeError(json)
        #expect(message != nil, "accepted \(json)")
        #expect(message?.contains("args.json") == true && message?.contains(field) == true, "\(message ?? "")")
        #expect(message?.contains("\n") != true)
    }

    /// JSON cannot carry NaN or infinity (1e400 is a JSON error); other sources (HF configs, code) can.
    @Test func nonFiniteValuesAreRefusedByField() throws {
        let cases: [(String, (inout ModelArgs) -> Void)] = [
            ("norm_eps", { $0.normEps = .nan }), ("norm_eps", { $0.normEps = .infinity }),
            ("rope_theta", { $0.ropeTheta = .nan }), ("rope_factor", { $0.ropeFactor = .infinity }),
            ("mscale", { $0.mscale = .nan }), ("moe_args.route_scale", { $0.moeArgs.routeScale = .nan }),
            ("moe_args.load_balance_coeff", { $0.moeArgs.loadBalanceCoeff = -.infinity }),
        ]
        for (field, change) in cases {
            var args = try #require(Flavors.args(for: "debugmodel"))
            change(&args)
            let message = errorMessage { try args.validate() }
            #expect(message?.contains(field) == true, "\(field): \(message ?? "accepted")")
        }
    }

    func errorMessage(_ body: () throws -> Void) -> String? {
        do { try body(); return nil } catch { return String(describing: error) }
    }

    @Test func everyFlavorStillValidates() throws {
        for name in Flavors.names {
            let args = try #require(Flavors.args(for: name))
            try args.validate()
        }
    }

    @Test func hfConfigWithZeroOriginalLengthIsRefused() throws {
        let json: [String: Any] = [
            "model_type": "deepseek_v3", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
            "rope_scaling": ["type": "yarn", "factor": 4.0, "original_max_position_embeddings": 0],
        ]
        #expect(throws: ModelArgsError.self) { _ = try HFModelConfig.parse(hfConfigObject(json), source: "config.json") }
    }

    @Test func hfConfigNumbersBeyondIntAreRefused() throws {
        let huge: [String: Any] = ["model_type": "deepseek_v3", "hidden_size": 1e300]
        #expect(throws: ModelArgsError.self) { _ = try HFModelConfig.parse(hfConfigObject(huge), source: "config.json") }
        let yarn: [String: Any] = [
            "model_type": "deepseek_v3",
            "rope_scaling": ["type": "yarn", "original_max_position_embeddings": 1e300],
        ]
        #expect(throws: ModelArgsError.self) { _ = try HFModelConfig.parse(hfConfigObject(yarn), source: "config.json") }
    }

    /// Every tensor the inference reads as a rank-0 or rank-1 tensor: no index may trap.
    @Test func shapeInferenceSurvivesTensorsOfTheWrongRank() throws {
        let names = [
            "tok_embeddings.weight", "layers.0.attention.kv_norm.weight", "layers.0.attention.q_norm.weight",
            "layers.0.attention.wkv_a.weight", "layers.0.attention.wkv_b.weight", "layers.0.attention.wo.weight",
            "layers.0.feed_forward.w1.weight", "layers.1.moe.router.gate.weight", "layers.1.moe.experts.w1",
            "layers.1.moe.shared_experts.w1.weight",
        ]
        for rank0 in [true, false] {
            let shapes = Dictionary(uniqueKeysWithValues: names.map { ($0, rank0 ? [Int]() : [4]) })
            let (args, _) = ModelArgs.inferred(from: shapes)
            #expect(args.nLayers == 2)
        }
    }

    @Test func layerIndexAtIntMaxDoesNotTrap() throws {
        let (args, _) = ModelArgs.inferred(from: ["layers.9223372036854775807.attention_norm.weight": [4]])
        #expect(args.nLayers == 0)
    }

    /// Layers must be 0, 1, 2…: a stray index says nothing about how many layers there are.
    @Test func layerCountIsBoundedByTheLayersPresent() throws {
        let shapes: [String: [Int]] = [
            "layers.0.attention_norm.weight": [4], "layers.1.attention_norm.weight": [4],
            "layers.2000000000.attention_norm.weight": [4],
        ]
        let (args, guessed) = ModelArgs.inferred(from: shapes)
        #expect(args.nLayers == 2)
        #expect(guessed.contains("n_layers"))
    }

    @Test func inferredArgsFromHugeShapesFailValidationInsteadOfTrapping() throws {
        let (args, _) = ModelArgs.inferred(from: [
            "tok_embeddings.weight": [1 << 40, 1 << 40],
            "layers.0.attention_norm.weight": [1 << 40],
        ])
        #expect(throws: ModelArgsError.self) { try args.validate() }
    }
}
