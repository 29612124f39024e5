import Foundation
import MoEJSON

/// Model args from a HuggingFace `config.json` for `DeepseekV3ForCausalLM` (model_type `deepseek_v3`) or
/// `DeepseekV2ForCausalLM` (`deepseek_v2`), with the YaRN switch its `rope_scaling` implies.
public struct HFModelConfig: Sendable {
    public var args: ModelArgs
    /// True when `rope_scaling.type` (or `rope_type`) is "yarn".
    public var yarn: Bool
    /// HF applies `rms_norm_eps` to every norm, the final one included; a `moe_eval.final_norm_eps` written by
    /// `moe-eval convert` (TorchTitan's own value) takes precedence.
    public var finalNormEps: Float

    public static func load(_ url: URL) throws -> HFModelConfig {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ModelArgsError(message: "cannot read \(url.path): \(error.localizedDescription)")
        }
        let json: JSONObject
        do {
            guard case .object(let object) = try JSONValue.parse(Array(data)) else {
                throw ModelArgsError(message: "\(url.path): expected an HF config object, not another JSON value")
            }
            json = object
        } catch let error as JSONParseError {
            throw ModelArgsError(message: "\(url.path): \(error)")
        }
        return try parse(json, source: url.path)
    }

    public static func parse(_ json: JSONObject, source: String) throws -> HFModelConfig {
        let modelType = json["model_type"]?.stringValue ?? "?"
        guard modelType == "deepseek_v3" || modelType == "deepseek_v2" else {
            throw ModelArgsError(
                message: "\(source): model_type \"\(modelType)\" is not supported (expected \"deepseek_v3\" or \"deepseek_v2\")")
        }
        func int(_ key: String) throws -> Int? {
            guard let v = json[key], !v.isNull else { return nil }
            // A number written with a fraction or exponent counts only when it is an integer an Int can hold.
            guard let n = v.intValue else { throw ModelArgsError(message: "\(source): \(key) must be an integer") }
            return n
        }
        func double(_ key: String, in object: JSONObject? = nil) throws -> Double? {
            guard let v = (object ?? json)[key], !v.isNull else { return nil }
            guard let n = v.doubleValue else { throw ModelArgsError(message: "\(source): \(key) must be a number") }
            return n
        }
        var a = ModelArgs()
        a.vocabSize = try int("vocab_size") ?? a.vocabSize
        a.dim = try int("hidden_size") ?? a.dim
        a.interDim = try int("intermediate_size") ?? a.interDim
        a.moeInterDim = try int("moe_intermediate_size") ?? a.moeInterDim
        a.nLayers = try int("num_hidden_layers") ?? a.nLayers
        a.nDenseLayers = try int("first_k_dense_replace") ?? 0
        a.nHeads = try int("num_attention_heads") ?? a.nHeads
        a.normEps = try double("rms_norm_eps") ?? 1e-6
        a.qLoraRank = try int("q_lora_rank") ?? 0
        a.kvLoraRank = try int("kv_lora_rank") ?? a.kvLoraRank
        a.qkNopeHeadDim = try int("qk_nope_head_dim") ?? a.qkNopeHeadDim
        a.qkRopeHeadDim = try int("qk_rope_head_dim") ?? a.qkRopeHeadDim
        a.vHeadDim = try int("v_head_dim") ?? a.vHeadDim
        a.maxSeqLen = try int("max_position_embeddings") ?? a.maxSeqLen
        a.ropeTheta = try double("rope_theta") ?? a.ropeTheta
        a.moeArgs.numExperts = try int("n_routed_experts") ?? a.moeArgs.numExperts
        a.moeArgs.numSharedExperts = try int("n_shared_experts") ?? 0
        a.moeArgs.topK = try int("num_experts_per_tok") ?? a.moeArgs.topK
        a.moeArgs.scoreFunc = json["scoring_func"]?.stringValue ?? "softmax"
        a.moeArgs.routeNorm = json["norm_topk_prob"]?.boolValue ?? false
        a.moeArgs.routeScale = try double("routed_scaling_factor") ?? 1.0
        a.moeArgs.numExpertGroups = try int("n_group")
        a.moeArgs.numLimitedGroups = try int("topk_group")
        if a.moeArgs.numExpertGroups == 1 { a.moeArgs.numExpertGroups = nil; a.moeArgs.numLimitedGroups = nil }
        a.moeArgs.scoreBeforeExperts = false
        if modelType == "deepseek_v2" {
            // DeepSeek-V2 checkpoints hold no selection bias. `greedy` ignores the groups; `group_limited_greedy`
            // ranks groups by their best score, which moe-eval's router (TorchTitan's top-two sum) does not compute.
            a.moeArgs.loadBalanceCoeff = nil
            let method = json["topk_method"]?.stringValue ?? "greedy"
            switch method {
            case "greedy":
                a.moeArgs.numExpertGroups = nil
                a.moeArgs.numLimitedGroups = nil
            case "group_limited_greedy":
                if let groups = a.moeArgs.numExpertGroups, (a.moeArgs.numLimitedGroups ?? groups) < groups {
                    throw ModelArgsError(
                        message:
                            "\(source): topk_method group_limited_greedy with topk_group < n_group is not supported (DeepSeek-V2 ranks groups by their maximum score, TorchTitan by the sum of the top two)"
                    )
                }
            default:
                throw ModelArgsError(
                    message:
                        "\(source): topk_method \"\(method)\" is not supported for deepseek_v2 (expected greedy or group_limited_greedy)")
            }
        }
        var yarn = false
        // transformers ≥ 5 saves `rope_parameters` (rope_theta inside, type "default" when unscaled).
        if let scaling = json["rope_scaling"]?.objectValue ?? json["rope_parameters"]?.objectValue {
            if json["rope_theta"] == nil, let theta = try double("rope_theta", in: scaling) { a.ropeTheta = theta }
            let type = (scaling["type"] ?? scaling["rope_type"])?.stringValue
            if type == "yarn" {
                yarn = true
                a.ropeFactor = try double("factor", in: scaling) ?? a.ropeFactor
                if let length = try double("original_max_position_embeddings", in: scaling) {
                    guard let exact = Int(exactly: length) else {
                        throw ModelArgsError(
                            message: "\(source): rope_scaling.original_max_position_embeddings (\(length)) must be an integer")
                    }
                    a.originalSeqLen = exact
                }
                a.betaFast = try double("beta_fast", in: scaling) ?? a.betaFast
                a.betaSlow = try double("beta_slow", in: scaling) ?? a.betaSlow
                a.mscale = try double("mscale_all_dim", in: scaling) ?? (try double("mscale", in: scaling)) ?? a.mscale
            } else if let type, type != "default" {
                throw ModelArgsError(message: "\(source): rope_scaling type \"\(type)\" is not supported (only yarn)")
            }
        }
        do { try a.validate() } catch let e as ModelArgsError {
            throw ModelArgsError(message: "\(source): \(e.message)")
        }
        // `moe-eval convert` records the final norm's eps when TorchTitan's differed from norm_eps (v0.2.x).
        let finalNormEps = try double("final_norm_eps", in: json["moe_eval"]?.objectValue ?? [:]) ?? a.normEps
        return HFModelConfig(args: a, yarn: yarn, finalNormEps: Float(finalNormEps))
    }
}
