import Foundation
import MoEJSON

/// Reads one object's fields by name, each with a message that names the file and the field; remembers which
/// keys were read so that an unknown (usually misspelt) field is an error instead of a silent default.
struct JSONFieldReader {
    let object: JSONObject
    let source: String
    let path: String
    private(set) var read: Set<String> = []

    init(_ object: JSONObject, source: String, path: String = "") {
        self.object = object
        self.source = source
        self.path = path
    }

    private func name(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    private func fail(_ key: String, _ expected: String, _ value: JSONValue) -> ModelArgsError {
        ModelArgsError(message: "\(source): field \"\(name(key))\" should be \(expected), not \(value.typeName)")
    }

    /// The value under `key` (null included); nil when absent.
    mutating func value(_ key: String) -> JSONValue? {
        read.insert(key)
        return object[key]
    }

    mutating func int(_ key: String) throws -> Int? {
        guard let v = value(key), !v.isNull else { return nil }
        guard let n = v.intValue else { throw fail(key, "an integer", v) }
        return n
    }

    mutating func double(_ key: String) throws -> Double? {
        guard let v = value(key), !v.isNull else { return nil }
        guard let n = v.doubleValue else { throw fail(key, "a number", v) }
        return n
    }

    mutating func bool(_ key: String) throws -> Bool? {
        guard let v = value(key), !v.isNull else { return nil }
        guard let b = v.boolValue else { throw fail(key, "true or false", v) }
        return b
    }

    mutating func string(_ key: String) throws -> String? {
        guard let v = value(key), !v.isNull else { return nil }
        guard let s = v.stringValue else { throw fail(key, "a string", v) }
        return s
    }

    mutating func object(_ key: String) throws -> JSONObject? {
        guard let v = value(key), !v.isNull else { return nil }
        guard let o = v.objectValue else { throw fail(key, "an object", v) }
        return o
    }

    mutating func intArray(_ key: String) throws -> [Int]? {
        guard let v = value(key), !v.isNull else { return nil }
        guard let items = v.arrayValue else { throw fail(key, "an array of integers", v) }
        return try items.map { item in
            guard let n = item.intValue else { throw fail(key, "an array of integers", item) }
            return n
        }
    }

    mutating func stringArray(_ key: String) throws -> [String]? {
        guard let v = value(key), !v.isNull else { return nil }
        guard let items = v.arrayValue else { throw fail(key, "an array of strings", v) }
        return try items.map { item in
            guard let s = item.stringValue else { throw fail(key, "an array of strings", item) }
            return s
        }
    }

    /// Whether `key` is present with a null value (an explicit "none").
    func isNull(_ key: String) -> Bool { object[key]?.isNull ?? false }
    func has(_ key: String) -> Bool { object[key] != nil }

    /// An error for the first key that was never read.
    func rejectUnknown(known extra: Set<String> = []) throws {
        if let unknown = object.keys.filter({ !read.contains($0) && !extra.contains($0) }).sorted().first {
            throw ModelArgsError(message: "\(source): unknown field \"\(name(unknown))\" (known: \(read.sorted().joined(separator: ", ")))")
        }
    }
}

extension GptOssArgs {
    /// Reads `--model-args FILE.json` for gpt-oss: missing fields take the 20b flavor's values, unknown fields are
    /// an error. A `{"model_args": {…}}` wrapper (results files) is accepted.
    public static func load(jsonFile url: URL) throws -> GptOssArgs {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ModelArgsError(message: "cannot read model args file \(url.path): \(error.localizedDescription)")
        }
        return try decode(json: data, source: url.path)
    }

    public static func decode(json data: Data, source: String) throws -> GptOssArgs {
        let root: JSONValue
        do { root = try JSONValue.parse([UInt8](data)) } catch {
            throw ModelArgsError(message: "\(source): \(error)")
        }
        guard var object = root.objectValue else {
            throw ModelArgsError(message: "\(source): expected a JSON object of model args")
        }
        if let inner = object["model_args"]?.objectValue { object = inner }
        let args = try GptOssArgs(fields: object, source: source)
        do { try args.validate() } catch let e as ModelArgsError {
            throw ModelArgsError(message: "\(source): \(e.message)")
        }
        return args
    }

    /// Whether a model-args object describes gpt-oss (its `family` tag, or fields only gpt-oss has).
    public static func describesGptOss(_ object: JSONObject) -> Bool {
        if let tag = object[familyKey]?.stringValue { return tag == family }
        return object["attention_sinks"] != nil || object["swiglu_limit"] != nil
    }

    init(fields object: JSONObject, source: String) throws {
        var r = JSONFieldReader(object, source: source)
        var a = GptOssArgs()
        if let family = try r.string(Self.familyKey), family != Self.family {
            throw ModelArgsError(message: "\(source): family \"\(family)\" is not \(Self.family)")
        }
        a.vocabSize = try r.int("vocab_size") ?? a.vocabSize
        a.dim = try r.int("dim") ?? a.dim
        a.nLayers = try r.int("n_layers") ?? a.nLayers
        a.nHeads = try r.int("n_heads") ?? a.nHeads
        a.nKVHeads = try r.int("n_kv_heads") ?? a.nKVHeads
        a.headDim = try r.int("head_dim") ?? a.headDim
        a.moeInterDim = try r.int("moe_inter_dim") ?? a.moeInterDim
        a.normEps = try r.double("norm_eps") ?? a.normEps
        a.qkvBias = try r.bool("qkv_bias") ?? a.qkvBias
        a.woBias = try r.bool("wo_bias") ?? a.woBias
        a.attentionSinks = try r.bool("attention_sinks") ?? a.attentionSinks
        a.slidingWindowSize = r.isNull("sliding_window_size") ? nil : (try r.int("sliding_window_size") ?? a.slidingWindowSize)
        a.slidingWindowLayers = try r.intArray("sliding_window_layers")
        a.ropeType = try r.string("rope_type") ?? a.ropeType
        a.ropeTheta = try r.double("rope_theta") ?? a.ropeTheta
        if r.isNull("rope_scaling") {
            _ = r.value("rope_scaling")
            a.ropeScaling = nil
        } else if let scaling = try r.object("rope_scaling") {
            var s = JSONFieldReader(scaling, source: source, path: "rope_scaling")
            var y = RopeScaling()
            y.type = try s.string("type") ?? y.type
            y.ropeFactor = try s.double("rope_factor") ?? y.ropeFactor
            y.betaFast = try s.double("beta_fast") ?? y.betaFast
            y.betaSlow = try s.double("beta_slow") ?? y.betaSlow
            y.originalSeqLen = try s.int("original_seq_len") ?? y.originalSeqLen
            y.truncate = try s.bool("truncate") ?? y.truncate
            try s.rejectUnknown()
            a.ropeScaling = y
        }
        a.maxSeqLen = try r.int("max_seq_len") ?? a.maxSeqLen
        a.swigluAlpha = try r.double("swiglu_alpha") ?? a.swigluAlpha
        a.swigluLimit = try r.double("swiglu_limit") ?? a.swigluLimit
        a.enableWeightTying = try r.bool("enable_weight_tying") ?? a.enableWeightTying
        if let moe = try r.object("moe_args") {
            var m = JSONFieldReader(moe, source: source, path: "moe_args")
            var routing = Routing()
            routing.numExperts = try m.int("num_experts") ?? routing.numExperts
            routing.numSharedExperts = try m.int("num_shared_experts") ?? routing.numSharedExperts
            routing.topK = try m.int("top_k") ?? routing.topK
            routing.scoreFunc = try m.string("score_func") ?? routing.scoreFunc
            routing.routeNorm = try m.bool("route_norm") ?? routing.routeNorm
            routing.routeScale = try m.double("route_scale") ?? routing.routeScale
            routing.numExpertGroups = try m.int("num_expert_groups")
            routing.numLimitedGroups = try m.int("num_limited_groups")
            routing.gateBias = try m.bool("gate_bias") ?? routing.gateBias
            routing.loadBalanceCoeff =
                m.isNull("load_balance_coeff") ? nil : (try m.double("load_balance_coeff") ?? routing.loadBalanceCoeff)
            // 0.3.0's MoE always weights the experts' outputs; a request to weight their inputs cannot be honoured.
            if let before = try m.bool("score_before_experts"), before {
                throw ModelArgsError(
                    message: "\(source): moe_args.score_before_experts must be false for gpt_oss (TorchTitan weights the experts' outputs)")
            }
            try m.rejectUnknown(known: ["use_grouped_mm", "_debug_force_load_balance"])
            a.moeArgs = routing
        }
        try r.rejectUnknown()
        self = a
    }

    /// The JSON the `--model-args` reader accepts (results files, templates).
    public var jsonObject: JSONObject {
        var o = JSONObject()
        o.append("family", .string(Self.family))
        o.append("vocab_size", .int(vocabSize))
        o.append("dim", .int(dim))
        o.append("n_layers", .int(nLayers))
        o.append("n_heads", .int(nHeads))
        o.append("n_kv_heads", .int(nKVHeads))
        o.append("head_dim", .int(headDim))
        o.append("moe_inter_dim", .int(moeInterDim))
        o.append("norm_eps", .double(normEps))
        o.append("qkv_bias", .bool(qkvBias))
        o.append("wo_bias", .bool(woBias))
        o.append("attention_sinks", .bool(attentionSinks))
        o.append("sliding_window_size", slidingWindowSize.map { .int($0) } ?? .null)
        o.append("sliding_window_layers", .array(windowedLayers.sorted().map { .int($0) }))
        o.append("rope_type", .string(ropeType))
        o.append("rope_theta", .double(ropeTheta))
        if let s = ropeScaling {
            o.append(
                "rope_scaling",
                .object([
                    ("type", .string(s.type)), ("rope_factor", .double(s.ropeFactor)), ("beta_fast", .double(s.betaFast)),
                    ("beta_slow", .double(s.betaSlow)), ("original_seq_len", .int(s.originalSeqLen)), ("truncate", .bool(s.truncate)),
                ]))
        } else {
            o.append("rope_scaling", .null)
        }
        o.append("max_seq_len", .int(maxSeqLen))
        o.append("swiglu_alpha", .double(swigluAlpha))
        o.append("swiglu_limit", .double(swigluLimit))
        o.append("enable_weight_tying", .bool(enableWeightTying))
        let m = moeArgs
        o.append(
            "moe_args",
            .object([
                ("num_experts", .int(m.numExperts)), ("num_shared_experts", .int(m.numSharedExperts)), ("top_k", .int(m.topK)),
                ("score_func", .string(m.scoreFunc)), ("route_norm", .bool(m.routeNorm)), ("route_scale", .double(m.routeScale)),
                ("num_expert_groups", m.numExpertGroups.map { .int($0) } ?? .null),
                ("num_limited_groups", m.numLimitedGroups.map { .int($0) } ?? .null),
                ("gate_bias", .bool(m.gateBias)), ("load_balance_coeff", m.loadBalanceCoeff.map { .double($0) } ?? .null),
            ]))
        return o
    }
}

extension GptOssArgs {
    /// Model args from a Hugging Face `config.json` of `GptOssForCausalLM` (model_type `gpt_oss`). transformers
    /// saves YaRN under `rope_parameters` (≥ 5) or `rope_scaling` (4.x); the router has no load-balancing bias.
    public static func fromHFConfig(_ object: JSONObject, source: String) throws -> GptOssArgs {
        var r = JSONFieldReader(object, source: source)
        let modelType = try r.string("model_type") ?? "?"
        guard modelType == "gpt_oss" else {
            throw ModelArgsError(message: "\(source): model_type \"\(modelType)\" is not gpt_oss")
        }
        var a = GptOssArgs()
        a.vocabSize = try r.int("vocab_size") ?? a.vocabSize
        a.dim = try r.int("hidden_size") ?? a.dim
        a.nLayers = try r.int("num_hidden_layers") ?? a.nLayers
        a.nHeads = try r.int("num_attention_heads") ?? a.nHeads
        a.nKVHeads = try r.int("num_key_value_heads") ?? a.nKVHeads
        a.headDim = try r.int("head_dim") ?? a.headDim
        a.moeInterDim = try r.int("intermediate_size") ?? a.moeInterDim
        a.normEps = try r.double("rms_norm_eps") ?? a.normEps
        let bias = try r.bool("attention_bias") ?? true
        a.qkvBias = bias
        a.woBias = bias
        a.attentionSinks = true
        a.slidingWindowSize = try r.int("sliding_window")
        if let types = try r.stringArray("layer_types") {
            guard types.count == a.nLayers else {
                throw ModelArgsError(message: "\(source): layer_types has \(types.count) entries for \(a.nLayers) layers")
            }
            var windowed: [Int] = []
            for (layer, type) in types.enumerated() {
                switch type {
                case "sliding_attention": windowed.append(layer)
                case "full_attention": break
                default:
                    throw ModelArgsError(message: "\(source): layer_types[\(layer)] \"\(type)\" is not sliding_attention or full_attention")
                }
            }
            a.slidingWindowLayers = windowed
            if windowed.isEmpty { a.slidingWindowSize = nil }
        }
        a.maxSeqLen = try r.int("max_position_embeddings") ?? a.maxSeqLen
        a.swigluLimit = try r.double("swiglu_limit") ?? a.swigluLimit
        a.swigluAlpha = try r.double("swiglu_alpha") ?? a.swigluAlpha
        a.enableWeightTying = try r.bool("tie_word_embeddings") ?? false
        a.moeArgs.numExperts = try r.int("num_local_experts") ?? a.moeArgs.numExperts
        a.moeArgs.topK = try r.int("num_experts_per_tok") ?? (try r.int("experts_per_token")) ?? a.moeArgs.topK
        a.moeArgs.loadBalanceCoeff = nil
        a.ropeScaling = nil
        var theta = try r.double("rope_theta")
        let scalingKey = r.has("rope_parameters") ? "rope_parameters" : "rope_scaling"
        if let scaling = try r.object(scalingKey) {
            var s = JSONFieldReader(scaling, source: source, path: scalingKey)
            if theta == nil { theta = try s.double("rope_theta") }
            let type = try s.string("rope_type") ?? (try s.string("type")) ?? "default"
            if type == "yarn" {
                var y = RopeScaling()
                y.ropeFactor = try s.double("factor") ?? y.ropeFactor
                y.betaFast = try s.double("beta_fast") ?? y.betaFast
                y.betaSlow = try s.double("beta_slow") ?? y.betaSlow
                y.originalSeqLen = try s.int("original_max_position_embeddings") ?? y.originalSeqLen
                y.truncate = try s.bool("truncate") ?? true
                a.ropeScaling = y
            } else if type != "default" {
                throw ModelArgsError(
                    message: "\(source): \(scalingKey).rope_type \"\(type)\" is not supported for gpt_oss (yarn or default)")
            }
        }
        a.ropeTheta = theta ?? a.ropeTheta
        // Quantized gpt-oss releases describe MXFP4 experts; their *_blocks/*_scales tensors are refused when the
        // weights are opened, with the name of the tensor.
        do { try a.validate() } catch let e as ModelArgsError {
            throw ModelArgsError(message: "\(source): \(e.message)")
        }
        return a
    }

    /// The `config.json` transformers needs to rebuild this model as `GptOssForCausalLM`.
    public func hfConfig() -> JSONObject {
        var o = JSONObject()
        o.append("architectures", .array([.string("GptOssForCausalLM")]))
        o.append("model_type", .string("gpt_oss"))
        o.append("vocab_size", .int(vocabSize))
        o.append("hidden_size", .int(dim))
        o.append("intermediate_size", .int(moeInterDim))
        o.append("num_hidden_layers", .int(nLayers))
        o.append("num_attention_heads", .int(nHeads))
        o.append("num_key_value_heads", .int(nKVHeads))
        o.append("head_dim", .int(headDim))
        o.append("num_local_experts", .int(moeArgs.numExperts))
        o.append("num_experts_per_tok", .int(moeArgs.topK))
        o.append("rms_norm_eps", .double(normEps))
        o.append("attention_bias", .bool(qkvBias))
        o.append("attention_dropout", .double(0))
        o.append("hidden_act", .string("silu"))
        o.append("sliding_window", slidingWindowSize.map { .int($0) } ?? .null)
        o.append(
            "layer_types", .array((0..<nLayers).map { .string(slidingWindow(layer: $0) != nil ? "sliding_attention" : "full_attention") }))
        o.append("max_position_embeddings", .int(maxSeqLen))
        if let s = ropeScaling, yarnActive {
            o.append(
                "rope_parameters",
                .object([
                    ("rope_type", .string("yarn")), ("rope_theta", .double(ropeTheta)), ("factor", .double(s.ropeFactor)),
                    ("beta_fast", .double(s.betaFast)), ("beta_slow", .double(s.betaSlow)),
                    ("original_max_position_embeddings", .int(s.originalSeqLen)), ("truncate", .bool(s.truncate)),
                ]))
        } else {
            o.append("rope_parameters", .object([("rope_type", .string("default")), ("rope_theta", .double(ropeTheta))]))
        }
        o.append("swiglu_limit", .double(swigluLimit))
        o.append("tie_word_embeddings", .bool(enableWeightTying))
        o.append("router_aux_loss_coef", .double(moeArgs.loadBalanceCoeff ?? 0))
        o.append("output_router_logits", .bool(false))
        o.append("use_cache", .bool(true))
        o.append("dtype", .string("float32"))
        return o
    }
}
