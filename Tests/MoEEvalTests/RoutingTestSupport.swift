import Foundation

@testable import MoEEval
// RoutingDecision's memberwise initializer is internal to MoEModels; only the model builds real ones.
@testable import MoEModels

/// One synthetic router output for one layer: the selections, and optionally scores and an expert bias.
struct SyntheticDecision {
    var layer = 0
    var experts: Int
    var topK: Int
    /// `[tokens, topK]`, best biased score first.
    var selections: [Int32]
    /// `[tokens, experts]`; empty means "no scores" (score-based metrics skip the decision).
    var scores: [Float] = []
    var bias: [Float]? = nil

    var tokens: Int { selections.count / topK }

    /// Selections from raw loads: token t of `perToken` lists goes to those experts.
    init(layer: Int = 0, experts: Int, topK: Int, perToken: [[Int]]) {
        self.layer = layer
        self.experts = experts
        self.topK = topK
        selections = perToken.flatMap { $0.map(Int32.init) }
    }

    /// Selections computed from scores (+ bias) by sorting, independently of the collector's top-k code:
    /// the k largest biased scores, ties to the lower index.
    init(layer: Int = 0, experts: Int, topK: Int, scores: [Float], bias: [Float]? = nil) {
        self.layer = layer
        self.experts = experts
        self.topK = topK
        self.scores = scores
        self.bias = bias
        let tokens = scores.count / experts
        var picks: [Int32] = []
        for t in 0..<tokens {
            let z = (0..<experts).map { scores[t * experts + $0] + (bias?[$0] ?? 0) }
            let order = (0..<experts).sorted { z[$0] != z[$1] ? z[$0] > z[$1] : $0 < $1 }
            picks += order.prefix(topK).map(Int32.init)
        }
        selections = picks
    }

    func feed(_ collector: RoutingStatisticsCollector) {
        let weights = [Float](repeating: 1 / Float(topK), count: selections.count)
        let logits = [Float](repeating: 0, count: scores.count)
        selections.withUnsafeBufferPointer { selected in
            weights.withUnsafeBufferPointer { weight in
                scores.withUnsafeBufferPointer { score in
                    logits.withUnsafeBufferPointer { logit in
                        func send(_ bias: UnsafeBufferPointer<Float>?) {
                            collector.observe(
                                RoutingDecision(
                                    layer: layer, tokenCount: tokens, topK: topK, numExperts: experts,
                                    experts: selected, weights: weight, scores: score, gateLogits: logit, expertBias: bias))
                        }
                        if let bias { bias.withUnsafeBufferPointer { send($0) } } else { send(nil) }
                    }
                }
            }
        }
    }
}

/// Counts and metrics of a single layer routed by `decisions`, each decision one batch.
func metrics(
    of decisions: [SyntheticDecision], sequenceLength: Int? = nil,
    options: RoutingMetricsOptions = .init(minimumPairCount: 1)
) -> LayerRoutingMetrics? {
    let collector = RoutingStatisticsCollector(sequenceLength: sequenceLength)
    for decision in decisions { decision.feed(collector) }
    return RoutingMetrics.statistics(collector.finish(), options: options).layers.first
}

func close(_ a: Double, _ b: Double, tolerance: Double = 1e-9) -> Bool { abs(a - b) <= tolerance }

func close(_ a: Double?, _ b: Double, tolerance: Double = 1e-9) -> Bool { a.map { close($0, b, tolerance: tolerance) } ?? false }
