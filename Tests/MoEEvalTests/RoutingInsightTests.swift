import Foundation
import Testing

@testable import MoEEval
// RoutingDecision's memberwise initializer is internal to MoEModels.
@testable import MoEModels

/// Every insight metric against a value computed by hand on a crafted routing table (docs/METRICS.md,
/// "Router insight"): E = 4 experts, top-2, three tokens with ids 5, 5, 7.
@Suite struct RoutingInsightTests {
    static let picks: [Int32] = [0, 1, 0, 2, 3, 1]
    static let weights: [Float] = [0.75, 0.25, 0.5, 0.5, 0.6, 0.4]
    static let logits: [Float] = [0, 0, 0, 0, 1, -1, 0, 0, 2, 0, 0, -2]

    static func decide(
        _ observer: RoutingObserver, layer: Int, picks: [Int32], weights: [Float], logits: [Float],
        experts: Int = 4, topK: Int = 2
    ) {
        let scores = [Float](repeating: 1 / Float(experts), count: logits.count)
        picks.withUnsafeBufferPointer { p in
            weights.withUnsafeBufferPointer { w in
                scores.withUnsafeBufferPointer { s in
                    logits.withUnsafeBufferPointer { l in
                        observer.observe(
                            RoutingDecision(
                                layer: layer, tokenCount: picks.count / topK, topK: topK, numExperts: experts,
                                experts: p, weights: w, scores: s, gateLogits: l, expertBias: nil))
                    }
                }
            }
        }
    }

    @Test func jainFairnessIndexByHand() {
        // (3 + 1)² / (4 · (9 + 1)) = 0.4; (2+2+1+1)² / (4 · 10) = 0.9; one expert with everything: 1/E.
        #expect(abs(RoutingMetrics.jainFairnessIndex([3, 1, 0, 0]) - 0.4) < 1e-12)
        #expect(abs(RoutingMetrics.jainFairnessIndex([2, 2, 1, 1]) - 0.9) < 1e-12)
        #expect(abs(RoutingMetrics.jainFairnessIndex([0, 0, 0, 8]) - 0.25) < 1e-12)
        #expect(RoutingMetrics.jainFairnessIndex([5, 5, 5, 5]) == 1)
    }

    @Test func collectorCountsMatchTheTable() throws {
        let insight = RoutingInsightCollector()
        insight.beginForward(tokens: [5, 5, 7])
        Self.decide(insight, layer: 1, picks: Self.picks, weights: Self.weights, logits: Self.logits)
        let counts = try #require(insight.finish().first)
        // Gate mass: e0 0.75 + 0.5, e1 0.25 + 0.4, e2 0.5, e3 0.6.
        let expectedMass = [1.25, 0.65, 0.5, 0.6]
        for (got, want) in zip(counts.gateMassPerExpert, expectedMass) { #expect(abs(got - want) < 1e-6) }
        #expect(counts.tokenOccurrences == [5: 2, 7: 1])
        // Token 5 chose e0 twice, e1 once, e2 once; token 7 chose e3 and e1.
        #expect(counts.tokenExpertCounts == [5 * 4 + 0: 2, 5 * 4 + 1: 1, 5 * 4 + 2: 1, 7 * 4 + 3: 1, 7 * 4 + 1: 1])
        #expect(insight.warnings.isEmpty)
    }

    @Test func layerMetricsByHand() throws {
        let collector = RoutingStatisticsCollector()
        let insight = RoutingInsightCollector()
        insight.beginForward(tokens: [5, 5, 7])
        let both = RoutingObserverGroup([collector, insight])
        Self.decide(both, layer: 1, picks: Self.picks, weights: Self.weights, logits: Self.logits)
        // Layer 2 routes the same tokens: top-1 0, 0, 3 here → 1, 1, 2 there (a function of it: NMI 1).
        Self.decide(both, layer: 2, picks: [1, 0, 1, 3, 2, 0], weights: Self.weights, logits: Self.logits)
        var stats = RoutingMetrics.statistics(collector.finish())
        RoutingMetrics.addInsight(insight.finish(), to: &stats)
        let layer = try #require(stats.layers.first)

        #expect(abs((layer.jainFairnessIndex ?? 0) - 0.9) < 1e-12)
        // Gate mass mean 0.75, squared deviations 0.25, 0.01, 0.0625, 0.0225 → σ² = 0.345 / 4.
        #expect(abs((layer.gateMassCoefficientOfVariation ?? 0) - (0.345 / 4).squareRoot() / 0.75) < 1e-6)
        // logsumexp per token: ln 4, ln(e + e⁻¹ + 2), ln(e² + 2 + e⁻²).
        let lse = [log(4.0), log(exp(1.0) + exp(-1.0) + 2), log(exp(2.0) + 2 + exp(-2.0))]
        #expect(abs((layer.routerZLoss ?? 0) - lse.reduce(0) { $0 + $1 * $1 } / 3) < 1e-6)
        // Logits sum to 0; squares 0 + 2 + 8 over 12 values.
        #expect(abs(layer.routerLogitMean ?? 1) < 1e-12)
        #expect(abs((layer.routerLogitStd ?? 0) - (10.0 / 12).squareRoot()) < 1e-9)
        #expect(layer.routerLogitAbsMax == 2)
        // No token id occurs 4 times.
        #expect(layer.tokenSpecialization == nil)
        #expect(layer.nextLayer == 2)
        #expect(abs((layer.nextLayerTop1NormalizedMutualInformation ?? 0) - 1) < 1e-12)
        #expect(stats.layers[1].nextLayer == nil)
    }

    @Test func tokenSpecializationByHand() throws {
        // Token 5 seen 4 times (8 top-2 selections): e0 4, e1 2, e2 2 → favourite 4 of 4 occurrences.
        // Token 7 seen 4 times: every expert twice → 2 of 4. Token 9 seen once: below the minimum.
        let occurrences: [Int32: Int] = [5: 4, 7: 4, 9: 1]
        let counts = [
            5 * 4 + 0: 4, 5 * 4 + 1: 2, 5 * 4 + 2: 2, 7 * 4 + 0: 2, 7 * 4 + 1: 2, 7 * 4 + 2: 2, 7 * 4 + 3: 2,
            9 * 4 + 0: 1, 9 * 4 + 3: 1,
        ]
        let result = try #require(RoutingMetrics.tokenSpecialization(occurrences: occurrences, expertCounts: counts, experts: 4))
        #expect(abs(result.value - 6.0 / 8.0) < 1e-12)
        #expect(result.tokenIds == 2)
    }

    @Test func mutualInformationByHand() {
        #expect(abs(RoutingMetrics.normalizedMutualInformation(joint: [2, 0, 0, 2], rows: 2, columns: 2) - 1) < 1e-12)
        #expect(abs(RoutingMetrics.normalizedMutualInformation(joint: [1, 1, 1, 1], rows: 2, columns: 2)) < 1e-12)
        // [[2, 1], [0, 1]]: p(x) = (3/4, 1/4), p(y) = (1/2, 1/2).
        let information = 0.5 * log(4.0 / 3) + 0.25 * log(2.0 / 3) + 0.25 * log(2.0)
        let hx = -(0.75 * log(0.75) + 0.25 * log(0.25)), hy = log(2.0)
        let expected = information / (hx * hy).squareRoot()
        #expect(abs(RoutingMetrics.normalizedMutualInformation(joint: [2, 1, 0, 1], rows: 2, columns: 2) - expected) < 1e-12)
        #expect(RoutingMetrics.normalizedMutualInformation(joint: [3, 0, 0, 0], rows: 2, columns: 2) == 0)
    }

    @Test func divergencesByHand() {
        #expect(abs(RoutingMetrics.klToUniform([0.5, 0.5, 0, 0]) - log(2.0)) < 1e-12)
        #expect(abs(RoutingMetrics.klToUniform([0.25, 0.25, 0.25, 0.25])) < 1e-12)
        #expect(abs(RoutingMetrics.jensenShannonDivergence([1, 0], [0, 1]) - 1) < 1e-12)
        // m = (0.75, 0.25): ½[0.5 log₂(2/3) + 0.5 log₂ 2] + ½ log₂(4/3).
        let expected = 0.5 * (0.5 * log2(2.0 / 3) + 0.5) + 0.5 * log2(4.0 / 3)
        #expect(abs(RoutingMetrics.jensenShannonDivergence([0.5, 0.5], [1, 0]) - expected) < 1e-12)
    }

    @Test func newKeysAreWrittenAndOldFilesStillDecode() throws {
        let collector = RoutingStatisticsCollector()
        Self.decide(collector, layer: 1, picks: Self.picks, weights: Self.weights, logits: Self.logits)
        let stats = RoutingMetrics.statistics(collector.finish())
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = try encoder.encode(stats)
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains("\"jain_fairness_index\":0.9"))
        var object = try #require(JSONSerialization.jsonObject(with: data) as? [String: Any])
        var layer = try #require(object["layer_1"] as? [String: Any])
        layer["jain_fairness_index"] = nil
        object["layer_1"] = layer
        let old = try JSONDecoder().decode(RoutingStatistics.self, from: JSONSerialization.data(withJSONObject: object))
        #expect(old.layers.first?.jainFairnessIndex == nil)
        #expect(old.layers.first?.giniCoefficient == stats.layers.first?.giniCoefficient)
    }

    /// Expert-parallel routing hands over one decision per sequence, layer by layer: the counts equal those of
    /// one forward per sequence.
    @Test func sequencesAnnouncedTogetherGiveTheSameCounts() throws {
        let sequences: [[Int32]] = [[5, 5, 7], [7, 9, 5]]
        let picks: [[Int32]] = [Self.picks, [1, 2, 3, 0, 0, 1]]
        let nextPicks: [[Int32]] = [[1, 0, 1, 3, 2, 0], [2, 1, 0, 3, 1, 2]]
        let apart = RoutingInsightCollector(recordedTokenLimit: 5)
        for s in 0..<2 {
            apart.beginForward(tokens: sequences[s])
            Self.decide(apart, layer: 1, picks: picks[s], weights: Self.weights, logits: Self.logits)
            Self.decide(apart, layer: 2, picks: nextPicks[s], weights: Self.weights, logits: Self.logits)
        }
        let together = RoutingInsightCollector(recordedTokenLimit: 5)
        together.beginForward(sequences: sequences)
        for (layer, layerPicks) in [(1, picks), (2, nextPicks)] {
            for s in 0..<2 { Self.decide(together, layer: layer, picks: layerPicks[s], weights: Self.weights, logits: Self.logits) }
        }
        #expect(apart.finish() == together.finish())
        #expect(apart.routedExperts() == together.routedExperts())
        #expect(apart.routedExperts()?.tokenCount == 5)
        #expect(together.warnings.isEmpty)
    }
}
