import Foundation
import Testing

@testable import MoEEval

/// Scopes (batch, sequence), router-behaviour metrics and robustness of the collector.
@Suite struct RoutingCollectorTests {
    /// E = 4, k = 1, sequences of 2 tokens.
    /// Batch 1 routes 0, 0 | 1, 2: sequence MaxVio 2/0.5 − 1 = 3 and 1/0.5 − 1 = 1; batch loads 2,1,1,0 → 1.
    /// Batch 2 routes 3, 3 | 3, 3: sequences 3 and 3; batch loads 0,0,0,4 → 4/1 − 1 = 3.
    /// Global loads 2,1,1,4 → 4/2 − 1 = 1.
    static let batchOne: [[Int]] = [[0], [0], [1], [2]]
    static let batchTwo: [[Int]] = [[3], [3], [3], [3]]

    static func checkScopes(_ m: LayerRoutingMetrics) {
        #expect(m.numBatches == 2 && m.numSequences == 4)
        #expect(close(m.maxViolation, 1))
        #expect(close(m.maxViolationBatchMean, 2))
        #expect(close(m.maxViolationBatchMax, 3))
        #expect(close(m.maxViolationSequenceMean, 2.5))
        #expect(close(m.maxViolationSequenceMax, 3))
        // Per batch cap = ⌈4/4⌉ = 1: batch 1 drops 1, batch 2 drops 3 → 4 of 8.
        // Globally cap = ⌈8/4⌉ = 2: expert 3 drops 2 → 2 of 8.
        #expect(m.capacityDropRate[0].dropRate == 0.5)
        #expect(m.capacityDropRate[0].dropRateGlobal == 0.25)
    }

    @Test func eachDecisionIsABatchByDefault() throws {
        let decisions = [Self.batchOne, Self.batchTwo].map { SyntheticDecision(experts: 4, topK: 1, perToken: $0) }
        Self.checkScopes(try #require(metrics(of: decisions, sequenceLength: 2)))
    }

    @Test func explicitBatchesSpanSeveralDecisions() throws {
        let collector = RoutingStatisticsCollector()
        for batch in [Self.batchOne, Self.batchTwo] {
            collector.beginBatch(sequenceLength: 2)
            // Three decisions per batch, the middle one cutting a sequence in half.
            for part in [batch[0..<1], batch[1..<3], batch[3..<4]] {
                SyntheticDecision(experts: 4, topK: 1, perToken: Array(part)).feed(collector)
            }
        }
        let m = try #require(RoutingMetrics.statistics(collector.finish()).layers.first)
        Self.checkScopes(m)
        // These synthetic decisions carry no scores; nothing else may be reported.
        #expect(collector.warnings.count == 1 && collector.warnings[0].contains("without scores"))
    }

    /// E = 4, k = 2, two tokens with softmax-like scores and expert bias b = (0, 0, 0.15, 0).
    /// Token 0: s = (.4, .3, .2, .1), z = s + b = (.4, .3, .35, .1) → picks 0, 2; unbiased top-2 is {0, 1}
    ///   → one rerouted selection; margin .35 − .3 = .05 (not fragile).
    /// Token 1: s = (.25, .25, .25, .25), z = (.25, .25, .4, .25) → picks 2, 0 (tie to the lower index);
    ///   unbiased {0, 1} → one reroute; best rival expert 1 at .25 → margin 0 (fragile).
    @Test func routerBehaviourByHand() throws {
        let routing = SyntheticDecision(
            experts: 4, topK: 2, scores: [0.4, 0.3, 0.2, 0.1, 0.25, 0.25, 0.25, 0.25],
            bias: [0, 0, 0.15, 0])
        #expect(routing.selections == [0, 2, 2, 0])
        let m = try #require(metrics(of: [routing]))
        #expect(m.hasExpertBias)
        #expect(close(m.expertBiasRerouteRate, 0.5))
        #expect(close(m.fragileTokenFraction, 0.5))
        // H_0 = −Σ s ln s = 1.2798542…, H_1 = ln 4; mean 1.3330743.
        #expect(close(m.meanTokenRoutingEntropy, 1.333074293476779, tolerance: 1e-6))
        #expect(close(m.meanTokenRoutingEntropyNormalized, 1.333074293476779 / log(4.0), tolerance: 1e-6))
        // Loads 2, 0, 2, 0 → f = (.5, 0, .5, 0); P = mean q = (.325, .275, .225, .175);
        // LB = 4·(.5·.325 + .5·.225) = 1.1.
        #expect(m.tokensPerExpertDistribution == [2, 0, 2, 0])
        #expect(close(m.auxBalanceLoss, 1.1, tolerance: 1e-6))
        #expect(close(m.auxBalanceLossBatchMean, 1.1, tolerance: 1e-6))
        // First choices: token 0 → 0, token 1 → 2.
        #expect(m.top1TokensPerExpertDistribution == [1, 0, 1, 0])
    }

    /// Equal scores make every P_i = 1/E, so LB = E·Σ f_i/E = 1 whatever the loads.
    @Test func auxLossIsOneUnderUniformRouting() throws {
        let tokens = 8
        let routing = SyntheticDecision(experts: 4, topK: 2, perToken: (0..<tokens).map { [$0 % 4, ($0 + 1) % 4] })
        var scored = routing
        scored.scores = Array(repeating: 0.5, count: tokens * 4)
        let m = try #require(metrics(of: [scored]))
        #expect(close(m.auxBalanceLoss, 1, tolerance: 1e-12))
        #expect(!m.hasExpertBias && m.expertBiasRerouteRate == 0)
        // All scores tie, so every token's k-th pick has a rival at margin 0.
        #expect(close(m.fragileTokenFraction, 1))
    }

    /// E = 8 in 4 groups of 2, 2 groups allowed, k = 2, no bias effect (b = 0):
    /// s = (.9, .1 | .8, .7 | .85, .05 | .7995, 0). Group top-2 sums 1.0, 1.5, .9, .7995 → groups 1 and 0.
    /// The router picks 0 (.9) and 2 (.8); expert 4 (.85) and 6 (.7995) sit in excluded groups.
    /// With the groups known: rival is expert 3 (.7) → margin .1, and the unbiased choice equals the pick.
    /// Without them: rival 6 at .7995 → margin .0005 (fragile), and unbiased top-2 {0, 4} reroutes one pick.
    @Test func nodeLimitedRoutingNeedsTheGroupSetting() throws {
        let scores: [Float] = [0.9, 0.1, 0.8, 0.7, 0.85, 0.05, 0.7995, 0]
        var routing = SyntheticDecision(experts: 8, topK: 2, perToken: [[0, 2]])
        routing.scores = scores
        routing.bias = Array(repeating: 0, count: 8)

        let grouped = RoutingStatisticsCollector(expertGroups: 4, limitedGroups: 2)
        routing.feed(grouped)
        let withGroups = RoutingMetrics.layerMetrics(try #require(grouped.finish().first))
        #expect(withGroups.fragileTokenFraction == 0)
        #expect(withGroups.expertBiasRerouteRate == 0)
        #expect(grouped.warnings.isEmpty)

        let plain = RoutingStatisticsCollector()
        routing.feed(plain)
        let withoutGroups = RoutingMetrics.layerMetrics(try #require(plain.finish().first))
        #expect(withoutGroups.fragileTokenFraction == 1)
        #expect(withoutGroups.expertBiasRerouteRate == 0.5)
    }

    @Test func coActivationCountsEveryPairOfATokensSelection() throws {
        // k = 3: token picks (0, 1, 2) → pairs 01, 02, 12; second token (2, 1, 3) → 12, 23, 13.
        let routing = SyntheticDecision(experts: 4, topK: 3, perToken: [[0, 1, 2], [2, 1, 3]])
        let collector = RoutingStatisticsCollector()
        routing.feed(collector)
        let counts = try #require(collector.finish().first)
        #expect(counts.coActivationCount(1, 2) == 2)
        #expect(counts.coActivationCount(2, 1) == 2)
        #expect(counts.coActivationCount(0, 3) == 0)
        #expect(counts.coActivationCount(1, 3) == 1)
        #expect(counts.coActivation.count == 6)
        // Loads 1, 2, 2, 1 over T = 2: lift(1,2) = 2·2/(2·2) = 1; lift(0,1) = 1·2/(1·2) = 1;
        // lift(1,3) = 1·2/(2·1) = 1; lift(0,3) never seen. All pairs seen tie at lift 1 → count decides.
        let m = RoutingMetrics.layerMetrics(counts, options: .init(topCoactivatedPairs: 2, minimumPairCount: 1))
        #expect(m.topCoactivatedPairs.map { [$0.expertA, $0.expertB] } == [[1, 2], [0, 1]])
    }

    @Test func malformedDecisionsAreReportedNotFatal() throws {
        let collector = RoutingStatisticsCollector()
        SyntheticDecision(experts: 4, topK: 1, perToken: [[0], [7]]).feed(collector)
        SyntheticDecision(experts: 4, topK: 1, perToken: [[0], [1]]).feed(collector)
        SyntheticDecision(experts: 8, topK: 1, perToken: [[0]]).feed(collector)
        let counts = collector.finish()
        #expect(counts.count == 1)
        #expect(counts.first?.tokens == 2)
        #expect(collector.warnings.contains { $0.contains("expert id 7 outside 0..<4") })
        #expect(collector.warnings.contains { $0.contains("8 experts, top_k 1 after 4 experts") })
    }

    @Test func identicalInputsGiveIdenticalJSON() throws {
        func encoded() throws -> Data {
            let collector = RoutingStatisticsCollector(sequenceLength: 2)
            SyntheticDecision(
                layer: 3, experts: 4, topK: 2, scores: (0..<24).map { Float(($0 * 7) % 5) / 5 + 0.1 },
                bias: [0.01, 0, -0.01, 0.02]
            ).feed(collector)
            SyntheticDecision(layer: 1, experts: 4, topK: 2, perToken: [[0, 1], [1, 2], [3, 0]]).feed(collector)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            return try encoder.encode(RoutingMetrics.statistics(collector.finish(), options: .init(expertParallelDegree: 2)))
        }
        let first = try encoded()
        #expect(first == (try encoded()))
        let decoded = try JSONDecoder().decode(RoutingStatistics.self, from: first)
        #expect(decoded.layers.map(\.layer) == [1, 3])
        let object = try #require(try JSONSerialization.jsonObject(with: first) as? [String: Any])
        #expect(Set(object.keys) == ["layer_1", "layer_3", "aggregate"])
        let layer = try #require(object["layer_3"] as? [String: Any])
        for key in [
            "total_tokens_routed", "num_experts", "mean_tokens_per_expert", "std_tokens_per_expert",
            "max_tokens_per_expert", "min_tokens_per_expert", "coefficient_of_variation",
            "expert_utilization_rate", "gini_coefficient", "tokens_per_expert_distribution",
        ] {
            #expect(layer[key] != nil, "layer key \(key)")
        }
        let aggregate = try #require(object["aggregate"] as? [String: Any])
        for key in ["avg_gini_coefficient", "avg_coefficient_of_variation", "avg_expert_utilization_rate", "num_moe_layers"] {
            #expect(aggregate[key] != nil, "aggregate key \(key)")
        }
    }
}
