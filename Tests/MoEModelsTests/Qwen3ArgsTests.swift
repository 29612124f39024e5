import Foundation
import MoEJSON
import Testing

@testable import MoEModels

/// Qwen3 args: reading (model-args JSON, HF config.json), validation, and TorchTitan 0.3.0's parameter and FLOP
/// counts (torchtitan030_flops.json, written by tools/reference/qwen3_flops.py from TorchTitan's own
/// `get_nparams_and_flops` on the fixture config and two flavors).
@Suite struct Qwen3ArgsTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/qwen3")

    @Test func fixtureArgsRead() throws {
        let a = try Qwen3Args.load(jsonFile: Self.root.appendingPathComponent("v030_qwen3_fp32/model_args.json"))
        #expect(a.vocabSize == 48 && a.dim == 32 && a.nLayers == 2 && a.nHeads == 4 && a.nKVHeads == 2 && a.headDim == 16)
        #expect(a.moeInterDim == 4 && a.normEps == 1e-6 && a.qkNorm && a.ropeTheta == 1e6 && a.maxSeqLen == 64)
        #expect(a.moeArgs.numExperts == 8 && a.moeArgs.topK == 2 && a.moeArgs.scoreFunc == "softmax" && a.moeArgs.routeNorm)
        #expect(a.moeArgs.loadBalanceCoeff == 1e-3 && !a.enableWeightTying)
        // What the args write reads back the same.
        #expect(try Qwen3Args.decode(json: Array(a.json.serialized.utf8), source: "round trip") == a)
    }

    @Test func torchTitansParameterAndFlopCounts() throws {
        let golden = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: Self.root.appendingPathComponent("torchtitan030_flops.json")))
                as? [String: [String: Int]])
        var cases: [(String, Qwen3Args)] = [
            ("fixture v030_qwen3_fp32", try Qwen3Args.load(jsonFile: Self.root.appendingPathComponent("v030_qwen3_fp32/model_args.json")))
        ]
        for flavor in ["debugmodel_moe", "30B-A3B"] { cases.append((flavor, try #require(Qwen3Flavors.args(for: flavor)))) }
        for (name, args) in cases {
            let expected = try #require(golden[name])
            let seqLen = try #require(expected["seq_len"])
            #expect(args.totalParameters == expected["nparams"], "\(name)")
            #expect(args.trainingFlopsPerToken(seqLen: seqLen) == expected["num_flops_per_token"], "\(name)")
        }
    }

    @Test func refusesWhatQwen3CannotBe() {
        func message(_ json: String) -> String {
            do { _ = try Qwen3Args.decode(json: Array(json.utf8), source: "args.json"); return "accepted" } catch { return "\(error)" }
        }
        #expect(message(#"{"n_heads": 6, "n_kv_heads": 4}"#).contains("n_heads (6) must be a multiple of n_kv_heads (4)"))
        #expect(message(#"{"head_dim": 15}"#).contains("head_dim (15)"))
        #expect(message(#"{"family": "gpt_oss"}"#).contains("family must be \"qwen3\""))
        #expect(message(#"{"rope_scaling": {"type": "yarn"}}"#).contains("rope_scaling must be null"))
        #expect(message(#"{"n_kv_head": 2}"#).contains("unknown qwen3 model args field \"n_kv_head\""))
        #expect(message(#"{"moe_args": {"num_shared_experts": 1}}"#).contains("no shared experts"))
        #expect(message(#"{"moe_args": {"top_k": 65}}"#).contains("top_k (65)"))
        #expect(message(#"{"dim": "32"}"#).contains("args.json: dim should be an integer"))
        #expect(message(#"{"norm_eps": 0}"#).contains("norm_eps"))
        // Sizes that overflow are an error, not a trap.
        #expect(message(#"{"vocab_size": 4611686018427387904, "dim": 4}"#).contains("too large"))
        #expect(message(#"{"n_heads": 4611686018427387904, "n_kv_heads": 1}"#).contains("too large"))
        #expect(message("[1]").contains("expected a JSON object"))
        #expect(message("{").contains("args.json: malformed JSON"))
    }

    @Test func huggingFaceConfig() throws {
        let hf = try Qwen3Args.load(hfConfig: Self.root.appendingPathComponent("v030_qwen3_fp32/hf/config.json"))
        #expect(hf.nKVHeads == 2 && hf.headDim == 16 && hf.moeArgs.numExperts == 8 && hf.moeArgs.routeNorm && hf.ropeTheta == 1e6)
        #expect(hf.moeArgs.loadBalanceCoeff == nil)
        // What convert writes reads back to the same args.
        guard case .object(let written) = hf.hfConfig(torchDtype: "float32") else { Issue.record("not an object"); return }
        #expect(try Qwen3Args.parse(hfConfig: written, source: "written") == hf)
        func message(_ json: String) -> String {
            do {
                _ = try Qwen3Args.parse(hfConfig: try #require(try JSONValue.parse(json).objectValue), source: "config.json")
                return "accepted"
            } catch { return "\(error)" }
        }
        #expect(message(#"{"model_type": "qwen3"}"#).contains("model_type \"qwen3\" is not \"qwen3_moe\""))
        #expect(message(#"{"model_type": "qwen3_moe", "mlp_only_layers": [0]}"#).contains("mlp_only_layers"))
        #expect(message(#"{"model_type": "qwen3_moe", "decoder_sparse_step": 2}"#).contains("decoder_sparse_step"))
        #expect(message(#"{"model_type": "qwen3_moe", "rope_scaling": {"rope_type": "yarn", "factor": 4}}"#).contains("yarn"))
        #expect(message(#"{"model_type": "qwen3_moe", "hidden_size": 32, "num_attention_heads": 0}"#).contains("num_attention_heads"))
    }
}
