import Foundation
import MoEJSON
import MoETensor

/// gpt-oss model arguments as TorchTitan 0.3.0's `gpt_oss` module builds the model (`_build_gptoss_layers`,
/// `GptOssModel.Config`, `CosSinRoPE.Config`), flattened under the field names of the `--model-args` JSON
/// (the fixtures' `model_args.json`). Defaults are the `20b` flavor's.
public struct GptOssArgs: Codable, Equatable, Sendable {
    /// `CosSinRoPE.Config`'s YaRN fields. gpt-oss keeps the correction range fractional (`truncate` false).
    public struct RopeScaling: Codable, Equatable, Sendable {
        public var type = "yarn"
        public var ropeFactor: Double = 32
        public var betaFast: Double = 32
        public var betaSlow: Double = 1
        public var originalSeqLen = 4096
        public var truncate = false

        public init() {}

        enum CodingKeys: String, CodingKey, CaseIterable {
            case type, ropeFactor = "rope_factor", betaFast = "beta_fast", betaSlow = "beta_slow"
            case originalSeqLen = "original_seq_len", truncate
        }
    }

    /// The router and experts (`GptOssMoE.Config` with its `TokenChoiceTopKRouter.Config`).
    public struct Routing: Codable, Equatable, Sendable {
        public var numExperts = 32
        /// gpt-oss has none; kept so that the field of TorchTitan's `MoEArgs` reads back.
        public var numSharedExperts = 0
        public var topK = 4
        public var scoreFunc = "softmax"
        public var routeNorm = true
        public var routeScale: Double = 1
        public var numExpertGroups: Int? = nil
        public var numLimitedGroups: Int? = nil
        /// The router gate is `Linear(dim, num_experts, bias=True)` in every gpt-oss config.
        public var gateBias = true
        /// Non-nil: the checkpoint holds `moe.expert_bias_E`, added to the scores for selection only.
        public var loadBalanceCoeff: Double? = 1e-3

        public init() {}

        enum CodingKeys: String, CodingKey, CaseIterable {
            case numExperts = "num_experts", numSharedExperts = "num_shared_experts", topK = "top_k"
            case scoreFunc = "score_func", routeNorm = "route_norm", routeScale = "route_scale"
            case numExpertGroups = "num_expert_groups", numLimitedGroups = "num_limited_groups"
            case gateBias = "gate_bias", loadBalanceCoeff = "load_balance_coeff"
        }
    }

    public var vocabSize = 201_088
    public var dim = 2880
    public var nLayers = 24
    public var nHeads = 64
    public var nKVHeads = 8
    public var headDim = 64
    /// Each expert's hidden width F (`mlp1_weight_EGD` is `[E, 2F, D]`).
    public var moeInterDim = 2880
    public var normEps: Double = 1e-5
    public var qkvBias = true
    public var woBias = true
    public var attentionSinks = true
    /// The causal window of the layers in `slidingWindowLayers` (a query sees itself and the `size - 1` before it).
    public var slidingWindowSize: Int? = 128
    /// nil: the even layers, as `_build_gptoss_layers` assigns them.
    public var slidingWindowLayers: [Int]? = nil
    /// Only "rotate_half" (`CosSinRoPE`).
    public var ropeType = "rotate_half"
    public var ropeTheta: Double = 150_000
    /// nil: plain RoPE.
    public var ropeScaling: RopeScaling? = RopeScaling()
    /// Positions the RoPE cache covers (TorchTitan sets it to `training.seq_len`).
    public var maxSeqLen = 131_072
    public var swigluAlpha: Double = 1.702
    public var swigluLimit: Double = 7
    public var enableWeightTying = false
    public var moeArgs = Routing()

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case vocabSize = "vocab_size", dim, nLayers = "n_layers", nHeads = "n_heads", nKVHeads = "n_kv_heads"
        case headDim = "head_dim", moeInterDim = "moe_inter_dim", normEps = "norm_eps", qkvBias = "qkv_bias"
        case woBias = "wo_bias", attentionSinks = "attention_sinks", slidingWindowSize = "sliding_window_size"
        case slidingWindowLayers = "sliding_window_layers", ropeType = "rope_type", ropeTheta = "rope_theta"
        case ropeScaling = "rope_scaling", maxSeqLen = "max_seq_len", swigluAlpha = "swiglu_alpha"
        case swigluLimit = "swiglu_limit", enableWeightTying = "enable_weight_tying", moeArgs = "moe_args"
    }

    /// The family tag the fixtures' `model_args.json` carries; accepted and checked, not stored.
    static let familyKey = "family"
    public static let family = "gpt_oss"

    // MARK: Derived values

    /// Layers whose attention is windowed.
    public var windowedLayers: Set<Int> {
        guard slidingWindowSize != nil else { return [] }
        return Set(slidingWindowLayers ?? Array(stride(from: 0, to: max(nLayers, 0), by: 2)))
    }

    /// The causal window of `layer`, nil for full causal attention.
    public func slidingWindow(layer: Int) -> Int? {
        windowedLayers.contains(layer) ? slidingWindowSize : nil
    }

    /// YaRN changes the frequencies and the softmax scale only with a factor above 1 (`CosSinRoPE`, `Attention`).
    public var yarnActive: Bool { (ropeScaling?.ropeFactor ?? 1) > 1 }

    /// `head_dim^-0.5`, times `(0.1 ln factor + 1)²` under YaRN: TorchTitan folds YaRN's attention
    /// scaling into the softmax scale instead of scaling cos/sin.
    public var softmaxScale: Double {
        var scale = 1 / Double(headDim).squareRoot()
        if yarnActive, let factor = ropeScaling?.ropeFactor {
            let mscale = 0.1 * log(factor) + 1
            scale *= mscale * mscale
        }
        return scale
    }

    public var queryWidth: Int { nHeads * headDim }
    public var keyValueWidth: Int { nKVHeads * headDim }

    /// Layers a model may have; the limit keeps a typo such as n_layers = 10⁹ from building per-layer tables.
    public static let maximumLayers = 10_000

    // MARK: Validation

    /// Every field's range, then every tensor size and the parameter total with checked arithmetic, so that
    /// nothing run after it (the weight table, the RoPE table, the forward pass) can overflow or divide by zero.
    public func validate() throws {
        func need(_ ok: Bool, _ message: @autoclosure () -> String) throws {
            if !ok { throw ModelArgsError(message: "invalid gpt_oss model args: \(message())") }
        }
        func positive(_ value: Int, _ field: String) throws {
            try need(value > 0, "\(field) (\(value)) must be positive")
        }
        func finite(_ value: Double, _ field: String, above lowest: Double) throws {
            try need(value.isFinite && value > lowest, "\(field) (\(value)) must be a finite number > \(lowest)")
        }
        try positive(vocabSize, "vocab_size")
        try positive(dim, "dim")
        try need(nLayers > 0 && nLayers <= Self.maximumLayers, "n_layers (\(nLayers)) must be within 1...\(Self.maximumLayers)")
        try positive(nHeads, "n_heads")
        try positive(nKVHeads, "n_kv_heads")
        try need(nHeads % nKVHeads == 0, "n_heads (\(nHeads)) must be a multiple of n_kv_heads (\(nKVHeads))")
        try need(headDim > 0 && headDim % 2 == 0, "head_dim (\(headDim)) must be even and positive")
        try positive(moeInterDim, "moe_inter_dim")
        try finite(normEps, "norm_eps", above: 0)
        if let window = slidingWindowSize { try positive(window, "sliding_window_size") }
        if let layers = slidingWindowLayers {
            try need(slidingWindowSize != nil, "sliding_window_layers is set but sliding_window_size is null")
            for layer in layers {
                try need(layer >= 0 && layer < nLayers, "sliding_window_layers entry \(layer) is not a layer (0..<\(nLayers))")
            }
            try need(Set(layers).count == layers.count, "sliding_window_layers lists a layer twice")
        }
        try need(ropeType == "rotate_half", "rope_type \"\(ropeType)\" is not supported (gpt_oss uses \"rotate_half\")")
        try finite(ropeTheta, "rope_theta", above: 1)
        if let s = ropeScaling {
            try need(s.type == "yarn", "rope_scaling.type \"\(s.type)\" is not supported (only \"yarn\")")
            try finite(s.ropeFactor, "rope_scaling.rope_factor", above: 0)
            try finite(s.betaFast, "rope_scaling.beta_fast", above: 0)
            try finite(s.betaSlow, "rope_scaling.beta_slow", above: 0)
            try positive(s.originalSeqLen, "rope_scaling.original_seq_len")
        }
        try positive(maxSeqLen, "max_seq_len")
        try finite(swigluAlpha, "swiglu_alpha", above: -Double.greatestFiniteMagnitude)
        try finite(swigluLimit, "swiglu_limit", above: 0)
        let m = moeArgs
        try positive(m.numExperts, "moe_args.num_experts")
        try need(m.topK >= 1 && m.topK <= m.numExperts, "moe_args.top_k (\(m.topK)) must be within 1...num_experts (\(m.numExperts))")
        try need(
            m.scoreFunc == "softmax" || m.scoreFunc == "sigmoid",
            "moe_args.score_func must be \"softmax\" or \"sigmoid\", not \"\(m.scoreFunc)\"")
        try need(m.numSharedExperts == 0, "moe_args.num_shared_experts (\(m.numSharedExperts)) must be 0: gpt_oss has no shared experts")
        try need(
            m.numExpertGroups == nil && m.numLimitedGroups == nil,
            "moe_args.num_expert_groups/num_limited_groups must be null: gpt_oss routes without expert groups")
        try finite(m.routeScale, "moe_args.route_scale", above: -Double.greatestFiniteMagnitude)
        if let coefficient = m.loadBalanceCoeff { try finite(coefficient, "moe_args.load_balance_coeff", above: 0) }
        do {
            _ = try parameterCounts()
            _ = try Checked.multiply(maxSeqLen, headDim, what: "max_seq_len × head_dim (RoPE table)")
        } catch let error as SizeOverflowError {
            throw ModelArgsError(message: "invalid gpt_oss model args: \(error.description)")
        }
    }

    /// Parameters by TorchTitan's `get_moe_model_nparams_and_flops` buckets (0.3.0 `models/utils.py`):
    /// `embedding` (names containing "embedding": `tok_embeddings.weight`), `router` (`moe.router`), `experts`
    /// (`moe.routed_experts`), `dense` (everything else, the embedding included). The persistent `expert_bias_E`
    /// is a buffer, not a parameter. Checked: `validate()` calls it.
    public func parameterCounts() throws -> ParameterCounts {
        func mul(_ values: Int..., what: String) throws -> Int { try Checked.product(values, what: what) }
        func sum(_ values: Int..., what: String) throws -> Int { try Checked.sum(values, what: what) }
        let embedding = try mul(vocabSize, dim, what: "vocab_size × dim")
        let q = try sum(mul(queryWidth, dim, what: "wq"), qkvBias ? queryWidth : 0, what: "wq")
        let kv = try mul(2, sum(mul(keyValueWidth, dim, what: "wk"), qkvBias ? keyValueWidth : 0, what: "wk"), what: "wk + wv")
        let wo = try sum(mul(dim, queryWidth, what: "wo"), woBias ? dim : 0, what: "wo")
        let perLayerDense = try sum(q, kv, wo, attentionSinks ? nHeads : 0, 2 * dim, what: "attention parameters of a layer")
        let e = moeArgs.numExperts, f = moeInterDim
        let perLayerRouter = try sum(mul(e, dim, what: "router gate"), moeArgs.gateBias ? e : 0, what: "router gate")
        let mlp1 = try mul(e, 2, f, dim, what: "mlp1_weight_EGD")
        let mlp2 = try mul(e, dim, f, what: "mlp2_weight_EDF")
        let perLayerExperts = try sum(
            mlp1, mul(e, 2, f, what: "mlp1_bias_EG"), mlp2, mul(e, dim, what: "mlp2_bias_ED"),
            what: "expert parameters of a layer")
        let head = enableWeightTying ? 0 : embedding
        let dense = try sum(
            embedding, mul(perLayerDense, nLayers, what: "attention parameters"), dim, head,
            what: "dense parameters")
        var counts = ParameterCounts()
        counts.embedding = embedding
        counts.dense = dense
        counts.router = try mul(perLayerRouter, nLayers, what: "router parameters")
        counts.experts = try mul(perLayerExperts, nLayers, what: "expert parameters")
        _ = try sum(counts.dense, counts.router, counts.experts, what: "parameter total")
        return counts
    }

    /// TorchTitan 0.3.0's `GptOssModel.Config.get_nparams_and_flops`: `6·N_matmul + 6·L·H·(2·head_dim)·seq_len`
    /// FLOPs per token, where `N_matmul` = dense − embedding (untied) + router + experts·top_k // num_experts.
    /// Every layer counts as full attention (the sliding window does not shorten the quadratic term there).
    public func torchTitanParamsAndFlops(seqLen: Int) throws -> (parameters: Int, flopsPerToken: Int) {
        let c = try parameterCounts()
        do {
            let activeExperts = try Checked.multiply(c.experts, moeArgs.topK, what: "active expert parameters") / moeArgs.numExperts
            let matmul = try Checked.sum(
                [enableWeightTying ? c.dense : c.dense - c.embedding, c.router, activeExperts],
                what: "matmul parameters")
            let attention = try Checked.product([6, nLayers, nHeads, 2 * headDim, seqLen], what: "attention FLOPs per token")
            let flops = try Checked.add(
                Checked.multiply(6, matmul, what: "matmul FLOPs per token"), attention,
                what: "FLOPs per token")
            return (c.total, flops)
        } catch let error as SizeOverflowError {
            throw ModelArgsError(message: "gpt_oss FLOPs at seq_len \(seqLen): \(error.description)")
        }
    }
}
