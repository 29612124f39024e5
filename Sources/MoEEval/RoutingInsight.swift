import Foundation
import MoEModels

/// Passes every routing decision to several observers, in order (the model takes one observer).
public final class RoutingObserverGroup: RoutingObserver {
    public let observers: [RoutingObserver]

    public init(_ observers: [RoutingObserver]) { self.observers = observers }

    public func observe(_ decision: RoutingDecision) {
        for observer in observers { observer.observe(decision) }
    }
}

/// What the insight metrics need about one MoE layer beyond `LayerRoutingCounts`.
public struct LayerInsightCounts: Equatable, Sendable {
    public var layer: Int
    public var numExperts: Int
    public var topK: Int
    /// Σ_t w_{t,i}: the combine weights each expert received (after route_norm and route_scale).
    public var gateMassPerExpert: [Double]
    /// Tokens whose gate logits were seen, and Σ_t (logsumexp_i x_{t,i})², Σ x, Σ x², max |x| over them.
    public var logitTokens: Int
    public var logSumExpSquaredSum: Double
    public var logitSum: Double
    public var logitSquaredSum: Double
    public var logitAbsMax: Double
    /// Occurrences of each token id, and `tokenId · E + expert` → times that id selected that expert (top-k).
    public var tokenOccurrences: [Int32: Int]
    public var tokenExpertCounts: [Int: Int]
    /// The next MoE layer's index and the joint counts of (top-1 here, top-1 there), row-major `[E][E']`.
    public var nextLayer: Int?
    public var nextLayerExperts: Int
    public var nextLayerJointTop1: [Int]
}

/// Collects, beside `RoutingStatisticsCollector`, what the insight metrics need: gate mass, gate-logit
/// statistics, per-token-id expert counts, top-1 pairs of consecutive MoE layers, and the routed expert ids
/// of the first `recordedTokenLimit` tokens (for agreement between checkpoints; a forward that crosses the
/// limit contributes its leading tokens).
///
/// Token ids come from `beginForward(tokens:)`, called before each forward with the ids it routes in
/// order, or `beginForward(sequences:)` when each layer's routing arrives as one decision per sequence
/// (expert-parallel routing hands rank 0 one decision per rank, layer by layer). Decisions whose token count
/// matches no announced sequence still add gate mass and logit statistics; everything keyed by token is
/// skipped for them.
public final class RoutingInsightCollector: RoutingObserver {
    public let recordedTokenLimit: Int
    /// Tokens per layer whose (token id, expert) pairs are counted for token specialisation: the sparse counts
    /// grow with distinct pairs, so long runs are capped (16,384 tokens ≤ 16,384·k entries per layer).
    public let specializationTokenLimit: Int
    public private(set) var warnings: [String] = []

    private var layers: [Int: InsightAccumulator] = [:]
    private var forwardSequences: [[Int32]] = []
    private var announced = false
    /// Per layer, the next announced sequence its decisions belong to.
    private var cursor: [Int: Int] = [:]
    /// Per sequence, the top-1 experts of the last MoE layer seen, for the cross-layer pairs.
    private var previous: [Int: (layer: Int, top1: [Int32])] = [:]
    /// Token ids whose routing is recorded, and the recorded decisions per layer.
    private var recordedTokens: [Int32] = []
    /// Per sequence of the current forward, its leading tokens that are recorded.
    private var recordingPrefixes: [Int] = []
    private var recorded: [Int: (experts: Int, topK: Int, ids: [Int32], weights: [Float])] = [:]

    public init(recordedTokenLimit: Int = 1024, specializationTokenLimit: Int = 16_384) {
        self.recordedTokenLimit = max(0, recordedTokenLimit)
        self.specializationTokenLimit = max(0, specializationTokenLimit)
    }

    /// The token ids the next forward routes, row after row.
    public func beginForward(tokens: [Int32]) { beginForward(sequences: [tokens]) }

    /// The token ids of several sequences, in the order their decisions arrive for every layer.
    public func beginForward(sequences: [[Int32]]) {
        forwardSequences = sequences
        announced = true
        cursor = [:]
        previous = [:]
        recordingPrefixes = sequences.map { sequence in
            let prefix = min(sequence.count, max(0, recordedTokenLimit - recordedTokens.count))
            recordedTokens += sequence.prefix(prefix)
            return prefix
        }
    }

    public func observe(_ decision: RoutingDecision) {
        let e = decision.numExperts, k = decision.topK, t = decision.tokenCount
        guard e > 0, k > 0, k <= e, t >= 0, decision.experts.count >= t * k, decision.weights.count >= t * k else {
            warnings.append("insight layer \(decision.layer): decision with \(t) tokens, top_k \(k), \(e) experts ignored")
            return
        }
        if decision.experts.prefix(t * k).contains(where: { $0 < 0 || Int($0) >= e }) {
            warnings.append("insight layer \(decision.layer): expert id outside 0..<\(e); decision ignored")
            return
        }
        let accumulator: InsightAccumulator
        if let existing = layers[decision.layer] {
            guard existing.experts == e, existing.topK == k else { return }
            accumulator = existing
        } else {
            accumulator = InsightAccumulator(layer: decision.layer, experts: e, topK: k)
            layers[decision.layer] = accumulator
        }
        accumulator.addGateMass(decision.weights, experts: decision.experts, tokens: t)
        if decision.gateLogits.count >= t * e { accumulator.addLogits(decision.gateLogits, tokens: t) }

        let index = cursor[decision.layer] ?? 0
        guard index < forwardSequences.count, forwardSequences[index].count == t else {
            if announced {
                warnOnce("insight layer \(decision.layer): \(t) routed tokens match no announced sequence; token-keyed metrics skip it")
            }
            return
        }
        cursor[decision.layer] = index + 1
        let tokens = forwardSequences[index]
        let counted = min(t, max(0, specializationTokenLimit - accumulator.specializationTokens))
        if counted > 0 { accumulator.addTokenExperts(tokens.prefix(counted), decision.experts) }
        let top1 = (0..<t).map { decision.experts[$0 * k] }
        if let earlierTop1 = previous[index], earlierTop1.layer < decision.layer, let earlier = layers[earlierTop1.layer] {
            earlier.addNextLayer(decision.layer, experts: e, from: earlierTop1.top1, to: top1)
        }
        previous[index] = (decision.layer, top1)
        let prefix = recordingPrefixes[index]
        if prefix > 0 {
            var entry = recorded[decision.layer] ?? (experts: e, topK: k, ids: [Int32](), weights: [Float]())
            entry.ids += decision.experts.prefix(prefix * k)
            entry.weights += decision.weights.prefix(prefix * k)
            recorded[decision.layer] = entry
        }
    }

    /// Per-layer counts, by layer index.
    public func finish() -> [LayerInsightCounts] {
        layers.keys.sorted().compactMap { layers[$0]?.snapshot() }
    }

    /// The routed expert ids of the recorded tokens (nil when none were recorded).
    public func routedExperts() -> RoutedExperts? {
        guard !recordedTokens.isEmpty, !recorded.isEmpty else { return nil }
        var entries: [RoutedExperts.Layer] = []
        for layer in recorded.keys.sorted() {
            let entry = recorded[layer]!
            guard entry.ids.count == recordedTokens.count * entry.topK else { continue }
            entries.append(
                RoutedExperts.Layer(
                    layer: layer, numExperts: entry.experts, topK: entry.topK,
                    experts: entry.ids, weights: entry.weights))
        }
        return entries.isEmpty ? nil : RoutedExperts(tokens: recordedTokens, layers: entries)
    }

    private var reported: Set<String> = []
    private func warnOnce(_ line: String) {
        if reported.insert(line).inserted { warnings.append(line) }
    }
}

/// Running totals of one layer's insight counts.
final class InsightAccumulator {
    let layer: Int, experts: Int, topK: Int
    var gateMass: [Double]
    var logitTokens = 0
    var logSumExpSquaredSum = 0.0, logitSum = 0.0, logitSquaredSum = 0.0, logitAbsMax = 0.0
    var tokenOccurrences: [Int32: Int] = [:]
    var tokenExpertCounts: [Int: Int] = [:]
    var specializationTokens = 0
    var nextLayer: Int?
    var nextLayerExperts = 0
    var nextLayerJoint: [Int] = []

    init(layer: Int, experts: Int, topK: Int) {
        self.layer = layer; self.experts = experts; self.topK = topK
        gateMass = Array(repeating: 0, count: experts)
    }

    func addGateMass(_ weights: UnsafeBufferPointer<Float>, experts ids: UnsafeBufferPointer<Int32>, tokens: Int) {
        for index in 0..<(tokens * topK) { gateMass[Int(ids[index])] += Double(weights[index]) }
    }

    func addLogits(_ logits: UnsafeBufferPointer<Float>, tokens: Int) {
        let e = experts
        for t in 0..<tokens {
            var largest = -Double.infinity
            for j in 0..<e { largest = max(largest, Double(logits[t * e + j])) }
            guard largest.isFinite else { continue }
            var sum = 0.0
            for j in 0..<e {
                let x = Double(logits[t * e + j])
                sum += exp(x - largest)
                logitSum += x
                logitSquaredSum += x * x
                logitAbsMax = max(logitAbsMax, abs(x))
            }
            let lse = largest + log(sum)
            logSumExpSquaredSum += lse * lse
            logitTokens += 1
        }
    }

    func addTokenExperts(_ tokens: ArraySlice<Int32>, _ ids: UnsafeBufferPointer<Int32>) {
        specializationTokens += tokens.count
        for (t, token) in tokens.enumerated() {
            tokenOccurrences[token, default: 0] += 1
            for slot in 0..<topK {
                tokenExpertCounts[Int(token) * experts + Int(ids[t * topK + slot]), default: 0] += 1
            }
        }
    }

    func addNextLayer(_ next: Int, experts nextExperts: Int, from: [Int32], to: [Int32]) {
        if nextLayer == nil || next < nextLayer! {
            nextLayer = next
            nextLayerExperts = nextExperts
            nextLayerJoint = Array(repeating: 0, count: experts * nextExperts)
        }
        guard next == nextLayer, from.count == to.count else { return }
        for (a, b) in zip(from, to) { nextLayerJoint[Int(a) * nextLayerExperts + Int(b)] += 1 }
    }

    func snapshot() -> LayerInsightCounts {
        LayerInsightCounts(
            layer: layer, numExperts: experts, topK: topK, gateMassPerExpert: gateMass,
            logitTokens: logitTokens, logSumExpSquaredSum: logSumExpSquaredSum, logitSum: logitSum,
            logitSquaredSum: logitSquaredSum, logitAbsMax: logitAbsMax,
            tokenOccurrences: tokenOccurrences, tokenExpertCounts: tokenExpertCounts,
            nextLayer: nextLayer, nextLayerExperts: nextLayerExperts, nextLayerJointTop1: nextLayerJoint)
    }
}
