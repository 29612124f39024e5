import Foundation
import MoEJSON

/// `config.json` for transformers' `DeepseekV3ForCausalLM` (model_type `deepseek_v3`) from TorchTitan's model
/// args and the numerics of the code era that trained them. `HFModelConfig.parse` reads it back to the same
/// args and numerics.
public enum HFConfigExport {
    /// The numbers transformers will compute differently from TorchTitan, one line each (empty when none).
    /// They come from transformers' DeepseekV3 code, not from the checkpoint: see docs/CONVERT.md.
    public static func transformersDifferences(args: ModelArgs, numerics: Numerics) -> [String] {
        var notes: [String] = []
        if args.numMoELayers > 0 && args.moeArgs.scoreFunc != "sigmoid" {
            notes.append("transformers' DeepseekV3 always scores experts with sigmoid; this model uses \(args.moeArgs.scoreFunc) (vLLM and SGLang read scoring_func)")
        }
        if numerics.finalNormEps != Float(args.normEps) {
            notes.append("transformers applies rms_norm_eps \(args.normEps) to the final norm too; TorchTitan used \(numerics.finalNormEps) there (recorded as moe_eval.final_norm_eps)")
        }
        if args.normEps != 1e-6 {
            notes.append("transformers' q_a_layernorm and kv_a_layernorm always use eps 1e-6; TorchTitan used norm_eps \(args.normEps)")
        }
        return notes
    }

    /// Refuses what HF DeepSeek-V3 cannot express, then returns the config as pretty JSON with a stable key order.
    /// `torchDType`: "float32" or "bfloat16"; `numerics.origin` is recorded beside the final norm's eps.
    public static func configJSON(args: ModelArgs, numerics: Numerics, torchDType: String,
                                  bosTokenId: Int?, eosTokenId: Int?) throws -> String {
        try args.validate()
        let m = args.moeArgs
        if args.numMoELayers > 0 {
            if m.scoreBeforeExperts {
                throw ModelArgsError(message: "moe_args.score_before_experts = true cannot be converted: HF DeepSeek-V3 weights the experts' outputs, not their inputs, and SwiGLU makes the two differ")
            }
            if m.gateBias {
                throw ModelArgsError(message: "moe_args.gate_bias = true cannot be converted: HF DeepSeek-V3's router has no bias")
            }
        }
        if numerics.yarn && args.ropeFactor < 1 {
            throw ModelArgsError(message: "rope_factor \(args.ropeFactor) < 1 with YaRN active cannot be converted: transformers applies no mscale below factor 1, TorchTitan does")
        }
        var rope: JSONValue = .null
        if numerics.yarn {
            // mscale = mscale_all_dim makes transformers' cos/sin factor 1 and its softmax scale mscale², as in
            // TorchTitan; attention_factor states the 1 explicitly (transformers would infer 0.1·ln(factor)+1
            // from mscale 0).
            rope = .object([
                ("type", .string("yarn")),
                ("rope_type", .string("yarn")),
                ("factor", .double(args.ropeFactor)),
                ("original_max_position_embeddings", .int(args.originalSeqLen)),
                ("beta_fast", .double(args.betaFast)),
                ("beta_slow", .double(args.betaSlow)),
                ("mscale", .double(args.mscale)),
                ("mscale_all_dim", .double(args.mscale)),
                ("attention_factor", .double(1.0)),
            ])
        }
        let fields: JSONObject = [
            ("architectures", .array([.string("DeepseekV3ForCausalLM")])),
            ("model_type", .string("deepseek_v3")),
            ("vocab_size", .int(args.vocabSize)),
            ("hidden_size", .int(args.dim)),
            ("intermediate_size", .int(args.interDim)),
            ("moe_intermediate_size", .int(args.moeInterDim)),
            ("num_hidden_layers", .int(args.nLayers)),
            ("first_k_dense_replace", .int(args.nDenseLayers)),
            ("moe_layer_freq", .int(1)),
            ("num_attention_heads", .int(args.nHeads)),
            ("num_key_value_heads", .int(args.nHeads)),
            ("n_routed_experts", .int(m.numExperts)),
            ("n_shared_experts", .int(m.numSharedExperts)),
            ("num_experts_per_tok", .int(m.topK)),
            ("scoring_func", .string(m.scoreFunc)),
            ("topk_method", .string("noaux_tc")),
            ("norm_topk_prob", .bool(m.routeNorm)),
            ("routed_scaling_factor", .double(m.routeScale)),
            ("n_group", .int(m.numExpertGroups ?? 1)),
            ("topk_group", .int(m.numExpertGroups == nil ? 1 : (m.numLimitedGroups ?? m.numExpertGroups!))),
            ("q_lora_rank", args.qLoraRank == 0 ? .null : .int(args.qLoraRank)),
            ("kv_lora_rank", .int(args.kvLoraRank)),
            ("qk_nope_head_dim", .int(args.qkNopeHeadDim)),
            ("qk_rope_head_dim", .int(args.qkRopeHeadDim)),
            ("v_head_dim", .int(args.vHeadDim)),
            ("hidden_act", .string("silu")),
            ("max_position_embeddings", .int(args.maxSeqLen)),
            ("rms_norm_eps", .double(args.normEps)),
            ("rope_theta", .double(args.ropeTheta)),
            ("rope_scaling", rope),
            ("rope_interleave", .bool(true)),
            ("attention_bias", .bool(false)),
            ("attention_dropout", .double(0)),
            ("tie_word_embeddings", .bool(false)),
            ("num_nextn_predict_layers", .int(0)),
            ("bos_token_id", bosTokenId.map { .int($0) } ?? .null),
            ("eos_token_id", eosTokenId.map { .int($0) } ?? .null),
            ("initializer_range", .double(0.02)),
            ("use_cache", .bool(true)),
            ("torch_dtype", .string(torchDType)),
            ("moe_eval", .object([
                ("converted_from", .string("torchtitan")),
                ("numerics", .string(numerics.origin)),
                ("yarn", .bool(numerics.yarn)),
                ("final_norm_eps", .double(Double(numerics.finalNormEps))),
            ])),
        ]
        return JSONValue.object(fields).prettyPrinted
    }
}
