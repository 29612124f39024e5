import Foundation
import MoEJSON

/// Qwen3-MoE args from a Hugging Face `config.json` (`model_type` "qwen3_moe", `Qwen3MoeForCausalLM`), and the
/// `config.json` that `convert` writes for them.
extension Qwen3Args {
    public static let hfModelType = "qwen3_moe"
    public static let hfArchitecture = "Qwen3MoeForCausalLM"

    public static func load(hfConfig url: URL) throws -> Qwen3Args {
        let bytes: [UInt8]
        do { bytes = Array(try Data(contentsOf: url)) } catch {
            throw ModelArgsError(message: "cannot read \(url.path): \(error.localizedDescription)")
        }
        let value: JSONValue
        do { value = try JSONValue.parse(bytes) } catch { throw ModelArgsError(message: "\(url.path): \(error)") }
        guard let object = value.objectValue else { throw ModelArgsError(message: "\(url.path): expected an HF config object") }
        return try parse(hfConfig: object, source: url.path)
    }

    /// HF's fields; what Qwen3-MoE in transformers can express but TorchTitan's qwen3 cannot (dense layers,
    /// sliding windows, attention biases, scaled RoPE) is refused with the field named.
    public static func parse(hfConfig json: JSONObject, source: String) throws -> Qwen3Args {
        let modelType = json["model_type"]?.stringValue ?? "?"
        guard modelType == hfModelType else {
            throw ModelArgsError(message: "\(source): model_type \"\(modelType)\" is not \"\(hfModelType)\"")
        }
        let reader = FieldReader(source: source, prefix: "")
        func int(_ key: String) throws -> Int? {
            guard let v = json[key], !v.isNull else { return nil }
            return try reader.int(v, key)
        }
        func double(_ key: String, in object: JSONObject? = nil) throws -> Double? {
            guard let v = (object ?? json)[key], !v.isNull else { return nil }
            return try reader.double(v, key)
        }
        func bool(_ key: String) throws -> Bool? {
            guard let v = json[key], !v.isNull else { return nil }
            return try reader.bool(v, key)
        }
        func refuse(_ what: String) -> ModelArgsError {
            ModelArgsError(
                message:
                    "\(source): \(what) is not supported (TorchTitan's qwen3 builds every layer MoE with plain RoPE and no attention biases)"
            )
        }
        // Missing fields take `Qwen3MoeConfig`'s defaults (transformers 5).
        var a = Qwen3Args()
        a.vocabSize = try int("vocab_size") ?? 151_936
        a.dim = try int("hidden_size") ?? 2048
        a.nLayers = try int("num_hidden_layers") ?? 24
        a.nHeads = try int("num_attention_heads") ?? 32
        a.nKVHeads = try int("num_key_value_heads") ?? 4
        if let headDim = try int("head_dim") {
            a.headDim = headDim
        } else {
            guard a.nHeads > 0 else { throw ModelArgsError(message: "\(source): num_attention_heads must be positive") }
            a.headDim = a.dim / a.nHeads
        }
        a.moeInterDim = try int("moe_intermediate_size") ?? 768
        a.normEps = try double("rms_norm_eps") ?? 1e-6
        a.maxSeqLen = try int("max_position_embeddings") ?? 32_768
        a.enableWeightTying = try bool("tie_word_embeddings") ?? false
        a.moeArgs.numExperts = try int("num_experts") ?? int("num_local_experts") ?? 128
        a.moeArgs.topK = try int("num_experts_per_tok") ?? 8
        a.ropeTheta = 10_000
        a.moeArgs.routeNorm = try bool("norm_topk_prob") ?? false
        // HF has no load-balancing bias: the router selects on the softmax scores alone.
        a.moeArgs.loadBalanceCoeff = nil
        a.qkNorm = true
        if let step = try int("decoder_sparse_step"), step != 1 { throw refuse("decoder_sparse_step \(step) (dense layers)") }
        if let dense = json["mlp_only_layers"]?.arrayValue, !dense.isEmpty { throw refuse("mlp_only_layers (dense layers)") }
        if try bool("attention_bias") == true { throw refuse("attention_bias") }
        if try bool("use_sliding_window") == true { throw refuse("use_sliding_window") }
        // transformers ≥ 5 writes `rope_parameters` (rope_theta inside, type "default" when unscaled).
        let scaling = json["rope_scaling"]?.objectValue ?? json["rope_parameters"]?.objectValue
        if let theta = try double("rope_theta") ?? (scaling.map { try double("rope_theta", in: $0) } ?? nil) {
            a.ropeTheta = theta
        }
        if let scaling, let type = (scaling["rope_type"] ?? scaling["type"])?.stringValue, type != "default" {
            throw refuse("rope type \"\(type)\"")
        }
        do { try a.validate() } catch let e as ModelArgsError {
            throw ModelArgsError(message: "\(source): \(e.message)")
        }
        return a
    }

    /// The `config.json` transformers reads these args from (`Qwen3MoeForCausalLM`, fp32 or bf16 weights).
    public func hfConfig(torchDtype: String) -> JSONValue {
        // A `config.json` that transformers 5 loads into `Qwen3MoeConfig` as written.
        let object: JSONObject = [
            ("architectures", .array([.string(Self.hfArchitecture)])), ("model_type", .string(Self.hfModelType)),
            ("vocab_size", .int(vocabSize)), ("hidden_size", .int(dim)), ("num_hidden_layers", .int(nLayers)),
            ("num_attention_heads", .int(nHeads)), ("num_key_value_heads", .int(nKVHeads)), ("head_dim", .int(headDim)),
            ("intermediate_size", .int(moeInterDim)), ("moe_intermediate_size", .int(moeInterDim)),
            ("num_experts", .int(moeArgs.numExperts)), ("num_experts_per_tok", .int(moeArgs.topK)),
            ("norm_topk_prob", .bool(moeArgs.routeNorm)), ("decoder_sparse_step", .int(1)), ("mlp_only_layers", .array([])),
            ("rms_norm_eps", .double(normEps)), ("max_position_embeddings", .int(maxSeqLen)),
            // transformers ≥ 5 reads `rope_parameters`; earlier versions read `rope_theta`.
            ("rope_parameters", .object([("rope_theta", .double(ropeTheta)), ("rope_type", .string("default"))])),
            ("rope_theta", .double(ropeTheta)),
            ("tie_word_embeddings", .bool(enableWeightTying)), ("attention_bias", .bool(false)),
            ("use_sliding_window", .bool(false)), ("sliding_window", .null), ("hidden_act", .string("silu")),
            ("dtype", .string(torchDtype)), ("use_cache", .bool(true)),
        ]
        return .object(object)
    }
}
