import Foundation
import MoEModels

/// Loads of one closed batch or sequence of one MoE layer: what MaxVio, the aux balance loss and the
/// capacity drop rate need at that scope.
public struct ScopeLoad: Codable, Equatable, Sendable {
    /// Tokens in the scope (T_b or T_s).
    public var tokens: Int
    /// Largest top-k load of any expert in the scope.
    public var maxExpertLoad: Int
    /// `E·Σ f_i P_i` over the scope's tokens; nil when the router scores were not available.
    public var auxBalanceLoss: Double?
    /// Assignments beyond capacity, one per `RoutingStatisticsCollector.capacityFactors`; empty for sequences.
    public var droppedAssignments: [Int]

    public init(tokens: Int, maxExpertLoad: Int, auxBalanceLoss: Double?, droppedAssignments: [Int]) {
        self.tokens = tokens
        self.maxExpertLoad = maxExpertLoad
        self.auxBalanceLoss = auxBalanceLoss
        self.droppedAssignments = droppedAssignments
    }

    enum CodingKeys: String, CodingKey {
        case tokens
        case maxExpertLoad = "max_expert_load"
        case auxBalanceLoss = "aux_balance_loss"
        case droppedAssignments = "dropped_assignments"
    }
}

/// Everything `RoutingMetrics` needs about one MoE layer, accumulated over all observed tokens.
public struct LayerRoutingCounts: Codable, Equatable, Sendable {
    /// TorchTitan's `layers.N` index.
    public var layer: Int
    public var numExperts: Int
    public var topK: Int
    /// Routed tokens T (each contributes `topK` assignments).
    public var tokens: Int
    /// Top-k assignments per expert (c_i; sums to k·T).
    public var tokensPerExpert: [Int]
    /// First-choice assignments per expert: slot 0, the highest biased score.
    public var firstChoiceTokensPerExpert: [Int]
    /// Tokens that selected both i and j, packed upper triangle (i < j) row by row; see `pairIndex`.
    public var coActivation: [Int]
    /// Tokens whose router scores were available and had a positive finite sum.
    public var scoredTokens: Int
    /// Σ_t q_{t,i}, with q the scores normalised to sum to 1 per token.
    public var normalizedScoreSums: [Double]
    /// Σ_t of the per-token routing entropy −Σ_i q_{t,i} ln q_{t,i} (nats).
    public var tokenEntropySum: Double
    /// Scored tokens whose k-th biased score beats the best unselected one by less than the threshold.
    public var fragileTokens: Int
    /// Tokens routed with an expert bias present (the denominator of the reroute rate, times k).
    public var biasedTokens: Int
    /// Selections that differ from the top-k of the unbiased scores.
    public var reroutedSelections: Int
    /// One entry per closed batch, in order.
    public var batches: [ScopeLoad]
    /// One entry per closed sequence, in order.
    public var sequences: [ScopeLoad]

    public init(
        layer: Int, numExperts: Int, topK: Int, tokens: Int, tokensPerExpert: [Int],
        firstChoiceTokensPerExpert: [Int], coActivation: [Int], scoredTokens: Int,
        normalizedScoreSums: [Double], tokenEntropySum: Double, fragileTokens: Int,
        biasedTokens: Int, reroutedSelections: Int, batches: [ScopeLoad], sequences: [ScopeLoad]
    ) {
        self.layer = layer
        self.numExperts = numExperts
        self.topK = topK
        self.tokens = tokens
        self.tokensPerExpert = tokensPerExpert
        self.firstChoiceTokensPerExpert = firstChoiceTokensPerExpert
        self.coActivation = coActivation
        self.scoredTokens = scoredTokens
        self.normalizedScoreSums = normalizedScoreSums
        self.tokenEntropySum = tokenEntropySum
        self.fragileTokens = fragileTokens
        self.biasedTokens = biasedTokens
        self.reroutedSelections = reroutedSelections
        self.batches = batches
        self.sequences = sequences
    }

    /// Position of the pair (i, j), i ≠ j, in `coActivation`.
    public static func pairIndex(_ i: Int, _ j: Int, experts: Int) -> Int {
        let (a, b) = i < j ? (i, j) : (j, i)
        return a * (2 * experts - a - 1) / 2 + (b - a - 1)
    }

    /// Tokens that selected both experts i and j (0 for i == j or ids out of range).
    public func coActivationCount(_ i: Int, _ j: Int) -> Int {
        guard i != j, (0..<numExperts).contains(i), (0..<numExperts).contains(j) else { return 0 }
        let index = Self.pairIndex(i, j, experts: numExperts)
        return coActivation.indices.contains(index) ? coActivation[index] : 0
    }

    enum CodingKeys: String, CodingKey {
        case layer
        case numExperts = "num_experts"
        case topK = "top_k"
        case tokens
        case tokensPerExpert = "tokens_per_expert"
        case firstChoiceTokensPerExpert = "first_choice_tokens_per_expert"
        case coActivation = "co_activation"
        case scoredTokens = "scored_tokens"
        case normalizedScoreSums = "normalized_score_sums"
        case tokenEntropySum = "token_entropy_sum"
        case fragileTokens = "fragile_tokens"
        case biasedTokens = "biased_tokens"
        case reroutedSelections = "rerouted_selections"
        case batches, sequences
    }
}

/// Accumulates routing counts per MoE layer from the model's `RoutingDecision`s.
///
/// Scopes: by default every decision is one batch (a forward of `batch × seqLen` tokens gives one decision
/// per layer), cut into sequences of `sequenceLength` tokens. `beginBatch(sequenceLength:)` switches to
/// explicit batches: every decision of a layer up to the next `beginBatch` or `finish` joins one batch.
/// Per token the collector only adds into buffers allocated once per layer, so a decision allocates O(1).
public final class RoutingStatisticsCollector: RoutingObserver {
    /// Capacity factors C at which drops are counted, in this order in `ScopeLoad.droppedAssignments`.
    public static let capacityFactors: [Double] = [1.0, 1.25, 1.5, 2.0]
    /// A token is fragile when its k-th biased score beats the best unselected one by less than this.
    public static let fragileMarginThreshold: Float = 1e-3

    /// Node-limited routing (TorchTitan `num_expert_groups` / `num_limited_groups`), needed to reproduce
    /// the router's candidate set for the margin and the unbiased selection.
    public let expertGroups: Int?
    public let limitedGroups: Int?
    /// Decisions that were ignored or partly ignored, one line each.
    public private(set) var warnings: [String] = []

    private var sequenceLength: Int?
    private var explicitBatches = false
    private var accumulators: [Int: LayerAccumulator] = [:]
    private var scratch = RoutingScratch(experts: 0, topK: 0, groups: 0)

    /// - Parameter sequenceLength: tokens per sequence within a batch; nil makes each batch one sequence.
    public init(sequenceLength: Int? = nil, expertGroups: Int? = nil, limitedGroups: Int? = nil) {
        self.sequenceLength = sequenceLength.flatMap { $0 > 0 ? $0 : nil }
        self.expertGroups = expertGroups
        self.limitedGroups = limitedGroups
    }

    /// Closes every layer's open batch and starts a new one whose tokens form sequences of `sequenceLength`.
    public func beginBatch(sequenceLength: Int) {
        closeOpenBatches()
        explicitBatches = true
        self.sequenceLength = sequenceLength > 0 ? sequenceLength : nil
    }

    /// Closes the open batches and returns the counts of every observed layer, by layer index.
    /// Later decisions keep accumulating into the same totals.
    public func finish() -> [LayerRoutingCounts] {
        closeOpenBatches()
        return accumulators.keys.sorted().compactMap { accumulators[$0]?.snapshot() }
    }

    public func observe(_ decision: RoutingDecision) {
        let e = decision.numExperts, k = decision.topK, t = decision.tokenCount
        guard e > 0, k > 0, k <= e, t >= 0, decision.experts.count >= t * k else {
            warnings.append(
                "routing layer \(decision.layer): decision with \(t) tokens, top_k \(k), \(e) experts and \(decision.experts.count) selections ignored"
            )
            return
        }
        if let bad = decision.experts.prefix(t * k).first(where: { $0 < 0 || Int($0) >= e }) {
            warnings.append("routing layer \(decision.layer): expert id \(bad) outside 0..<\(e); decision ignored")
            return
        }
        let accumulator: LayerAccumulator
        if let existing = accumulators[decision.layer] {
            guard existing.experts == e, existing.topK == k else {
                warnings.append(
                    "routing layer \(decision.layer): \(e) experts, top_k \(k) after \(existing.experts) experts, top_k \(existing.topK); decision ignored"
                )
                return
            }
            accumulator = existing
        } else {
            accumulator = LayerAccumulator(layer: decision.layer, experts: e, topK: k)
            accumulators[decision.layer] = accumulator
        }
        let groups = groupsFor(experts: e, topK: k, layer: decision.layer)
        if scratch.experts < e || scratch.topK < k || scratch.groups < groups.count {
            scratch = RoutingScratch(experts: e, topK: k, groups: groups.count)
        }
        let scores = decision.scores.count >= t * e ? decision.scores.baseAddress : nil
        if scores == nil && t > 0 {
            warnOnce(layer: decision.layer, "decisions without scores for all \(e) experts; score-based metrics skip them")
        }
        let bias = decision.expertBias.flatMap { $0.count >= e ? $0.baseAddress : nil }
        if decision.expertBias != nil && bias == nil {
            warnOnce(layer: decision.layer, "expert bias shorter than \(e) experts; the reroute rate skips such decisions")
        }
        guard let selections = decision.experts.baseAddress else { return }
        accumulator.add(
            tokens: t, selections: selections, scores: scores, bias: bias, groups: groups,
            sequenceLength: sequenceLength, scratch: scratch)
        if !explicitBatches { accumulator.closeBatch() }
    }

    private func closeOpenBatches() {
        for key in accumulators.keys.sorted() { accumulators[key]?.closeBatch() }
    }

    private var reported: Set<String> = []

    private func warnOnce(layer: Int, _ message: String) {
        let line = "routing layer \(layer): \(message)"
        if reported.insert(line).inserted { warnings.append(line) }
    }

    private func groupsFor(experts: Int, topK: Int, layer: Int) -> (count: Int, limited: Int) {
        guard let groups = expertGroups, groups > 1 else { return (0, 0) }
        let limited = limitedGroups ?? groups
        guard experts % groups == 0, experts / groups >= 2, (1...groups).contains(limited),
            limited * (experts / groups) >= topK
        else {
            warnOnce(
                layer: layer,
                "\(groups) expert groups (\(limited) limited) do not fit \(experts) experts with top_k \(topK); node-limited routing ignored"
            )
            return (0, 0)
        }
        return (groups, limited)
    }
}

/// Per-token work buffers shared by all layers (sized for the largest layer seen).
final class RoutingScratch {
    let experts: Int, topK: Int, groups: Int
    let selected: UnsafeMutablePointer<Bool>
    let allowed: UnsafeMutablePointer<Bool>
    let biased: UnsafeMutablePointer<Float>
    let unbiasedPick: UnsafeMutablePointer<Int32>
    let groupScores: UnsafeMutablePointer<Float>
    let groupPick: UnsafeMutablePointer<Int32>

    init(experts: Int, topK: Int, groups: Int) {
        self.experts = experts; self.topK = topK; self.groups = groups
        selected = .allocate(capacity: max(experts, 1)); selected.initialize(repeating: false, count: max(experts, 1))
        allowed = .allocate(capacity: max(experts, 1)); allowed.initialize(repeating: true, count: max(experts, 1))
        biased = .allocate(capacity: max(experts, 1))
        unbiasedPick = .allocate(capacity: max(topK, 1))
        groupScores = .allocate(capacity: max(groups, 1))
        groupPick = .allocate(capacity: max(groups, 1))
    }

    deinit {
        selected.deallocate(); allowed.deallocate(); biased.deallocate()
        unbiasedPick.deallocate(); groupScores.deallocate(); groupPick.deallocate()
    }
}

/// Loads of the open batch or sequence of one layer.
final class ScopeAccumulator {
    let experts: Int, topK: Int
    let counts: UnsafeMutablePointer<Int>
    let scoreSums: UnsafeMutablePointer<Double>
    var tokens = 0
    var scoredTokens = 0

    init(experts: Int, topK: Int) {
        self.experts = experts; self.topK = topK
        counts = .allocate(capacity: experts); counts.initialize(repeating: 0, count: experts)
        scoreSums = .allocate(capacity: experts); scoreSums.initialize(repeating: 0, count: experts)
    }

    deinit { counts.deallocate(); scoreSums.deallocate() }

    /// The scope's loads (drops only when `capacityFactors` is non-empty); then starts empty again.
    func close(capacityFactors: [Double]) -> ScopeLoad {
        let loads = UnsafeBufferPointer(start: counts, count: experts)
        let sums = UnsafeBufferPointer(start: scoreSums, count: experts)
        let dropped = capacityFactors.map { factor in
            RoutingMetrics.droppedAssignments(
                loads: loads,
                capacity: RoutingMetrics.expertCapacity(factor: factor, tokens: tokens, topK: topK, experts: experts))
        }
        let load = ScopeLoad(
            tokens: tokens, maxExpertLoad: loads.max() ?? 0,
            auxBalanceLoss: RoutingMetrics.auxBalanceLoss(
                loads: loads, normalizedScoreSums: sums, tokens: tokens,
                scoredTokens: scoredTokens, topK: topK),
            droppedAssignments: dropped)
        counts.update(repeating: 0, count: experts)
        scoreSums.update(repeating: 0, count: experts)
        tokens = 0
        scoredTokens = 0
        return load
    }
}

/// Running totals of one MoE layer.
final class LayerAccumulator {
    let layer: Int, experts: Int, topK: Int
    let topKCounts: UnsafeMutablePointer<Int>
    let firstChoiceCounts: UnsafeMutablePointer<Int>
    let pairCounts: UnsafeMutablePointer<Int>
    let pairCount: Int
    let scoreSums: UnsafeMutablePointer<Double>
    let batch: ScopeAccumulator
    let sequence: ScopeAccumulator
    var tokens = 0, scoredTokens = 0, fragileTokens = 0, biasedTokens = 0, reroutedSelections = 0
    var tokenEntropySum = 0.0
    var batches: [ScopeLoad] = []
    var sequences: [ScopeLoad] = []

    init(layer: Int, experts: Int, topK: Int) {
        self.layer = layer; self.experts = experts; self.topK = topK
        pairCount = experts * (experts - 1) / 2
        topKCounts = .allocate(capacity: experts); topKCounts.initialize(repeating: 0, count: experts)
        firstChoiceCounts = .allocate(capacity: experts); firstChoiceCounts.initialize(repeating: 0, count: experts)
        pairCounts = .allocate(capacity: max(pairCount, 1)); pairCounts.initialize(repeating: 0, count: max(pairCount, 1))
        scoreSums = .allocate(capacity: experts); scoreSums.initialize(repeating: 0, count: experts)
        batch = ScopeAccumulator(experts: experts, topK: topK)
        sequence = ScopeAccumulator(experts: experts, topK: topK)
    }

    deinit {
        topKCounts.deallocate(); firstChoiceCounts.deallocate(); pairCounts.deallocate(); scoreSums.deallocate()
    }

    func closeSequence() {
        guard sequence.tokens > 0 else { return }
        sequences.append(sequence.close(capacityFactors: []))
    }

    func closeBatch() {
        closeSequence()
        guard batch.tokens > 0 else { return }
        batches.append(batch.close(capacityFactors: RoutingStatisticsCollector.capacityFactors))
    }

    func snapshot() -> LayerRoutingCounts {
        LayerRoutingCounts(
            layer: layer, numExperts: experts, topK: topK, tokens: tokens,
            tokensPerExpert: Array(UnsafeBufferPointer(start: topKCounts, count: experts)),
            firstChoiceTokensPerExpert: Array(UnsafeBufferPointer(start: firstChoiceCounts, count: experts)),
            coActivation: Array(UnsafeBufferPointer(start: pairCounts, count: pairCount)),
            scoredTokens: scoredTokens,
            normalizedScoreSums: Array(UnsafeBufferPointer(start: scoreSums, count: experts)),
            tokenEntropySum: tokenEntropySum, fragileTokens: fragileTokens, biasedTokens: biasedTokens,
            reroutedSelections: reroutedSelections, batches: batches, sequences: sequences)
    }

    func add(
        tokens count: Int, selections: UnsafePointer<Int32>, scores: UnsafePointer<Float>?,
        bias: UnsafePointer<Float>?, groups: (count: Int, limited: Int), sequenceLength: Int?,
        scratch: RoutingScratch
    ) {
        let e = experts, k = topK
        for t in 0..<count {
            let picks = selections + t * k
            firstChoiceCounts[Int(picks[0])] += 1
            for slot in 0..<k {
                let i = Int(picks[slot])
                topKCounts[i] += 1
                batch.counts[i] += 1
                sequence.counts[i] += 1
                for other in (slot + 1)..<k where picks[other] != picks[slot] {
                    pairCounts[LayerRoutingCounts.pairIndex(i, Int(picks[other]), experts: e)] += 1
                }
            }
            if let scores {
                addScores(scores + t * e, picks: picks, bias: bias, groups: groups, scratch: scratch)
            }
            tokens += 1
            batch.tokens += 1
            sequence.tokens += 1
            if let sequenceLength, sequence.tokens >= sequenceLength { closeSequence() }
        }
    }

    /// Entropy, normalised-score sums, selection margin and bias reroutes of one token.
    private func addScores(
        _ s: UnsafePointer<Float>, picks: UnsafePointer<Int32>, bias: UnsafePointer<Float>?,
        groups: (count: Int, limited: Int), scratch: RoutingScratch
    ) {
        let e = experts, k = topK
        var sum = 0.0
        for j in 0..<e { sum += Double(s[j]) }
        guard sum > 0, sum.isFinite else { return }
        let inverse = 1 / sum
        var entropy = 0.0
        for j in 0..<e {
            let q = Double(s[j]) * inverse
            if q > 0 { entropy -= q * log(q) }
            scoreSums[j] += q
            batch.scoreSums[j] += q
            sequence.scoreSums[j] += q
        }
        tokenEntropySum += entropy
        scoredTokens += 1
        batch.scoredTokens += 1
        sequence.scoredTokens += 1

        // Biased scores exactly as the router forms them (Float add), so ties and margins match its choice.
        let z = scratch.biased
        for j in 0..<e { z[j] = s[j] + (bias?[j] ?? 0) }
        for slot in 0..<k { scratch.selected[Int(picks[slot])] = true }
        defer { for slot in 0..<k { scratch.selected[Int(picks[slot])] = false } }

        if groups.count > 0 {
            RouterSelection.markAllowedGroups(
                z, experts: e, groups: groups.count, limited: groups.limited,
                groupScores: scratch.groupScores, groupPick: scratch.groupPick,
                allowed: scratch.allowed)
        }
        var kthBiased = Float.infinity
        for slot in 0..<k { kthBiased = min(kthBiased, z[Int(picks[slot])]) }
        // Experts scoring above the k-th pick yet unselected were excluded by node-limited routing, not rivals.
        var bestRival = -Float.infinity
        for j in 0..<e where !scratch.selected[j] && (groups.count == 0 || scratch.allowed[j]) && z[j] <= kthBiased {
            bestRival = max(bestRival, z[j])
        }
        if kthBiased - bestRival < RoutingStatisticsCollector.fragileMarginThreshold { fragileTokens += 1 }

        if bias != nil {
            if groups.count > 0 {
                RouterSelection.markAllowedGroups(
                    s, experts: e, groups: groups.count, limited: groups.limited,
                    groupScores: scratch.groupScores, groupPick: scratch.groupPick,
                    allowed: scratch.allowed)
            }
            RouterSelection.topK(
                s, count: e, k: k, allowed: groups.count > 0 ? UnsafePointer(scratch.allowed) : nil,
                into: scratch.unbiasedPick)
            var kept = 0
            for slot in 0..<k where scratch.selected[Int(scratch.unbiasedPick[slot])] { kept += 1 }
            reroutedSelections += k - kept
            biasedTokens += 1
        }
    }
}

/// The router's selection rules, reproduced for the unbiased counterfactual and the rival set.
enum RouterSelection {
    /// Indices of the k largest allowed values, best first; on ties the lower index wins, as in the model.
    static func topK(
        _ values: UnsafePointer<Float>, count n: Int, k: Int, allowed: UnsafePointer<Bool>?,
        into indices: UnsafeMutablePointer<Int32>
    ) {
        var filled = 0
        for i in 0..<n {
            if let allowed, !allowed[i] { continue }
            let v = values[i]
            if filled == k && !(v > values[Int(indices[k - 1])]) { continue }
            var position = filled == k ? k - 1 : filled
            if filled < k { filled += 1 }
            while position > 0 && v > values[Int(indices[position - 1])] {
                indices[position] = indices[position - 1]
                position -= 1
            }
            indices[position] = Int32(i)
        }
        // Fewer allowed experts than k cannot happen for a valid group setting; keep the buffer defined.
        let fallback = filled > 0 ? indices[filled - 1] : 0
        for slot in filled..<k { indices[slot] = fallback }
    }

    /// Marks the experts of the `limited` groups with the largest top-2 sums (TorchTitan node-limited routing).
    static func markAllowedGroups(
        _ values: UnsafePointer<Float>, experts: Int, groups: Int, limited: Int,
        groupScores: UnsafeMutablePointer<Float>, groupPick: UnsafeMutablePointer<Int32>,
        allowed: UnsafeMutablePointer<Bool>
    ) {
        let perGroup = experts / groups
        for g in 0..<groups {
            var first = -Float.infinity, second = -Float.infinity
            for j in (g * perGroup)..<((g + 1) * perGroup) {
                let v = values[j]
                if v > first { second = first; first = v } else if v > second { second = v }
            }
            groupScores[g] = first + second
        }
        topK(groupScores, count: groups, k: limited, allowed: nil, into: groupPick)
        allowed.update(repeating: false, count: experts)
        for slot in 0..<limited {
            let g = Int(groupPick[slot])
            (allowed + g * perGroup).update(repeating: true, count: perGroup)
        }
    }
}
