import Foundation
import MoEJSON
import MoETensor

/// Routing arguments, with TorchTitan's `MoEArgs` field names and defaults (v0.2.2).
public struct MoEArgs: Codable, Equatable, Sendable {
    public var numExperts = 8
    public var numSharedExperts = 1
    public var topK = 1
    /// "softmax" or "sigmoid".
    public var scoreFunc = "sigmoid"
    public var routeNorm = false
    public var routeScale: Double = 1.0
    public var scoreBeforeExperts = true
    public var numExpertGroups: Int? = nil
    public var numLimitedGroups: Int? = nil
    public var gateBias = false
    public var loadBalanceCoeff: Double? = 1e-3

    enum CodingKeys: String, CodingKey, CaseIterable {
        case numExperts = "num_experts", numSharedExperts = "num_shared_experts", topK = "top_k"
        case scoreFunc = "score_func", routeNorm = "route_norm", routeScale = "route_scale"
        case scoreBeforeExperts = "score_before_experts", numExpertGroups = "num_expert_groups"
        case numLimitedGroups = "num_limited_groups", gateBias = "gate_bias", loadBalanceCoeff = "load_balance_coeff"
    }
    /// TorchTitan fields that do not change what an evaluation computes.
    static let ignoredKeys: Set<String> = ["use_grouped_mm", "_debug_force_load_balance"]

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = MoEArgs()
        numExperts = try c.decodeIfPresent(Int.self, forKey: .numExperts) ?? d.numExperts
        numSharedExperts = try c.decodeIfPresent(Int.self, forKey: .numSharedExperts) ?? d.numSharedExperts
        topK = try c.decodeIfPresent(Int.self, forKey: .topK) ?? d.topK
        scoreFunc = try c.decodeIfPresent(String.self, forKey: .scoreFunc) ?? d.scoreFunc
        routeNorm = try c.decodeIfPresent(Bool.self, forKey: .routeNorm) ?? d.routeNorm
        routeScale = try c.decodeIfPresent(Double.self, forKey: .routeScale) ?? d.routeScale
        scoreBeforeExperts = try c.decodeIfPresent(Bool.self, forKey: .scoreBeforeExperts) ?? d.scoreBeforeExperts
        numExpertGroups = try c.decodeIfPresent(Int.self, forKey: .numExpertGroups)
        numLimitedGroups = try c.decodeIfPresent(Int.self, forKey: .numLimitedGroups)
        gateBias = try c.decodeIfPresent(Bool.self, forKey: .gateBias) ?? d.gateBias
        loadBalanceCoeff =
            c.contains(.loadBalanceCoeff)
            ? try c.decodeIfPresent(Double.self, forKey: .loadBalanceCoeff) : d.loadBalanceCoeff
    }

    /// Written whole, `load_balance_coeff` as null when there is none: a missing key reads back as TorchTitan's 1e-3.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(numExperts, forKey: .numExperts)
        try c.encode(numSharedExperts, forKey: .numSharedExperts)
        try c.encode(topK, forKey: .topK)
        try c.encode(scoreFunc, forKey: .scoreFunc)
        try c.encode(routeNorm, forKey: .routeNorm)
        try c.encode(routeScale, forKey: .routeScale)
        try c.encode(scoreBeforeExperts, forKey: .scoreBeforeExperts)
        try c.encodeIfPresent(numExpertGroups, forKey: .numExpertGroups)
        try c.encodeIfPresent(numLimitedGroups, forKey: .numLimitedGroups)
        try c.encode(gateBias, forKey: .gateBias)
        try c.encode(loadBalanceCoeff, forKey: .loadBalanceCoeff)
    }
}

/// DeepSeek-V3 model arguments, with TorchTitan's `DeepSeekV3ModelArgs` field names and defaults (v0.2.2).
public struct ModelArgs: Codable, Equatable, Sendable {
    public var vocabSize = 102_400
    public var dim = 2048
    public var interDim = 10_944
    public var moeInterDim = 1408
    public var nLayers = 27
    public var nDenseLayers = 1
    public var nHeads = 16
    public var normEps: Double = 1e-5
    public var moeArgs = MoEArgs()
    public var qLoraRank = 0
    public var kvLoraRank = 512
    public var qkNopeHeadDim = 128
    public var qkRopeHeadDim = 64
    public var vHeadDim = 128
    /// The training sequence length (TorchTitan's `update_from_config` sets it from `training.seq_len`);
    /// in v0.2.x it decides whether YaRN and the mscale correction apply.
    public var maxSeqLen = 16_384
    public var originalSeqLen = 4096
    public var ropeTheta: Double = 10_000
    public var ropeFactor: Double = 40
    public var betaFast: Double = 32
    public var betaSlow: Double = 1
    public var mscale: Double = 1.0

    enum CodingKeys: String, CodingKey, CaseIterable {
        case vocabSize = "vocab_size", dim, interDim = "inter_dim", moeInterDim = "moe_inter_dim"
        case nLayers = "n_layers", nDenseLayers = "n_dense_layers", nHeads = "n_heads", normEps = "norm_eps"
        case moeArgs = "moe_args", qLoraRank = "q_lora_rank", kvLoraRank = "kv_lora_rank"
        case qkNopeHeadDim = "qk_nope_head_dim", qkRopeHeadDim = "qk_rope_head_dim", vHeadDim = "v_head_dim"
        case maxSeqLen = "max_seq_len", originalSeqLen = "original_seq_len", ropeTheta = "rope_theta"
        case ropeFactor = "rope_factor", betaFast = "beta_fast", betaSlow = "beta_slow", mscale
    }
    /// TorchTitan fields that do not change what an evaluation computes.
    static let ignoredKeys: Set<String> = [
        "max_batch_size", "attn_type", "attn_mask_type", "use_flex_attn", "expert_parallel_comm_backend",
        "moe_impl", "_enforced", "eos_id", "num_mtp_layers",
        // Which family the file describes (ModelRegistry reads it).
        "family",
    ]

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = ModelArgs()
        func value<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T {
            try c.decodeIfPresent(T.self, forKey: key) ?? fallback
        }
        vocabSize = try value(.vocabSize, d.vocabSize)
        dim = try value(.dim, d.dim)
        interDim = try value(.interDim, d.interDim)
        moeInterDim = try value(.moeInterDim, d.moeInterDim)
        nLayers = try value(.nLayers, d.nLayers)
        nDenseLayers = try value(.nDenseLayers, d.nDenseLayers)
        nHeads = try value(.nHeads, d.nHeads)
        normEps = try value(.normEps, d.normEps)
        moeArgs = try value(.moeArgs, d.moeArgs)
        qLoraRank = try value(.qLoraRank, d.qLoraRank)
        kvLoraRank = try value(.kvLoraRank, d.kvLoraRank)
        qkNopeHeadDim = try value(.qkNopeHeadDim, d.qkNopeHeadDim)
        qkRopeHeadDim = try value(.qkRopeHeadDim, d.qkRopeHeadDim)
        vHeadDim = try value(.vHeadDim, d.vHeadDim)
        maxSeqLen = try value(.maxSeqLen, d.maxSeqLen)
        originalSeqLen = try value(.originalSeqLen, d.originalSeqLen)
        ropeTheta = try value(.ropeTheta, d.ropeTheta)
        ropeFactor = try value(.ropeFactor, d.ropeFactor)
        betaFast = try value(.betaFast, d.betaFast)
        betaSlow = try value(.betaSlow, d.betaSlow)
        mscale = try value(.mscale, d.mscale)
    }

    public var qkHeadDim: Int { qkNopeHeadDim + qkRopeHeadDim }
    public var numMoELayers: Int { max(0, nLayers - nDenseLayers) }
    public func isMoELayer(_ layer: Int) -> Bool { layer >= nDenseLayers }

    /// Layers a model may have. DeepSeek-V3 671B has 61; the limit only keeps a typo such as
    /// n_layers = 10⁹ from building per-layer tables before any checkpoint is consulted.
    public static let maximumLayers = 10_000

    /// These args on `layers` layers (dense layers capped to it), validated: `--layers` of bench and
    /// `convert --random-weights`, checked before any weight is made for them.
    public func withLayers(_ layers: Int, option: String = "--layers") throws -> ModelArgs {
        guard (1...Self.maximumLayers).contains(layers) else {
            throw ModelArgsError(message: "\(option) \(layers) must be within 1...\(Self.maximumLayers)")
        }
        var args = self
        args.nLayers = layers
        args.nDenseLayers = min(nDenseLayers, layers)
        try args.validate()
        return args
    }

    /// The one validation pass: every field's range and finiteness, and every size derived from the
    /// fields (head products, tensor element counts, parameter and FLOP totals) computed with checked
    /// arithmetic, so that code run after it (`expectedShapes()`, the RoPE table, the forward pass) cannot
    /// overflow or divide by zero. The message names the field.
    public func validate() throws {
        func need(_ ok: Bool, _ message: @autoclosure () -> String) throws {
            if !ok { throw ModelArgsError(message: "invalid model args: \(message())") }
        }
        func positive(_ value: Int, _ field: String) throws {
            try need(value > 0, "\(field) (\(value)) must be positive")
        }
        func finite(_ value: Double, _ field: String, above lowest: Double? = nil) throws {
            if let lowest {
                try need(value.isFinite && value > lowest, "\(field) (\(value)) must be a finite number > \(lowest.formatted)")
            } else {
                try need(value.isFinite, "\(field) (\(value)) must be a finite number")
            }
        }
        try positive(vocabSize, "vocab_size")
        try positive(dim, "dim")
        try need(nLayers > 0 && nLayers <= Self.maximumLayers, "n_layers (\(nLayers)) must be within 1...\(Self.maximumLayers)")
        try positive(nHeads, "n_heads")
        try need(nDenseLayers >= 0 && nDenseLayers <= nLayers, "n_dense_layers (\(nDenseLayers)) must be within 0...n_layers (\(nLayers))")
        try need(qkRopeHeadDim % 2 == 0 && qkRopeHeadDim > 0, "qk_rope_head_dim (\(qkRopeHeadDim)) must be even and positive")
        try positive(kvLoraRank, "kv_lora_rank")
        try positive(vHeadDim, "v_head_dim")
        try need(qkNopeHeadDim >= 0, "qk_nope_head_dim (\(qkNopeHeadDim)) must be ≥ 0")
        try need(qLoraRank >= 0, "q_lora_rank (\(qLoraRank)) must be ≥ 0")
        if nDenseLayers > 0 { try positive(interDim, "inter_dim") }
        try positive(maxSeqLen, "max_seq_len")
        try positive(originalSeqLen, "original_seq_len")
        try finite(normEps, "norm_eps", above: 0)
        // YaRN divides by log(rope_theta) and log(rope_factor) scales the softmax.
        try finite(ropeTheta, "rope_theta", above: 1)
        try finite(ropeFactor, "rope_factor", above: 0)
        try finite(betaFast, "beta_fast", above: 0)
        try finite(betaSlow, "beta_slow", above: 0)
        try finite(mscale, "mscale")
        let m = moeArgs
        if numMoELayers > 0 {
            try positive(moeInterDim, "moe_inter_dim")
            try need(m.numExperts > 0, "moe_args.num_experts must be positive")
            try need(m.topK >= 1 && m.topK <= m.numExperts, "moe_args.top_k (\(m.topK)) must be within 1...num_experts (\(m.numExperts))")
            try need(
                m.scoreFunc == "softmax" || m.scoreFunc == "sigmoid",
                "moe_args.score_func must be \"softmax\" or \"sigmoid\", not \"\(m.scoreFunc)\"")
            try need(m.numSharedExperts >= 0, "moe_args.num_shared_experts must be ≥ 0")
            try finite(m.routeScale, "moe_args.route_scale")
            if let coefficient = m.loadBalanceCoeff { try finite(coefficient, "moe_args.load_balance_coeff") }
            if let groups = m.numExpertGroups {
                try need(
                    groups > 0 && m.numExperts % groups == 0,
                    "moe_args.num_expert_groups (\(groups)) must divide num_experts (\(m.numExperts))")
                try need(m.numExperts / groups >= 2, "each expert group needs ≥ 2 experts (group score is a top-2 sum)")
                let limited = m.numLimitedGroups ?? groups
                try need(limited >= 1 && limited <= groups, "moe_args.num_limited_groups (\(limited)) must be within 1...num_expert_groups")
                try need(limited * (m.numExperts / groups) >= m.topK, "num_limited_groups × experts per group must be ≥ top_k")
            }
        }
        do {
            try checkDerivedSizes()
        } catch let error as SizeOverflowError {
            throw ModelArgsError(message: "invalid model args: \(error.description)")
        }
    }

    // MARK: Loading

    /// Reads `--model-args FILE.json`: TorchTitan field names, missing fields take TorchTitan's defaults,
    /// unknown fields are an error (they are usually typos that would silently change the model).
    public static func load(jsonFile url: URL) throws -> ModelArgs {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ModelArgsError(message: "cannot read model args file \(url.path): \(error.localizedDescription)")
        }
        return try decode(json: data, source: url.path)
    }

    public static func decode(json data: Data, source: String) throws -> ModelArgs {
        let value: JSONValue
        do { value = try JSONValue.parse(Array(data)) } catch {
            throw ModelArgsError(message: "\(source): \(error)")
        }
        guard case .object(let root) = value else {
            throw ModelArgsError(message: "\(source): expected a JSON object of model args")
        }
        // Accept a wrapper like {"model_args": {...}} as written in our results files.
        let fields = root["model_args"]?.objectValue ?? root
        let known = Set(CodingKeys.allCases.map(\.rawValue)).union(ignoredKeys)
        if let unknown = fields.keys.filter({ !known.contains($0) }).sorted().first {
            throw ModelArgsError(
                message:
                    "\(source): unknown model args field \"\(unknown)\" (known: \(CodingKeys.allCases.map(\.rawValue).joined(separator: ", ")))"
            )
        }
        if let moe = fields["moe_args"]?.objectValue {
            let knownMoE = Set(MoEArgs.CodingKeys.allCases.map(\.rawValue)).union(MoEArgs.ignoredKeys)
            if let unknown = moe.keys.filter({ !knownMoE.contains($0) }).sorted().first {
                throw ModelArgsError(message: "\(source): unknown moe_args field \"\(unknown)\"")
            }
        }
        do {
            let args = try JSONValueDecoder(nonFiniteDoubles: .error).decode(ModelArgs.self, from: .object(fields))
            try args.validate()
            return args
        } catch let e as ModelArgsError {
            throw ModelArgsError(message: "\(source): \(e.message)")
        } catch {
            throw ModelArgsError(message: "\(source): \(error)")
        }
    }

    /// JSON with TorchTitan field names in declaration order (for the template printed on unknown flavors and
    /// `inspect`); pretty output has no final line break.
    public func jsonString(pretty: Bool = true) -> String {
        guard let value = try? JSONValueEncoder().encode(self) else { return "{}" }
        return pretty ? String(value.prettyPrinted.dropLast()) : value.serialized
    }
}

private extension Double {
    /// 0 and 1 as "0" and "1", not "0.0".
    var formatted: String { rounded() == self && abs(self) < 1e15 ? String(Int(self)) : String(self) }
}

public struct ModelArgsError: Error, CustomStringConvertible, LocalizedError {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
    public var errorDescription: String? { message }
}
