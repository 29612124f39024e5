import Foundation
import MoECore

/// Routing-efficiency formulas, each written once here and once in docs/METRICS.md.
/// Notation: E experts, top-k, T tokens in the scope, c_i top-k assignments of expert i (Σ c_i = kT),
/// c̄ = kT/E the balanced load. Degenerate inputs (no tokens) give the balanced value, never NaN.
public enum RoutingMetrics {
    /// Near-dead means a load below this fraction of the balanced load.
    public static let nearDeadFraction = 0.1

    // MARK: - Load balance over per-expert loads

    /// c̄ = Σ c_i / E.
    public static func meanLoad(_ loads: some Collection<Int>) -> Double {
        loads.isEmpty ? 0 : Double(loads.reduce(0, +)) / Double(loads.count)
    }

    /// σ = sqrt(Σ (c_i − c̄)² / E), the population standard deviation (numpy's default, as the seed used).
    public static func populationStandardDeviation(_ loads: some Collection<Int>) -> Double {
        guard !loads.isEmpty else { return 0 }
        let mean = meanLoad(loads)
        let squares = loads.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) }
        return (squares / Double(loads.count)).squareRoot()
    }

    /// CV = σ / c̄ (0 without load).
    public static func coefficientOfVariation(_ loads: some Collection<Int>) -> Double {
        let mean = meanLoad(loads)
        return mean > 0 ? populationStandardDeviation(loads) / mean : 0
    }

    /// Gini = 2·Σ_i i·x_(i) / (n·Σx) − (n+1)/n over the loads sorted ascending, i = 1…n (0 without load).
    public static func gini(_ loads: some Collection<Int>) -> Double {
        let sorted = loads.sorted()
        let n = Double(sorted.count), total = Double(sorted.reduce(0, +))
        guard total > 0 else { return 0 }
        var weighted = 0.0
        for (index, value) in sorted.enumerated() { weighted += Double(index + 1) * Double(value) }
        return 2 * weighted / (n * total) - (n + 1) / n
    }

    /// MaxVio = max_i c_i / c̄ − 1 with c̄ = total / E (0 without load).
    public static func maxViolation(maxLoad: Int, totalLoad: Int, experts: Int) -> Double {
        totalLoad > 0 ? Double(maxLoad) * Double(experts) / Double(totalLoad) - 1 : 0
    }

    public static func maxViolation(_ loads: some Collection<Int>) -> Double {
        maxViolation(maxLoad: loads.max() ?? 0, totalLoad: loads.reduce(0, +), experts: loads.count)
    }

    /// min_i c_i / c̄ (1 without load).
    public static func minLoadRatio(_ loads: some Collection<Int>) -> Double {
        let mean = meanLoad(loads)
        return mean > 0 ? Double(loads.min() ?? 0) / mean : 1
    }

    /// CV_norm = CV / sqrt((E − k)/k): 1 is total collapse onto k experts (0 when k = E).
    public static func normalizedCoefficientOfVariation(_ cv: Double, experts: Int, topK: Int) -> Double {
        experts > topK ? cv / (Double(experts - topK) / Double(topK)).squareRoot() : 0
    }

    /// sqrt((E − k)/(kT)): the CV that uniform random top-k routing shows from sampling alone.
    public static func coefficientOfVariationNoiseFloor(experts: Int, topK: Int, tokens: Int) -> Double {
        experts > topK && tokens > 0 ? (Double(experts - topK) / (Double(topK) * Double(tokens))).squareRoot() : 0
    }

    /// CV_nc = sqrt(max(0, CV² − (E − k)/(kT))): the CV left after removing sampling noise.
    public static func noiseCorrectedCoefficientOfVariation(_ cv: Double, experts: Int, topK: Int, tokens: Int) -> Double {
        let noise = coefficientOfVariationNoiseFloor(experts: experts, topK: topK, tokens: tokens)
        return max(0, cv * cv - noise * noise).squareRoot()
    }

    /// G_norm = G·E/(E − k): 1 is total collapse onto k experts (0 when k = E).
    public static func normalizedGini(_ gini: Double, experts: Int, topK: Int) -> Double {
        experts > topK ? gini * Double(experts) / Double(experts - topK) : 0
    }

    /// H = −Σ p_i ln p_i with p_i = c_i / Σc (nats; 0 without load).
    public static func loadEntropy(_ loads: some Collection<Int>) -> Double {
        let total = Double(loads.reduce(0, +))
        guard total > 0 else { return 0 }
        var entropy = 0.0
        for load in loads where load > 0 {
            let p = Double(load) / total
            entropy -= p * log(p)
        }
        return entropy
    }

    /// N_eff = exp(H), between k and E under top-k.
    public static func effectiveExperts(entropy: Double) -> Double { exp(entropy) }

    /// #{c_i = 0}.
    public static func deadExperts(_ loads: some Collection<Int>) -> Int { loads.count { $0 == 0 } }

    /// #{c_i < 0.1·c̄} (dead experts included; none without load).
    public static func nearDeadExperts(_ loads: some Collection<Int>) -> Int {
        let threshold = nearDeadFraction * meanLoad(loads)
        return loads.count { Double($0) < threshold }
    }

    /// #{c_i > 0} / E, the seed's "expert utilization rate" (an active-expert fraction).
    public static func expertUtilizationRate(_ loads: some Collection<Int>) -> Double {
        loads.isEmpty ? 0 : Double(loads.count { $0 > 0 }) / Double(loads.count)
    }

    // MARK: - Expert parallelism and capacity

    /// Rank loads L_r = Σ_{i on r} c_i with experts placed contiguously (rank r holds E/R consecutive
    /// experts), and OF = max_r L_r / mean_r L_r (1 without load). Nil unless R ≥ 1 divides E.
    public static func expertParallelLoad(_ loads: [Int], degree: Int) -> ExpertParallelLoad? {
        guard degree >= 1, !loads.isEmpty, loads.count % degree == 0 else { return nil }
        let perRank = loads.count / degree
        var maxRank = 0
        for rank in 0..<degree {
            maxRank = max(maxRank, loads[(rank * perRank)..<((rank + 1) * perRank)].reduce(0, +))
        }
        let meanRank = Double(loads.reduce(0, +)) / Double(degree)
        return ExpertParallelLoad(
            degree: degree, overloadFactor: meanRank > 0 ? Double(maxRank) / meanRank : 1,
            maxRankLoad: maxRank, meanRankLoad: meanRank)
    }

    /// 2, 4, 8, … up to E, keeping those that divide E.
    public static func powerOfTwoDegrees(experts: Int) -> [Int] {
        var degrees: [Int] = []
        var degree = 2
        while degree <= experts {
            if experts % degree == 0 { degrees.append(degree) }
            degree *= 2
        }
        return degrees
    }

    /// cap = ⌈C·kT/E⌉, the per-expert buffer of a capacity-bounded dispatcher for a batch of T tokens.
    public static func expertCapacity(factor: Double, tokens: Int, topK: Int, experts: Int) -> Int {
        experts > 0 ? Int((factor * Double(topK) * Double(tokens) / Double(experts)).rounded(.up)) : 0
    }

    /// Σ_i max(0, c_i − cap): assignments past capacity. Which ones go depends on the drop policy
    /// (position or probability); how many does not.
    public static func droppedAssignments(loads: some Collection<Int>, capacity: Int) -> Int {
        loads.reduce(0) { $0 + max(0, $1 - capacity) }
    }

    // MARK: - Router behaviour

    /// LB = E·Σ_i f_i·P_i with f_i = c_i/(kT) and P_i = (1/T)·Σ_t q_{t,i}, q the scores normalised to sum
    /// to 1 per token (DeepSeek-V3 Eq. 17–20 without α, equal to Switch's N·Σ f·P): 1 under uniform
    /// routing. Nil without scored tokens.
    public static func auxBalanceLoss(
        loads: some Collection<Int>, normalizedScoreSums: some Collection<Double>,
        tokens: Int, scoredTokens: Int, topK: Int
    ) -> Double? {
        guard tokens > 0, scoredTokens > 0, topK > 0, loads.count == normalizedScoreSums.count else { return nil }
        var sum = 0.0
        for (load, scoreSum) in zip(loads, normalizedScoreSums) {
            sum += Double(load) / Double(topK * tokens) * (scoreSum / Double(scoredTokens))
        }
        return Double(loads.count) * sum
    }

    /// lift = P(i,j) / (P(i)·P(j)) with P over tokens: N_ij·T / (c_i·c_j).
    public static func coactivationLift(pairCount: Int, loadA: Int, loadB: Int, tokens: Int) -> Double {
        loadA > 0 && loadB > 0 ? Double(pairCount) * Double(tokens) / (Double(loadA) * Double(loadB)) : 0
    }

    /// The lift of every pair under uniform random top-k routing: (k − 1)·E / (k·(E − 1)).
    public static func coactivationLiftUniformBaseline(experts: Int, topK: Int) -> Double {
        experts > 1 ? Double(topK - 1) * Double(experts) / (Double(topK) * Double(experts - 1)) : 0
    }

    // MARK: - Noise floor

    /// Token counts up to this use the seeded simulation; above it the analytic approximation is within ~3%.
    public static let simulatedFloorTokenLimit = 64
    public static let simulatedFloorTrials = 4096
    public static let simulatedFloorSeed: UInt64 = 0x6D6F_652D_6576_616C

    /// Expected MaxVio of uniform random top-k routing (each token picks k distinct experts uniformly)
    /// over T tokens: what balance would show from sampling alone.
    ///
    /// Each c_i is Binomial(T, k/E), and any two are correlated by −1/(E − 1). E[max] is computed exactly
    /// for independent binomials, E[max] = Σ_m (1 − F(m)^E); the deviation from the mean is then scaled by
    /// sqrt(E/(E − 1)), exact for exchangeable normals with that correlation. For T ≤ 64, where the
    /// normal argument fails (T = 1 must give E/k − 1), a seeded simulation is used instead.
    public static func uniformMaxViolationFloor(experts: Int, topK: Int, tokens: Int) -> Double {
        guard experts > topK, topK > 0, tokens > 0 else { return 0 }
        if tokens <= simulatedFloorTokenLimit {
            return simulatedUniformMaxViolation(
                experts: experts, topK: topK, tokens: tokens,
                trials: simulatedFloorTrials, seed: simulatedFloorSeed)
        }
        let e = Double(experts), t = Double(tokens), p = Double(topK) / e
        let mean = t * p, sigma = (t * p * (1 - p)).squareRoot()
        let low = max(0, Int((mean - 40 * sigma).rounded(.down)) - 40)
        let high = min(tokens, Int((mean + 40 * sigma).rounded(.up)) + 40)
        func logGamma(_ x: Double) -> Double { lgamma(x) }
        let logChoose = logGamma(t + 1), logP = log(p), logQ = log1p(-p)
        func pmf(_ m: Int) -> Double {
            exp(logChoose - logGamma(Double(m) + 1) - logGamma(t - Double(m) + 1) + Double(m) * logP + (t - Double(m)) * logQ)
        }
        // Σ_{m<low} contributes 1 per term; above `high` P(max > m) is below 1e-300.
        var expectedMax = Double(low)
        var survival = 0.0
        var upper = Array(repeating: 0.0, count: high - low + 1)
        for m in stride(from: high, through: low, by: -1) {
            upper[m - low] = survival
            survival += pmf(m)
        }
        for m in low..<high {
            let tail = min(upper[m - low], 1)
            expectedMax += -expm1(e * log1p(-tail))
        }
        let correlated = mean + (e / (e - 1)).squareRoot() * (expectedMax - mean)
        return correlated / mean - 1
    }

    /// Mean MaxVio over `trials` seeded draws of uniform random top-k routing (SplitMix64, partial
    /// Fisher–Yates per token). Deterministic for a given seed.
    public static func simulatedUniformMaxViolation(experts: Int, topK: Int, tokens: Int, trials: Int, seed: UInt64) -> Double {
        guard experts > topK, topK > 0, tokens > 0, trials > 0 else { return 0 }
        var state = seed
        func next(below bound: Int) -> Int {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            return Int(z.multipliedFullWidth(by: UInt64(bound)).high)
        }
        var permutation = Array(0..<experts)
        var loads = Array(repeating: 0, count: experts)
        var total = 0.0
        for _ in 0..<trials {
            for i in loads.indices { loads[i] = 0 }
            for _ in 0..<tokens {
                for slot in 0..<topK {
                    permutation.swapAt(slot, slot + next(below: experts - slot))
                    loads[permutation[slot]] += 1
                }
            }
            total += maxViolation(maxLoad: loads.max() ?? 0, totalLoad: topK * tokens, experts: experts)
        }
        return total / Double(trials)
    }

    // MARK: - Distributions over layers

    /// Mean, median, p90, min, max over layers and the worst layer (first on ties).
    public static func summary(_ values: [(layer: Int, value: Double)], lowerIsWorse: Bool = false) -> LayerSummary? {
        guard !values.isEmpty else { return nil }
        let numbers = values.map(\.value)
        var worst = values[0]
        for entry in values.dropFirst() where lowerIsWorse ? entry.value < worst.value : entry.value > worst.value {
            worst = entry
        }
        return LayerSummary(
            mean: numbers.reduce(0, +) / Double(numbers.count), median: percentile(numbers, 0.5),
            p90: percentile(numbers, 0.9), min: numbers.min() ?? 0, max: numbers.max() ?? 0,
            worstLayer: RoutingStatistics.key(forLayer: worst.layer))
    }

    // MARK: - Assembly

    /// The `routing_stats` section from the collector's counts.
    public static func statistics(_ counts: [LayerRoutingCounts], options: RoutingMetricsOptions = .init()) -> RoutingStatistics {
        var floors = NoiseFloorMemo()
        let layers = counts.sorted { $0.layer < $1.layer }.map { layerMetrics($0, options: options, floors: &floors) }
        return RoutingStatistics(layers: layers, aggregate: aggregate(layers))
    }

    public static func layerMetrics(_ counts: LayerRoutingCounts, options: RoutingMetricsOptions = .init()) -> LayerRoutingMetrics {
        var floors = NoiseFloorMemo()
        return layerMetrics(counts, options: options, floors: &floors)
    }

    static func layerMetrics(
        _ counts: LayerRoutingCounts, options: RoutingMetricsOptions,
        floors: inout NoiseFloorMemo
    ) -> LayerRoutingMetrics {
        let loads = counts.tokensPerExpert, e = counts.numExperts, k = counts.topK, t = counts.tokens
        let cv = coefficientOfVariation(loads)
        let giniValue = gini(loads)
        let entropy = loadEntropy(loads)
        let top1 = counts.firstChoiceTokensPerExpert

        let batchViolations = counts.batches.map {
            maxViolation(maxLoad: $0.maxExpertLoad, totalLoad: k * $0.tokens, experts: e)
        }
        let sequenceViolations = counts.sequences.map {
            maxViolation(maxLoad: $0.maxExpertLoad, totalLoad: k * $0.tokens, experts: e)
        }
        let batchFloor = mean(counts.batches.map { floors.value(experts: e, topK: k, tokens: $0.tokens) })
        let sequenceFloor = mean(counts.sequences.map { floors.value(experts: e, topK: k, tokens: $0.tokens) })

        let batchAssignments = counts.batches.reduce(0) { $0 + k * $1.tokens }
        let drops = RoutingStatisticsCollector.capacityFactors.enumerated().map { index, factor in
            let dropped = counts.batches.reduce(0) {
                $0 + ($1.droppedAssignments.indices.contains(index) ? $1.droppedAssignments[index] : 0)
            }
            let globalDropped = droppedAssignments(
                loads: loads, capacity: expertCapacity(factor: factor, tokens: t, topK: k, experts: e))
            return CapacityDrop(
                capacityFactor: factor,
                dropRate: batchAssignments > 0 ? Double(dropped) / Double(batchAssignments) : 0,
                droppedAssignments: dropped,
                dropRateGlobal: t > 0 ? Double(globalDropped) / Double(k * t) : 0)
        }

        let configured = options.expertParallelDegree.flatMap { expertParallelLoad(loads, degree: $0) }
        let scored = counts.scoredTokens > 0 ? Double(counts.scoredTokens) : nil

        var metrics = LayerRoutingMetrics(
            totalTokensRouted: loads.reduce(0, +),
            numExperts: e,
            meanTokensPerExpert: meanLoad(loads),
            stdTokensPerExpert: populationStandardDeviation(loads),
            maxTokensPerExpert: loads.max() ?? 0,
            minTokensPerExpert: loads.min() ?? 0,
            coefficientOfVariation: cv,
            expertUtilizationRate: expertUtilizationRate(loads),
            giniCoefficient: giniValue,
            tokensPerExpertDistribution: loads,
            layer: counts.layer,
            topK: k,
            numTokens: t,
            numBatches: counts.batches.count,
            numSequences: counts.sequences.count,
            maxViolation: maxViolation(loads),
            maxViolationNoiseFloor: floors.value(experts: e, topK: k, tokens: t),
            maxViolationBatchMean: mean(batchViolations),
            maxViolationBatchMax: batchViolations.max() ?? 0,
            maxViolationBatchNoiseFloor: batchFloor,
            maxViolationSequenceMean: mean(sequenceViolations),
            maxViolationSequenceMax: sequenceViolations.max() ?? 0,
            maxViolationSequenceNoiseFloor: sequenceFloor,
            minLoadRatio: minLoadRatio(loads),
            coefficientOfVariationNormalized: normalizedCoefficientOfVariation(cv, experts: e, topK: k),
            coefficientOfVariationNoiseFloor: coefficientOfVariationNoiseFloor(experts: e, topK: k, tokens: t),
            coefficientOfVariationNoiseCorrected: noiseCorrectedCoefficientOfVariation(cv, experts: e, topK: k, tokens: t),
            giniCoefficientNormalized: normalizedGini(giniValue, experts: e, topK: k),
            loadEntropy: entropy,
            loadEntropyNormalized: e > 1 ? entropy / log(Double(e)) : 1,
            effectiveExperts: effectiveExperts(entropy: entropy),
            effectiveExpertsFraction: e > 0 ? effectiveExperts(entropy: entropy) / Double(e) : 0,
            deadExperts: deadExperts(loads),
            nearDeadExperts: nearDeadExperts(loads),
            top1TokensPerExpertDistribution: top1,
            top1MaxViolation: maxViolation(top1),
            top1DeadExperts: deadExperts(top1),
            top1NearDeadExperts: nearDeadExperts(top1),
            epDegree: options.expertParallelDegree,
            epOverloadFactor: configured?.overloadFactor,
            epOverloadFactorByDegree: powerOfTwoDegrees(experts: e).compactMap { expertParallelLoad(loads, degree: $0) },
            capacityDropRate: drops,
            meanTokenRoutingEntropy: scored.map { counts.tokenEntropySum / $0 },
            meanTokenRoutingEntropyNormalized: scored.map { e > 1 ? counts.tokenEntropySum / $0 / log(Double(e)) : 0 },
            fragileTokenFraction: scored.map { Double(counts.fragileTokens) / $0 },
            fragileMarginThreshold: Double(RoutingStatisticsCollector.fragileMarginThreshold),
            hasExpertBias: counts.biasedTokens > 0,
            expertBiasRerouteRate: counts.biasedTokens > 0
                ? Double(counts.reroutedSelections) / Double(k * counts.biasedTokens) : 0,
            auxBalanceLoss: auxBalanceLoss(
                loads: loads, normalizedScoreSums: counts.normalizedScoreSums,
                tokens: t, scoredTokens: counts.scoredTokens, topK: k),
            auxBalanceLossBatchMean: optionalMean(counts.batches.map(\.auxBalanceLoss)),
            auxBalanceLossSequenceMean: optionalMean(counts.sequences.map(\.auxBalanceLoss)),
            topCoactivatedPairs: topPairs(counts, options: options),
            coactivationLiftUniformBaseline: coactivationLiftUniformBaseline(experts: e, topK: k))
        metrics.jainFairnessIndex = jainFairnessIndex(loads)
        return metrics
    }

    /// The seed's plain means over layers plus distributions over layers of the headline metrics.
    public static func aggregate(_ layers: [LayerRoutingMetrics]) -> RoutingAggregate {
        guard !layers.isEmpty else { return RoutingAggregate(numMoeLayers: 0) }
        func over(_ value: (LayerRoutingMetrics) -> Double?) -> [(layer: Int, value: Double)] {
            layers.compactMap { layer in value(layer).map { (layer.layer, $0) } }
        }
        let degree = layers.first?.epDegree
        let configured = layers.compactMap { layer in
            layer.epOverloadFactor == nil
                ? nil : layer.epDegree.flatMap { expertParallelLoad(layer.tokensPerExpertDistribution, degree: $0) }
        }
        let meanRankSum = configured.reduce(0.0) { $0 + $1.meanRankLoad }
        return RoutingAggregate(
            numMoeLayers: layers.count,
            avgGiniCoefficient: mean(layers.map(\.giniCoefficient)),
            avgCoefficientOfVariation: mean(layers.map(\.coefficientOfVariation)),
            avgExpertUtilizationRate: mean(layers.map(\.expertUtilizationRate)),
            maxViolation: summary(over(\.maxViolation)),
            coefficientOfVariation: summary(over(\.coefficientOfVariation)),
            giniCoefficient: summary(over(\.giniCoefficient)),
            epOverloadFactor: summary(over(\.epOverloadFactor)),
            maxViolationBatchMean: summary(over(\.maxViolationBatchMean)),
            coefficientOfVariationNormalized: summary(over(\.coefficientOfVariationNormalized)),
            effectiveExpertsFraction: summary(over(\.effectiveExpertsFraction), lowerIsWorse: true),
            expertBiasRerouteRate: summary(over(\.expertBiasRerouteRate)),
            stepOverloadFactor: configured.isEmpty
                ? nil
                : meanRankSum > 0 ? Double(configured.reduce(0) { $0 + $1.maxRankLoad }) / meanRankSum : 1,
            epDegree: configured.isEmpty ? nil : degree)
    }

    /// Pairs seen together at least `minimumPairCount` times, by lift, then count, then expert ids.
    static func topPairs(_ counts: LayerRoutingCounts, options: RoutingMetricsOptions) -> [CoactivationPair] {
        let e = counts.numExperts, loads = counts.tokensPerExpert
        guard options.topCoactivatedPairs > 0, counts.coActivation.count == e * (e - 1) / 2, loads.count == e else { return [] }
        var pairs: [CoactivationPair] = []
        for a in 0..<e {
            for b in (a + 1)..<e {
                let together = counts.coActivation[LayerRoutingCounts.pairIndex(a, b, experts: e)]
                guard together > 0, together >= options.minimumPairCount else { continue }
                pairs.append(
                    CoactivationPair(
                        expertA: a, expertB: b, count: together,
                        lift: coactivationLift(pairCount: together, loadA: loads[a], loadB: loads[b], tokens: counts.tokens)))
            }
        }
        pairs.sort {
            ($0.lift, $0.count, -$0.expertA, -$0.expertB) > ($1.lift, $1.count, -$1.expertA, -$1.expertB)
        }
        return Array(pairs.prefix(options.topCoactivatedPairs))
    }

    static func mean(_ values: [Double]) -> Double {
        values.isEmpty ? 0 : values.reduce(0, +) / Double(values.count)
    }

    static func optionalMean(_ values: [Double?]) -> Double? {
        let present = values.compactMap { $0 }
        return present.isEmpty ? nil : mean(present)
    }
}

/// Noise floors already computed in one `statistics` call (the same E, k, T recur across layers and scopes).
struct NoiseFloorMemo {
    private var values: [[Int]: Double] = [:]

    mutating func value(experts: Int, topK: Int, tokens: Int) -> Double {
        let key = [experts, topK, tokens]
        if let known = values[key] { return known }
        let computed = RoutingMetrics.uniformMaxViolationFloor(experts: experts, topK: topK, tokens: tokens)
        values[key] = computed
        return computed
    }
}
