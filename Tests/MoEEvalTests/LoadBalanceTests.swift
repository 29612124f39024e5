import Foundation
import Testing

@testable import MoEEval

/// Known answers for hand-made routing fed through the collector as synthetic decisions.
@Suite struct LoadBalanceTests {
    /// E = 8, k = 2, T = 8: token t picks experts t and t+4, so every expert gets exactly 2 tokens.
    @Test func uniformRoutingIsPerfectlyBalanced() throws {
        let routing = SyntheticDecision(experts: 8, topK: 2, perToken: (0..<8).map { [$0 % 4, $0 % 4 + 4] })
        let m = try #require(metrics(of: [routing]))
        #expect(m.tokensPerExpertDistribution == [2, 2, 2, 2, 2, 2, 2, 2])
        #expect(m.giniCoefficient == 0)
        #expect(m.coefficientOfVariation == 0)
        #expect(m.maxViolation == 0)
        #expect(close(m.effectiveExpertsFraction, 1))
        #expect(m.expertUtilizationRate == 1)
        #expect(m.deadExperts == 0 && m.nearDeadExperts == 0)
        for load in m.epOverloadFactorByDegree { #expect(load.overloadFactor == 1) }
        #expect(m.epOverloadFactorByDegree.map(\.degree) == [2, 4, 8])
        // cap at C = 1 is ⌈1·2·8/8⌉ = 2 = every load.
        #expect(m.capacityDropRate[0].capacityFactor == 1 && m.capacityDropRate[0].dropRate == 0)
        #expect(m.capacityDropRate.allSatisfy { $0.droppedAssignments == 0 })
    }

    /// E = 8, k = 2, T = 10, every token on experts 3 and 5: the maxima under top-k.
    @Test func oneHotCollapseReachesTheTopKMaxima() throws {
        let routing = SyntheticDecision(experts: 8, topK: 2, perToken: Array(repeating: [3, 5], count: 10))
        let m = try #require(metrics(of: [routing], options: .init(expertParallelDegree: 4, minimumPairCount: 1)))
        // Gini = (E−k)/E = 6/8: sorted loads 0×6, 10, 10 → 2·(7·10 + 8·10)/(8·20) − 9/8 = 1.875 − 1.125.
        #expect(close(m.giniCoefficient, 0.75))
        #expect(close(m.giniCoefficientNormalized, 1))
        // CV = sqrt((E−k)/k) = sqrt(3): c̄ = 2.5, σ² = (6·2.5² + 2·7.5²)/8 = 18.75.
        #expect(close(m.coefficientOfVariation, 3.0.squareRoot()))
        #expect(close(m.coefficientOfVariationNormalized, 1))
        // MaxVio = E/k − 1 = 10/2.5 − 1 = 3.
        #expect(close(m.maxViolation, 3))
        // Two equally loaded experts: H = ln 2, N_eff = 2 of 8.
        #expect(close(m.effectiveExperts, 2))
        #expect(close(m.effectiveExpertsFraction, 0.25))
        #expect(m.deadExperts == 6 && m.nearDeadExperts == 6)
        #expect(close(m.expertUtilizationRate, 0.25))
        // Contiguous ranks of E/R experts: R=2 → {0-3}: 10, {4-7}: 10 → 1; R=4 → 0, 10, 10, 0 → 10/5 = 2;
        // R=8 → one expert per rank → 1 + MaxVio = 4.
        #expect(m.epOverloadFactorByDegree.map(\.overloadFactor) == [1, 2, 4])
        #expect(m.epOverloadFactor == 2)
        // cap = ⌈C·2·10/8⌉ = 3, 4, 4, 5 → drops 2·(10 − cap) of 20 assignments.
        #expect(m.capacityDropRate.map(\.dropRate) == [0.7, 0.6, 0.6, 0.5])
        // First choice always expert 3: 10 tokens on one expert, c̄ = 10/8 → MaxVio 7.
        #expect(m.top1TokensPerExpertDistribution == [0, 0, 0, 10, 0, 0, 0, 0])
        #expect(close(m.top1MaxViolation, 7))
        #expect(m.top1DeadExperts == 7)
        // The only pair: N_35 = 10, lift = 10·10/(10·10) = 1; uniform baseline (k−1)E/(k(E−1)) = 8/14.
        #expect(m.topCoactivatedPairs == [CoactivationPair(expertA: 3, expertB: 5, count: 10, lift: 1)])
        #expect(close(m.coactivationLiftUniformBaseline, 8.0 / 14.0))
    }

    /// E = 4, k = 1, T = 8: half the tokens to expert 0, half to expert 1.
    @Test func twoExpertSplit() throws {
        let routing = SyntheticDecision(experts: 4, topK: 1, perToken: (0..<8).map { [$0 % 2] })
        let m = try #require(metrics(of: [routing]))
        #expect(m.tokensPerExpertDistribution == [4, 4, 0, 0])
        // Sorted 0, 0, 4, 4: 2·(3·4 + 4·4)/(4·8) − 5/4 = 1.75 − 1.25.
        #expect(close(m.giniCoefficient, 0.5))
        // c̄ = 2, σ² = (2² + 2² + 2² + 2²)/4 = 4.
        #expect(close(m.coefficientOfVariation, 1))
        #expect(close(m.maxViolation, 1))
        #expect(close(m.effectiveExpertsFraction, 0.5))
        // Ranks {0,1}: 8, {2,3}: 0 → 8/4.
        #expect(m.epOverloadFactorByDegree.first == ExpertParallelLoad(degree: 2, overloadFactor: 2, maxRankLoad: 8, meanRankLoad: 4))
        // cap = ⌈8/4⌉ = 2: experts 0 and 1 each drop 2 → 4 of 8.
        #expect(m.capacityDropRate[0].dropRate == 0.5)
        #expect(m.capacityDropRate[0].droppedAssignments == 4)
    }

    /// E = 4, k = 1, loads 1, 2, 3, 6 (T = 12).
    @Test func unevenLoadsByHand() throws {
        let routing = SyntheticDecision(experts: 4, topK: 1, perToken: [[0], [1], [1], [2], [2], [2]] + Array(repeating: [3], count: 6))
        let m = try #require(metrics(of: [routing]))
        #expect(m.totalTokensRouted == 12 && m.meanTokensPerExpert == 3)
        #expect(m.maxTokensPerExpert == 6 && m.minTokensPerExpert == 1)
        // σ² = (2² + 1² + 0² + 3²)/4 = 3.5 (population, as numpy's default in the seed).
        #expect(close(m.stdTokensPerExpert, 3.5.squareRoot()))
        #expect(close(m.coefficientOfVariation, 3.5.squareRoot() / 3))
        // 2·(1·1 + 2·2 + 3·3 + 4·6)/(4·12) − 5/4 = 76/48 − 1.25 = 1/3.
        #expect(close(m.giniCoefficient, 1.0 / 3.0))
        // 6/3 − 1.
        #expect(close(m.maxViolation, 1))
        #expect(close(m.minLoadRatio, 1.0 / 3.0))
        // H = (1/12)ln 12 + (2/12)ln 6 + (3/12)ln 4 + (6/12)ln 2 = 1.198849…; N_eff = 3.316299.
        #expect(close(m.loadEntropy, 1.1988493129136213, tolerance: 1e-12))
        #expect(close(m.effectiveExperts, 3.3162987042769267, tolerance: 1e-9))
        // Ranks {0,1}: 3, {2,3}: 9 → 9/6.
        #expect(m.epOverloadFactorByDegree.map(\.overloadFactor) == [1.5, 2])
        // cap = ⌈C·12/4⌉ = 3, 4, 5, 6 → expert 3 drops 3, 2, 1, 0 of 12.
        #expect(m.capacityDropRate.map(\.droppedAssignments) == [3, 2, 1, 0])
        #expect(close(m.capacityDropRate[1].dropRate, 2.0 / 12.0))
        // No load under 0.1·3.
        #expect(m.nearDeadExperts == 0)
        // CV noise floor sqrt((E−k)/(kT)) = sqrt(3/12) = 0.5; corrected sqrt(3.5/9 − 0.25).
        #expect(close(m.coefficientOfVariationNoiseFloor, 0.5))
        #expect(close(m.coefficientOfVariationNoiseCorrected, (3.5 / 9 - 0.25).squareRoot()))
        // CV_norm = CV / sqrt(3).
        #expect(close(m.coefficientOfVariationNormalized, 3.5.squareRoot() / 3 / 3.0.squareRoot()))
    }

    @Test func giniFormulaOnPlainLoads() {
        #expect(RoutingMetrics.gini([0, 0, 0]) == 0)
        #expect(RoutingMetrics.gini([5]) == 0)
        // One of n holds everything: (n−1)/n.
        #expect(close(RoutingMetrics.gini([0, 0, 0, 9]), 0.75))
        // Order does not matter.
        #expect(close(RoutingMetrics.gini([6, 1, 3, 2]), 1.0 / 3.0))
    }

    @Test func powerOfTwoDegreesDivideE() {
        #expect(RoutingMetrics.powerOfTwoDegrees(experts: 8) == [2, 4, 8])
        #expect(RoutingMetrics.powerOfTwoDegrees(experts: 12) == [2, 4])
        #expect(RoutingMetrics.powerOfTwoDegrees(experts: 160) == [2, 4, 8, 16, 32])
        #expect(RoutingMetrics.powerOfTwoDegrees(experts: 3).isEmpty)
        #expect(RoutingMetrics.expertParallelLoad([1, 2, 3], degree: 2) == nil)
    }

    /// cap = ⌈C·kT/E⌉ on values whose product is exact: 1.25·2·10/8 = 3.125 → 4; 2·2·10/8 = 5.
    @Test func capacityRoundsUp() {
        #expect(RoutingMetrics.expertCapacity(factor: 1.25, tokens: 10, topK: 2, experts: 8) == 4)
        #expect(RoutingMetrics.expertCapacity(factor: 2, tokens: 10, topK: 2, experts: 8) == 5)
        #expect(RoutingMetrics.expertCapacity(factor: 1, tokens: 4096, topK: 8, experts: 256) == 128)
    }
}
