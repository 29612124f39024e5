/// The `routing_stats` section of a results file: `{"layer_<i>": {...}, ..., "aggregate": {...}}`, as the
/// seed's `eval_moe_model.py` writes it, with our additions as extra keys. Encode with `.sortedKeys` for
/// byte-identical files (Foundation's JSONEncoder otherwise orders keys differently in every process).
public struct RoutingStatistics: Codable, Equatable, Sendable {
    /// One entry per MoE layer, by layer index.
    public var layers: [LayerRoutingMetrics]
    public var aggregate: RoutingAggregate

    public init(layers: [LayerRoutingMetrics], aggregate: RoutingAggregate) {
        self.layers = layers
        self.aggregate = aggregate
    }

    /// The seed's key for a layer: `layer_<TorchTitan layer index>`.
    public static func key(forLayer layer: Int) -> String { "layer_\(layer)" }

    struct DynamicKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ string: String) { stringValue = string }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: DynamicKey.self)
        for layer in layers { try container.encode(layer, forKey: DynamicKey(Self.key(forLayer: layer.layer))) }
        try container.encode(aggregate, forKey: DynamicKey("aggregate"))
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: DynamicKey.self)
        var layers: [LayerRoutingMetrics] = []
        for key in container.allKeys where key.stringValue.hasPrefix("layer_") {
            layers.append(try container.decode(LayerRoutingMetrics.self, forKey: key))
        }
        self.layers = layers.sorted { $0.layer < $1.layer }
        aggregate = try container.decode(RoutingAggregate.self, forKey: DynamicKey("aggregate"))
    }
}

/// What `RoutingMetrics` needs beyond the counts.
public struct RoutingMetricsOptions: Equatable, Sendable {
    /// The config's `parallelism.expert_parallel_degree`; nil or one that does not divide E gives no
    /// `ep_overload_factor` (the power-of-two table is always there).
    public var expertParallelDegree: Int?
    /// How many co-activated pairs to list per layer.
    public var topCoactivatedPairs: Int
    /// Pairs seen together fewer times than this are left out of the list (their lift is noise).
    public var minimumPairCount: Int

    public init(expertParallelDegree: Int? = nil, topCoactivatedPairs: Int = 10, minimumPairCount: Int = 5) {
        self.expertParallelDegree = expertParallelDegree
        self.topCoactivatedPairs = topCoactivatedPairs
        self.minimumPairCount = minimumPairCount
    }
}

/// Rank loads of one MoE layer under expert parallelism with contiguous placement.
public struct ExpertParallelLoad: Codable, Equatable, Sendable {
    public var degree: Int
    public var overloadFactor: Double
    public var maxRankLoad: Int
    public var meanRankLoad: Double

    public init(degree: Int, overloadFactor: Double, maxRankLoad: Int, meanRankLoad: Double) {
        self.degree = degree
        self.overloadFactor = overloadFactor
        self.maxRankLoad = maxRankLoad
        self.meanRankLoad = meanRankLoad
    }

    enum CodingKeys: String, CodingKey {
        case degree
        case overloadFactor = "overload_factor"
        case maxRankLoad = "max_rank_load"
        case meanRankLoad = "mean_rank_load"
    }
}

/// Assignments that a capacity-bounded dispatcher would drop at capacity factor C.
public struct CapacityDrop: Codable, Equatable, Sendable {
    public var capacityFactor: Double
    /// Dropped share of all assignments with capacity sized per batch (the scope a dispatcher works at).
    public var dropRate: Double
    public var droppedAssignments: Int
    /// The same with the whole evaluation set treated as one batch (recomputable from the per-expert counts).
    public var dropRateGlobal: Double

    public init(capacityFactor: Double, dropRate: Double, droppedAssignments: Int, dropRateGlobal: Double) {
        self.capacityFactor = capacityFactor
        self.dropRate = dropRate
        self.droppedAssignments = droppedAssignments
        self.dropRateGlobal = dropRateGlobal
    }

    enum CodingKeys: String, CodingKey {
        case capacityFactor = "capacity_factor"
        case dropRate = "drop_rate"
        case droppedAssignments = "dropped_assignments"
        case dropRateGlobal = "drop_rate_global"
    }
}

/// Two experts often selected for the same token.
public struct CoactivationPair: Codable, Equatable, Sendable {
    public var expertA: Int
    public var expertB: Int
    /// Tokens that selected both.
    public var count: Int
    /// P(a,b) / (P(a)·P(b)).
    public var lift: Double

    public init(expertA: Int, expertB: Int, count: Int, lift: Double) {
        self.expertA = expertA
        self.expertB = expertB
        self.count = count
        self.lift = lift
    }

    enum CodingKeys: String, CodingKey {
        case expertA = "expert_a"
        case expertB = "expert_b"
        case count, lift
    }
}

/// A metric's distribution over MoE layers.
public struct LayerSummary: Codable, Equatable, Sendable {
    public var mean: Double
    public var median: Double
    public var p90: Double
    public var min: Double
    public var max: Double
    /// The layer with the worst value (the highest, or the lowest where lower is worse), first on ties.
    public var worstLayer: String

    public init(mean: Double, median: Double, p90: Double, min: Double, max: Double, worstLayer: String) {
        self.mean = mean
        self.median = median
        self.p90 = p90
        self.min = min
        self.max = max
        self.worstLayer = worstLayer
    }

    enum CodingKeys: String, CodingKey {
        case mean, median, p90, min, max
        case worstLayer = "worst_layer"
    }
}

/// Routing metrics of one MoE layer. The first ten keys are the seed's, unchanged.
public struct LayerRoutingMetrics: Codable, Equatable, Sendable {
    // The seed's keys.
    public var totalTokensRouted: Int
    public var numExperts: Int
    public var meanTokensPerExpert: Double
    public var stdTokensPerExpert: Double
    public var maxTokensPerExpert: Int
    public var minTokensPerExpert: Int
    public var coefficientOfVariation: Double
    public var expertUtilizationRate: Double
    public var giniCoefficient: Double
    public var tokensPerExpertDistribution: [Int]

    // Identity and scope sizes.
    public var layer: Int
    public var topK: Int
    public var numTokens: Int
    public var numBatches: Int
    public var numSequences: Int

    // Load balance.
    public var maxViolation: Double
    public var maxViolationNoiseFloor: Double
    public var maxViolationBatchMean: Double
    public var maxViolationBatchMax: Double
    public var maxViolationBatchNoiseFloor: Double
    public var maxViolationSequenceMean: Double
    public var maxViolationSequenceMax: Double
    public var maxViolationSequenceNoiseFloor: Double
    public var minLoadRatio: Double
    public var coefficientOfVariationNormalized: Double
    public var coefficientOfVariationNoiseFloor: Double
    public var coefficientOfVariationNoiseCorrected: Double
    public var giniCoefficientNormalized: Double
    public var loadEntropy: Double
    public var loadEntropyNormalized: Double
    public var effectiveExperts: Double
    public var effectiveExpertsFraction: Double
    public var deadExperts: Int
    public var nearDeadExperts: Int
    public var top1TokensPerExpertDistribution: [Int]
    public var top1MaxViolation: Double
    public var top1DeadExperts: Int
    public var top1NearDeadExperts: Int

    // System and expert parallelism.
    public var epDegree: Int?
    public var epOverloadFactor: Double?
    public var epOverloadFactorByDegree: [ExpertParallelLoad]
    public var capacityDropRate: [CapacityDrop]

    // Router behaviour (nil where the decisions carried no scores).
    public var meanTokenRoutingEntropy: Double?
    public var meanTokenRoutingEntropyNormalized: Double?
    public var fragileTokenFraction: Double?
    public var fragileMarginThreshold: Double
    public var hasExpertBias: Bool
    public var expertBiasRerouteRate: Double
    public var auxBalanceLoss: Double?
    public var auxBalanceLossBatchMean: Double?
    public var auxBalanceLossSequenceMean: Double?

    // Structure.
    public var topCoactivatedPairs: [CoactivationPair]
    public var coactivationLiftUniformBaseline: Double

    // Insight metrics (RoutingMetrics+Insight.swift); nil where the run did not collect what they need.
    public var jainFairnessIndex: Double? = nil
    public var gateMassPerExpert: [Double]? = nil
    public var gateMassCoefficientOfVariation: Double? = nil
    public var routerZLoss: Double? = nil
    public var routerLogitMean: Double? = nil
    public var routerLogitStd: Double? = nil
    public var routerLogitAbsMax: Double? = nil
    public var tokenSpecialization: Double? = nil
    public var tokenSpecializationTokenIds: Int? = nil
    public var nextLayer: Int? = nil
    public var nextLayerTop1NormalizedMutualInformation: Double? = nil

    enum CodingKeys: String, CodingKey {
        case jainFairnessIndex = "jain_fairness_index"
        case gateMassPerExpert = "gate_mass_per_expert"
        case gateMassCoefficientOfVariation = "gate_mass_coefficient_of_variation"
        case routerZLoss = "router_z_loss"
        case routerLogitMean = "router_logit_mean"
        case routerLogitStd = "router_logit_std"
        case routerLogitAbsMax = "router_logit_absmax"
        case tokenSpecialization = "token_specialization"
        case tokenSpecializationTokenIds = "token_specialization_token_ids"
        case nextLayer = "next_layer"
        case nextLayerTop1NormalizedMutualInformation = "next_layer_top1_nmi"
        case totalTokensRouted = "total_tokens_routed"
        case numExperts = "num_experts"
        case meanTokensPerExpert = "mean_tokens_per_expert"
        case stdTokensPerExpert = "std_tokens_per_expert"
        case maxTokensPerExpert = "max_tokens_per_expert"
        case minTokensPerExpert = "min_tokens_per_expert"
        case coefficientOfVariation = "coefficient_of_variation"
        case expertUtilizationRate = "expert_utilization_rate"
        case giniCoefficient = "gini_coefficient"
        case tokensPerExpertDistribution = "tokens_per_expert_distribution"
        case layer
        case topK = "top_k"
        case numTokens = "num_tokens"
        case numBatches = "num_batches"
        case numSequences = "num_sequences"
        case maxViolation = "max_violation"
        case maxViolationNoiseFloor = "max_violation_noise_floor"
        case maxViolationBatchMean = "max_violation_batch_mean"
        case maxViolationBatchMax = "max_violation_batch_max"
        case maxViolationBatchNoiseFloor = "max_violation_batch_noise_floor"
        case maxViolationSequenceMean = "max_violation_sequence_mean"
        case maxViolationSequenceMax = "max_violation_sequence_max"
        case maxViolationSequenceNoiseFloor = "max_violation_sequence_noise_floor"
        case minLoadRatio = "min_load_ratio"
        case coefficientOfVariationNormalized = "coefficient_of_variation_normalized"
        case coefficientOfVariationNoiseFloor = "coefficient_of_variation_noise_floor"
        case coefficientOfVariationNoiseCorrected = "coefficient_of_variation_noise_corrected"
        case giniCoefficientNormalized = "gini_coefficient_normalized"
        case loadEntropy = "load_entropy"
        case loadEntropyNormalized = "load_entropy_normalized"
        case effectiveExperts = "effective_experts"
        case effectiveExpertsFraction = "effective_experts_fraction"
        case deadExperts = "dead_experts"
        case nearDeadExperts = "near_dead_experts"
        case top1TokensPerExpertDistribution = "top1_tokens_per_expert_distribution"
        case top1MaxViolation = "top1_max_violation"
        case top1DeadExperts = "top1_dead_experts"
        case top1NearDeadExperts = "top1_near_dead_experts"
        case epDegree = "ep_degree"
        case epOverloadFactor = "ep_overload_factor"
        case epOverloadFactorByDegree = "ep_overload_factor_by_degree"
        case capacityDropRate = "capacity_drop_rate"
        case meanTokenRoutingEntropy = "mean_token_routing_entropy"
        case meanTokenRoutingEntropyNormalized = "mean_token_routing_entropy_normalized"
        case fragileTokenFraction = "fragile_token_fraction"
        case fragileMarginThreshold = "fragile_margin_threshold"
        case hasExpertBias = "has_expert_bias"
        case expertBiasRerouteRate = "expert_bias_reroute_rate"
        case auxBalanceLoss = "aux_balance_loss"
        case auxBalanceLossBatchMean = "aux_balance_loss_batch_mean"
        case auxBalanceLossSequenceMean = "aux_balance_loss_sequence_mean"
        case topCoactivatedPairs = "top_coactivated_pairs"
        case coactivationLiftUniformBaseline = "coactivation_lift_uniform_baseline"
    }
}

/// Metrics over all MoE layers. The first four keys are the seed's (plain means over layers).
public struct RoutingAggregate: Codable, Equatable, Sendable {
    public var numMoeLayers: Int
    public var avgGiniCoefficient: Double?
    public var avgCoefficientOfVariation: Double?
    public var avgExpertUtilizationRate: Double?

    // Distributions over layers (nil without layers; the overload ones also without an EP degree).
    public var maxViolation: LayerSummary?
    public var coefficientOfVariation: LayerSummary?
    public var giniCoefficient: LayerSummary?
    public var epOverloadFactor: LayerSummary?
    public var maxViolationBatchMean: LayerSummary?
    public var coefficientOfVariationNormalized: LayerSummary?
    public var effectiveExpertsFraction: LayerSummary?
    public var expertBiasRerouteRate: LayerSummary?

    /// Σ_ℓ max_r L_ℓr / Σ_ℓ mean_r L_ℓr at `ep_degree`: the predicted MoE slowdown of a whole step.
    public var stepOverloadFactor: Double?
    public var epDegree: Int?

    public init(
        numMoeLayers: Int, avgGiniCoefficient: Double? = nil, avgCoefficientOfVariation: Double? = nil,
        avgExpertUtilizationRate: Double? = nil, maxViolation: LayerSummary? = nil,
        coefficientOfVariation: LayerSummary? = nil, giniCoefficient: LayerSummary? = nil,
        epOverloadFactor: LayerSummary? = nil, maxViolationBatchMean: LayerSummary? = nil,
        coefficientOfVariationNormalized: LayerSummary? = nil, effectiveExpertsFraction: LayerSummary? = nil,
        expertBiasRerouteRate: LayerSummary? = nil, stepOverloadFactor: Double? = nil, epDegree: Int? = nil
    ) {
        self.numMoeLayers = numMoeLayers
        self.avgGiniCoefficient = avgGiniCoefficient
        self.avgCoefficientOfVariation = avgCoefficientOfVariation
        self.avgExpertUtilizationRate = avgExpertUtilizationRate
        self.maxViolation = maxViolation
        self.coefficientOfVariation = coefficientOfVariation
        self.giniCoefficient = giniCoefficient
        self.epOverloadFactor = epOverloadFactor
        self.maxViolationBatchMean = maxViolationBatchMean
        self.coefficientOfVariationNormalized = coefficientOfVariationNormalized
        self.effectiveExpertsFraction = effectiveExpertsFraction
        self.expertBiasRerouteRate = expertBiasRerouteRate
        self.stepOverloadFactor = stepOverloadFactor
        self.epDegree = epDegree
    }

    enum CodingKeys: String, CodingKey {
        case numMoeLayers = "num_moe_layers"
        case avgGiniCoefficient = "avg_gini_coefficient"
        case avgCoefficientOfVariation = "avg_coefficient_of_variation"
        case avgExpertUtilizationRate = "avg_expert_utilization_rate"
        case maxViolation = "max_violation"
        case coefficientOfVariation = "coefficient_of_variation"
        case giniCoefficient = "gini_coefficient"
        case epOverloadFactor = "ep_overload_factor"
        case maxViolationBatchMean = "max_violation_batch_mean"
        case coefficientOfVariationNormalized = "coefficient_of_variation_normalized"
        case effectiveExpertsFraction = "effective_experts_fraction"
        case expertBiasRerouteRate = "expert_bias_reroute_rate"
        case stepOverloadFactor = "step_overload_factor"
        case epDegree = "ep_degree"
    }
}
