import Foundation
import MoEJSON

/// The transformers architecture a TorchTitan DeepSeek-V3 checkpoint is converted to.
public enum HFArchitecture: String, Sendable {
    /// `DeepseekV3ForCausalLM`: sigmoid scores, selection bias `e_score_correction_bias`, top-2-sum expert groups.
    case deepseekV3 = "DeepseekV3ForCausalLM"
    /// `DeepseekV2ForCausalLM`: softmax scores, plain top-k, no selection bias, no renormalisation of the weights.
    case deepseekV2 = "DeepseekV2ForCausalLM"

    public var modelType: String { self == .deepseekV3 ? "deepseek_v3" : "deepseek_v2" }
    /// Whether its checkpoints hold `e_score_correction_bias`.
    public var hasRoutingBias: Bool { self == .deepseekV3 }
}

/// `config.json` for transformers' `DeepseekV3ForCausalLM` or `DeepseekV2ForCausalLM` from TorchTitan's model
/// args and the numerics of the code era that trained them. `HFModelConfig.parse` reads it back to the same
/// args and numerics.
public enum HFConfigExport {
    /// The architecture whose router computes what TorchTitan's does, and, when none does, why (nil when one does).
    /// TorchTitan scores with sigmoid or softmax and may add a selection-only bias; transformers' DeepseekV3 always
    /// scores with sigmoid (bias allowed), its DeepseekV2 with softmax but without bias, renormalisation or
    /// TorchTitan's group ranking. `routingBiasIsZero`: the checkpoint's `expert_bias` is all zeros or absent.
    public static func architecture(args: ModelArgs, routingBiasIsZero: Bool) -> (architecture: HFArchitecture, unreproducible: String?) {
        let m = args.moeArgs
        guard args.numMoELayers > 0, m.scoreFunc == "softmax" else { return (.deepseekV3, nil) }
        var blockers: [String] = []
        if !routingBiasIsZero {
            blockers.append("a nonzero expert_bias (load balancing) that changes which experts are selected")
        }
        if m.routeNorm {
            blockers.append("route_norm (DeepseekV2 never renormalises the selected weights; norm_topk_prob is ignored)")
        }
        if let groups = m.numExpertGroups, (m.numLimitedGroups ?? groups) < groups {
            blockers.append(
                "node-limited routing (TorchTitan ranks groups by the sum of their top two scores, DeepseekV2's group_limited_greedy by the maximum)"
            )
        }
        guard !blockers.isEmpty else { return (.deepseekV2, nil) }
        return (
            .deepseekV3,
            "no transformers architecture reproduces this softmax-routed model: DeepseekV3ForCausalLM always scores with sigmoid, and DeepseekV2ForCausalLM cannot express "
                + blockers.joined(separator: ", nor ")
                + "; written as DeepseekV3ForCausalLM with scoring_func softmax, which vLLM and SGLang read"
        )
    }

    /// The numbers transformers will compute differently from TorchTitan, one line each (empty when none).
    /// They come from transformers' DeepSeek code, not from the checkpoint: see docs/CONVERT.md.
    public static func transformersDifferences(args: ModelArgs, numerics: Numerics, routingBiasIsZero: Bool) -> [String] {
        var notes: [String] = []
        if let unreproducible = architecture(args: args, routingBiasIsZero: routingBiasIsZero).unreproducible {
            notes.append(unreproducible)
        }
        if numerics.finalNormEps != Float(args.normEps) {
            notes.append(
                "transformers applies rms_norm_eps \(args.normEps) to the final norm too; TorchTitan used \(numerics.finalNormEps) there (recorded as moe_eval.final_norm_eps)"
            )
        }
        if args.normEps != 1e-6 {
            notes.append("transformers' q_a_layernorm and kv_a_layernorm always use eps 1e-6; TorchTitan used norm_eps \(args.normEps)")
        }
        return notes
    }

    /// Refuses what HF DeepSeek cannot express, then returns the config as pretty JSON with a stable key order.
    /// `torchDType`: "float32" or "bfloat16"; `numerics.origin` is recorded beside the final norm's eps.
    /// `architecture`: from `architecture(args:routingBiasIsZero:)`.
    public static func configJSON(
        args: ModelArgs, numerics: Numerics, torchDType: String,
        bosTokenId: Int?, eosTokenId: Int?, architecture: HFArchitecture = .deepseekV3
    ) throws -> String {
        try args.validate()
        let m = args.moeArgs
        if args.numMoELayers > 0 {
            if m.scoreBeforeExperts {
                throw ModelArgsError(
                    message:
                        "moe_args.score_before_experts = true cannot be converted: HF DeepSeek-V2/V3 weight the experts' outputs, not their inputs, and SwiGLU makes the two differ"
                )
            }
            if m.gateBias {
                throw ModelArgsError(message: "moe_args.gate_bias = true cannot be converted: HF DeepSeek-V2/V3's router has no bias")
            }
        }
        if architecture == .deepseekV2, Self.architecture(args: args, routingBiasIsZero: true).architecture != .deepseekV2 {
            throw ModelArgsError(
                message:
                    "DeepseekV2ForCausalLM cannot express this router: it needs softmax scores, route_norm off and no node-limited groups")
        }
        if numerics.yarn && args.ropeFactor < 1 {
            throw ModelArgsError(
                message:
                    "rope_factor \(args.ropeFactor) < 1 with YaRN active cannot be converted: transformers applies no mscale below factor 1, TorchTitan does"
            )
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
        let v3 = architecture == .deepseekV3
        // DeepseekV2 ranks plain top-k (`greedy`) and has no selection bias, so no group fields.
        let routing: JSONObject =
            v3
            ? [
                ("scoring_func", .string(m.scoreFunc)),
                ("topk_method", .string("noaux_tc")),
                ("norm_topk_prob", .bool(m.routeNorm)),
                ("routed_scaling_factor", .double(m.routeScale)),
                ("n_group", .int(m.numExpertGroups ?? 1)),
                ("topk_group", .int(m.numExpertGroups == nil ? 1 : (m.numLimitedGroups ?? m.numExpertGroups!))),
            ]
            : [
                ("topk_method", .string("greedy")),
                ("norm_topk_prob", .bool(false)),
                ("routed_scaling_factor", .double(m.routeScale)),
                ("n_group", .null),
                ("topk_group", .null),
            ]
        var fields: JSONObject = [
            ("architectures", .array([.string(architecture.rawValue)])),
            ("model_type", .string(architecture.modelType)),
            ("vocab_size", .int(args.vocabSize)),
            ("hidden_size", .int(args.dim)),
            ("intermediate_size", .int(args.interDim)),
            ("moe_intermediate_size", .int(args.moeInterDim)),
            ("num_hidden_layers", .int(args.nLayers)),
            ("first_k_dense_replace", .int(args.nDenseLayers)),
        ]
        if v3 { fields.append("moe_layer_freq", .int(1)) }
        fields.entries += [
            ("num_attention_heads", .int(args.nHeads)),
            ("num_key_value_heads", .int(args.nHeads)),
            ("n_routed_experts", .int(m.numExperts)),
            ("n_shared_experts", .int(m.numSharedExperts)),
            ("num_experts_per_tok", .int(m.topK)),
        ]
        fields.entries += routing.entries
        fields.entries += [
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
        ]
        // DeepseekV2 always rotates interleaved pairs (complex multiplication); DeepseekV3 needs telling.
        if v3 { fields.append("rope_interleave", .bool(true)) }
        fields.entries += [
            ("attention_bias", .bool(false)),
            ("attention_dropout", .double(0)),
            ("tie_word_embeddings", .bool(false)),
        ]
        if v3 { fields.append("num_nextn_predict_layers", .int(0)) } else { fields.append("mlp_bias", .bool(false)) }
        fields.entries += [
            ("bos_token_id", bosTokenId.map { .int($0) } ?? .null),
            ("eos_token_id", eosTokenId.map { .int($0) } ?? .null),
            ("initializer_range", .double(0.02)),
            ("use_cache", .bool(true)),
            ("torch_dtype", .string(torchDType)),
            (
                "moe_eval",
                .object([
                    ("converted_from", .string("torchtitan")),
                    ("numerics", .string(numerics.origin)),
                    ("yarn", .bool(numerics.yarn)),
                    ("final_norm_eps", .double(Double(numerics.finalNormEps))),
                ])
            ),
        ]
        return JSONValue.object(fields).prettyPrinted
    }
}
