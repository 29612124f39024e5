import Foundation
import MoEJSON
import MoETensor

/// Qwen3-MoE model arguments as TorchTitan 0.3.0's `qwen3` module builds the model (`_build_qwen3_moe_layers`
/// + `Qwen3Model.Config`), flattened to one level with the field names of `--model-args` JSON files and the
/// reference fixtures' `model_args.json`. Missing fields take the `debugmodel_moe` flavor's values.
/// Every layer is MoE (0.3.0 builds no dense FFN in its MoE flavors); attention is GQA with per-head q/k RMSNorm.
public struct Qwen3Args: Codable, Equatable, Sendable {
    public var vocabSize = 2048
    public var dim = 256
    public var nLayers = 8
    public var nHeads = 16
    public var nKVHeads = 8
    public var headDim = 128
    public var moeInterDim = 768
    /// eps of every RMSNorm (attention_norm, ffn_norm, q_norm, k_norm, final norm): 0.3.0's `_EPS`.
    public var normEps: Double = 1e-6
    public var qkNorm = true
    public var ropeTheta: Double = 1_000_000
    /// RoPE cache length; `update_from_config` sets it to the training seq_len.
    public var maxSeqLen = 4096
    public var enableWeightTying = false
    public var moeArgs = Qwen3Args.defaultMoEArgs

    /// The router of `_build_qwen3_moe_layers`: softmax over all experts, top-k, route_norm, scale 1, no gate
    /// bias, no groups, no shared experts, expert outputs weighted after the experts; `make_moe_config`'s
    /// load_balance_coeff 1e-3 (so an `expert_bias_E` buffer is trained and saved).
    public static var defaultMoEArgs: MoEArgs {
        var m = MoEArgs()
        m.numExperts = 64; m.numSharedExperts = 0; m.topK = 8; m.scoreFunc = "softmax"; m.routeNorm = true
        m.routeScale = 1; m.scoreBeforeExperts = false; m.numExpertGroups = nil; m.numLimitedGroups = nil
        m.gateBias = false; m.loadBalanceCoeff = 1e-3
        return m
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case vocabSize = "vocab_size", dim, nLayers = "n_layers", nHeads = "n_heads", nKVHeads = "n_kv_heads"
        case headDim = "head_dim", moeInterDim = "moe_inter_dim", normEps = "norm_eps", qkNorm = "qk_norm"
        case ropeTheta = "rope_theta", maxSeqLen = "max_seq_len", enableWeightTying = "enable_weight_tying"
        case moeArgs = "moe_args"
    }
    /// Fields a model-args file may carry that must hold one value for this family (checked, then dropped).
    static let fixedFields: [String: JSONValue] = ["family": .string("qwen3"), "rope_type": .string("rotate_half"), "rope_scaling": .null]

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = Qwen3Args()
        vocabSize = try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? d.vocabSize
        dim = try c.decodeIfPresent(Int.self, forKey: .dim) ?? d.dim
        nLayers = try c.decodeIfPresent(Int.self, forKey: .nLayers) ?? d.nLayers
        nHeads = try c.decodeIfPresent(Int.self, forKey: .nHeads) ?? d.nHeads
        nKVHeads = try c.decodeIfPresent(Int.self, forKey: .nKVHeads) ?? d.nKVHeads
        headDim = try c.decodeIfPresent(Int.self, forKey: .headDim) ?? d.headDim
        moeInterDim = try c.decodeIfPresent(Int.self, forKey: .moeInterDim) ?? d.moeInterDim
        normEps = try c.decodeIfPresent(Double.self, forKey: .normEps) ?? d.normEps
        qkNorm = try c.decodeIfPresent(Bool.self, forKey: .qkNorm) ?? d.qkNorm
        ropeTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? d.ropeTheta
        maxSeqLen = try c.decodeIfPresent(Int.self, forKey: .maxSeqLen) ?? d.maxSeqLen
        enableWeightTying = try c.decodeIfPresent(Bool.self, forKey: .enableWeightTying) ?? d.enableWeightTying
        moeArgs = try c.decodeIfPresent(MoEArgs.self, forKey: .moeArgs) ?? d.moeArgs
    }

    /// Layers a model may have (Qwen3-235B-A22B has 94); only keeps a typo from building huge per-layer tables.
    public static let maximumLayers = 10_000

    /// Every field's range, and every size derived from them computed with checked arithmetic, so that the
    /// loader, the RoPE table and the forward pass cannot overflow or divide by zero. The message names the field.
    public func validate() throws {
        func need(_ ok: Bool, _ message: @autoclosure () -> String) throws {
            if !ok { throw ModelArgsError(message: "invalid qwen3 model args: \(message())") }
        }
        func positive(_ value: Int, _ field: String) throws { try need(value > 0, "\(field) (\(value)) must be positive") }
        try positive(vocabSize, "vocab_size")
        try positive(dim, "dim")
        try need(nLayers > 0 && nLayers <= Self.maximumLayers, "n_layers (\(nLayers)) must be within 1...\(Self.maximumLayers)")
        try positive(nHeads, "n_heads")
        try positive(nKVHeads, "n_kv_heads")
        try need(nHeads % nKVHeads == 0, "n_heads (\(nHeads)) must be a multiple of n_kv_heads (\(nKVHeads))")
        try need(headDim > 0 && headDim % 2 == 0, "head_dim (\(headDim)) must be even and positive (rotate-half RoPE)")
        try positive(moeInterDim, "moe_inter_dim")
        try positive(maxSeqLen, "max_seq_len")
        try need(normEps.isFinite && normEps > 0, "norm_eps (\(normEps)) must be a finite number > 0")
        try need(ropeTheta.isFinite && ropeTheta > 1, "rope_theta (\(ropeTheta)) must be a finite number > 1")
        let m = moeArgs
        try need(m.numExperts > 0, "moe_args.num_experts (\(m.numExperts)) must be positive")
        try need(m.topK >= 1 && m.topK <= m.numExperts, "moe_args.top_k (\(m.topK)) must be within 1...num_experts (\(m.numExperts))")
        try need(
            m.scoreFunc == "softmax" || m.scoreFunc == "sigmoid",
            "moe_args.score_func must be \"softmax\" or \"sigmoid\", not \"\(m.scoreFunc)\"")
        try need(m.numSharedExperts == 0, "moe_args.num_shared_experts (\(m.numSharedExperts)) must be 0 (Qwen3-MoE has no shared experts)")
        try need(!m.gateBias, "moe_args.gate_bias must be false (Qwen3-MoE's router gate has no bias)")
        try need(!m.scoreBeforeExperts, "moe_args.score_before_experts must be false (0.3.0 weights the experts' outputs)")
        try need(
            m.numExpertGroups == nil && m.numLimitedGroups == nil,
            "moe_args.num_expert_groups/num_limited_groups must be null (Qwen3-MoE routes without groups)")
        try need(m.routeScale.isFinite, "moe_args.route_scale (\(m.routeScale)) must be a finite number")
        if let coefficient = m.loadBalanceCoeff { try need(coefficient.isFinite, "moe_args.load_balance_coeff must be a finite number") }
        do {
            try checkCostSizes()
            _ = try Checked.multiply(maxSeqLen, headDim, what: "RoPE table (max_seq_len × head_dim)")
        } catch let error as SizeOverflowError {
            throw ModelArgsError(message: "invalid qwen3 model args: \(error.description)")
        }
    }

    /// Parameters the model holds (expert bias buffers excluded), with checked arithmetic.
    public func parameterCount() throws -> Int {
        let shapes = try Qwen3Naming.shapes(self)
        return try Checked.sum(
            try shapes.map { try Checked.product($0.shape, what: "qwen3 tensor \($0.name)") },
            what: "qwen3 parameter count")
    }

    // MARK: Reading

    /// A `--model-args` JSON file (or a results file's `{"model_args": {…}}`).
    public static func load(jsonFile url: URL) throws -> Qwen3Args {
        let bytes: [UInt8]
        do { bytes = Array(try Data(contentsOf: url)) } catch {
            throw ModelArgsError(message: "cannot read model args file \(url.path): \(error.localizedDescription)")
        }
        return try decode(json: bytes, source: url.path)
    }

    /// TorchTitan field names; unknown fields are an error (usually typos that would silently change the model).
    public static func decode(json bytes: [UInt8], source: String) throws -> Qwen3Args {
        let value: JSONValue
        do { value = try JSONValue.parse(bytes) } catch {
            throw ModelArgsError(message: "\(source): \(error)")
        }
        guard var fields = value.objectValue else { throw ModelArgsError(message: "\(source): expected a JSON object of model args") }
        if let wrapped = fields["model_args"]?.objectValue { fields = wrapped }
        var args = Qwen3Args()
        let reader = FieldReader(source: source, prefix: "")
        for (key, value) in fields.entries {
            if let fixed = fixedFields[key] {
                guard value == fixed else {
                    throw ModelArgsError(message: "\(source): \(key) must be \(fixed.serialized) for qwen3, not \(value.serialized)")
                }
                continue
            }
            guard let field = CodingKeys(rawValue: key) else {
                throw ModelArgsError(
                    message:
                        "\(source): unknown qwen3 model args field \"\(key)\" (known: \((CodingKeys.allCases.map(\.rawValue) + fixedFields.keys.sorted()).joined(separator: ", ")))"
                )
            }
            switch field {
            case .vocabSize: args.vocabSize = try reader.int(value, key)
            case .dim: args.dim = try reader.int(value, key)
            case .nLayers: args.nLayers = try reader.int(value, key)
            case .nHeads: args.nHeads = try reader.int(value, key)
            case .nKVHeads: args.nKVHeads = try reader.int(value, key)
            case .headDim: args.headDim = try reader.int(value, key)
            case .moeInterDim: args.moeInterDim = try reader.int(value, key)
            case .normEps: args.normEps = try reader.double(value, key)
            case .qkNorm: args.qkNorm = try reader.bool(value, key)
            case .ropeTheta: args.ropeTheta = try reader.double(value, key)
            case .maxSeqLen: args.maxSeqLen = try reader.int(value, key)
            case .enableWeightTying: args.enableWeightTying = try reader.bool(value, key)
            case .moeArgs: args.moeArgs = try decodeMoEArgs(value, source: source)
            }
        }
        do { try args.validate() } catch let e as ModelArgsError {
            throw ModelArgsError(message: "\(source): \(e.message)")
        }
        return args
    }

    static func decodeMoEArgs(_ value: JSONValue, source: String) throws -> MoEArgs {
        guard let fields = value.objectValue else { throw ModelArgsError(message: "\(source): moe_args should be an object") }
        var m = defaultMoEArgs
        let reader = FieldReader(source: source, prefix: "moe_args.")
        for (key, value) in fields.entries {
            if MoEArgs.ignoredKeys.contains(key) { continue }
            guard let field = MoEArgs.CodingKeys(rawValue: key) else {
                throw ModelArgsError(message: "\(source): unknown moe_args field \"\(key)\"")
            }
            switch field {
            case .numExperts: m.numExperts = try reader.int(value, key)
            case .numSharedExperts: m.numSharedExperts = try reader.int(value, key)
            case .topK: m.topK = try reader.int(value, key)
            case .scoreFunc: m.scoreFunc = try reader.string(value, key)
            case .routeNorm: m.routeNorm = try reader.bool(value, key)
            case .routeScale: m.routeScale = try reader.double(value, key)
            case .scoreBeforeExperts: m.scoreBeforeExperts = try reader.bool(value, key)
            case .numExpertGroups: m.numExpertGroups = value.isNull ? nil : try reader.int(value, key)
            case .numLimitedGroups: m.numLimitedGroups = value.isNull ? nil : try reader.int(value, key)
            case .gateBias: m.gateBias = try reader.bool(value, key)
            case .loadBalanceCoeff: m.loadBalanceCoeff = value.isNull ? nil : try reader.double(value, key)
            }
        }
        return m
    }

    /// JSON with the field names above (results files, `convert`'s record of what was loaded).
    public var json: JSONValue {
        let m = moeArgs
        func optional(_ v: Int?) -> JSONValue { v.map { .int($0) } ?? .null }
        let moe: JSONObject = [
            ("num_experts", .int(m.numExperts)), ("num_shared_experts", .int(m.numSharedExperts)), ("top_k", .int(m.topK)),
            ("score_func", .string(m.scoreFunc)), ("route_norm", .bool(m.routeNorm)), ("route_scale", .double(m.routeScale)),
            ("score_before_experts", .bool(m.scoreBeforeExperts)), ("num_expert_groups", optional(m.numExpertGroups)),
            ("num_limited_groups", optional(m.numLimitedGroups)), ("gate_bias", .bool(m.gateBias)),
            ("load_balance_coeff", m.loadBalanceCoeff.map { .double($0) } ?? .null),
        ]
        let object: JSONObject = [
            ("family", .string("qwen3")), ("vocab_size", .int(vocabSize)), ("dim", .int(dim)), ("n_layers", .int(nLayers)),
            ("n_heads", .int(nHeads)), ("n_kv_heads", .int(nKVHeads)), ("head_dim", .int(headDim)),
            ("moe_inter_dim", .int(moeInterDim)), ("norm_eps", .double(normEps)), ("qk_norm", .bool(qkNorm)),
            ("rope_type", .string("rotate_half")), ("rope_theta", .double(ropeTheta)), ("rope_scaling", .null),
            ("max_seq_len", .int(maxSeqLen)), ("enable_weight_tying", .bool(enableWeightTying)), ("moe_args", .object(moe)),
        ]
        return .object(object)
    }
}

/// Typed reads of JSON fields whose errors name the file and the field.
struct FieldReader {
    let source: String
    let prefix: String

    func int(_ value: JSONValue, _ key: String) throws -> Int {
        guard let n = value.intValue else {
            throw ModelArgsError(message: "\(source): \(prefix)\(key) should be an integer, not \(value.typeName)")
        }
        return n
    }
    func double(_ value: JSONValue, _ key: String) throws -> Double {
        guard let n = value.doubleValue else {
            throw ModelArgsError(message: "\(source): \(prefix)\(key) should be a number, not \(value.typeName)")
        }
        return n
    }
    func bool(_ value: JSONValue, _ key: String) throws -> Bool {
        guard let b = value.boolValue else {
            throw ModelArgsError(message: "\(source): \(prefix)\(key) should be true or false, not \(value.typeName)")
        }
        return b
    }
    func string(_ value: JSONValue, _ key: String) throws -> String {
        guard let s = value.stringValue else {
            throw ModelArgsError(message: "\(source): \(prefix)\(key) should be a string, not \(value.typeName)")
        }
        return s
    }
}
