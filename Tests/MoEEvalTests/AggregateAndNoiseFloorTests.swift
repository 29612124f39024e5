import Foundation
import MoECore
import Testing

@testable import MoEEval

@Suite struct AggregateTests {
    /// Three layers, E = 4, k = 1: uniform (layer 0), two-expert split (layer 2), collapse (layer 5).
    static func threeLayers() -> RoutingStatistics {
        let collector = RoutingStatisticsCollector()
        SyntheticDecision(layer: 0, experts: 4, topK: 1, perToken: (0..<8).map { [$0 % 4] }).feed(collector)
        SyntheticDecision(layer: 2, experts: 4, topK: 1, perToken: (0..<8).map { [$0 % 2] }).feed(collector)
        SyntheticDecision(layer: 5, experts: 4, topK: 1, perToken: Array(repeating: [1], count: 8)).feed(collector)
        return RoutingMetrics.statistics(collector.finish(), options: .init(expertParallelDegree: 2))
    }

    @Test func aggregateIsTheMeanOfLayerValues() {
        let stats = Self.threeLayers()
        let layers = stats.layers
        #expect(layers.map(\.layer) == [0, 2, 5])
        #expect(stats.aggregate.numMoeLayers == 3)
        func mean(_ values: [Double]) -> Double { values.reduce(0, +) / Double(values.count) }
        #expect(close(stats.aggregate.avgGiniCoefficient, mean(layers.map(\.giniCoefficient))))
        #expect(close(stats.aggregate.avgCoefficientOfVariation, mean(layers.map(\.coefficientOfVariation))))
        #expect(close(stats.aggregate.avgExpertUtilizationRate, mean(layers.map(\.expertUtilizationRate))))
        #expect(close(stats.aggregate.maxViolation?.mean, mean(layers.map(\.maxViolation))))
        #expect(close(stats.aggregate.giniCoefficient?.mean, mean(layers.map(\.giniCoefficient))))
        #expect(close(stats.aggregate.epOverloadFactor?.mean, mean(layers.compactMap(\.epOverloadFactor))))
    }

    /// MaxVio per layer: 0, 1 (loads 4,4,0,0), 3 (loads 0,8,0,0).
    /// median 1; p90 at rank 0.9·2 = 1.8 → 1 + 0.8·(3 − 1) = 2.6; worst layer_5.
    /// Overload at R = 2: layer 0 → 1; layer 2 → ranks 8, 0 → 2; layer 5 → ranks 8, 0 → 2, worst is the
    /// first of the tie (layer_2). Step factor (4 + 8 + 8)/(4 + 4 + 4) = 5/3.
    /// N_eff/E: 1, 0.5, 0.25 → lower is worse → layer_5.
    @Test func distributionsOverLayersByHand() throws {
        let aggregate = Self.threeLayers().aggregate
        let maxViolation = try #require(aggregate.maxViolation)
        #expect(close(maxViolation.median, 1))
        #expect(close(maxViolation.p90, 2.6))
        #expect(maxViolation.min == 0 && maxViolation.max == 3)
        #expect(maxViolation.worstLayer == "layer_5")
        let overload = try #require(aggregate.epOverloadFactor)
        #expect(overload.worstLayer == "layer_2" && overload.max == 2)
        #expect(close(aggregate.stepOverloadFactor, 5.0 / 3.0))
        #expect(aggregate.epDegree == 2)
        #expect(aggregate.effectiveExpertsFraction?.worstLayer == "layer_5")
        #expect(close(aggregate.effectiveExpertsFraction?.min, 0.25))
    }

    @Test func noLayersGiveTheSeedsEmptyAggregate() throws {
        let stats = RoutingMetrics.statistics([])
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = String(decoding: try encoder.encode(stats), as: UTF8.self)
        #expect(json == #"{"aggregate":{"num_moe_layers":0}}"#)
    }

    @Test func percentileInterpolatesLikeNumpy() {
        // numpy.percentile([1, 2, 3, 4], 90) = 3.7; median 2.5.
        #expect(close(percentile([4, 1, 3, 2], 0.9), 3.7))
        #expect(close(percentile([4, 1, 3, 2], 0.5), 2.5))
        #expect(percentile([7], 0.9) == 7)
    }
}

/// The uniform-routing MaxVio floor against an independent seeded simulation.
@Suite struct NoiseFloorTests {
    /// Mean and standard error of MaxVio over `trials` draws where each token picks k distinct experts by
    /// rejection sampling (a different algorithm and generator from the library's simulation).
    static func simulate(experts: Int, topK: Int, tokens: Int, trials: Int, seed: UInt64) -> (mean: Double, standardError: Double) {
        var state = seed
        func next(_ bound: Int) -> Int {
            // xorshift64*
            state ^= state >> 12; state ^= state << 25; state ^= state >> 27
            return Int((state &* 0x2545_F491_4F6C_DD1D) >> 11) % bound
        }
        var values: [Double] = []
        var loads = [Int](repeating: 0, count: experts)
        var picked = [Bool](repeating: false, count: experts)
        for _ in 0..<trials {
            for i in 0..<experts { loads[i] = 0 }
            for _ in 0..<tokens {
                var chosen: [Int] = []
                while chosen.count < topK {
                    let expert = next(experts)
                    if !picked[expert] { picked[expert] = true; chosen.append(expert) }
                }
                for expert in chosen { picked[expert] = false; loads[expert] += 1 }
            }
            values.append(Double(loads.max()!) / (Double(topK * tokens) / Double(experts)) - 1)
        }
        let mean = values.reduce(0, +) / Double(trials)
        let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(trials - 1)
        return (mean, (variance / Double(trials)).squareRoot())
    }

    /// Analytic path (T > 64): within 3% plus three standard errors of the simulation.
    /// Small E is where the −1/(E−1) correlation between loads matters (√2 for E = 2).
    @Test(arguments: [
        (2, 1, 200, 600), (4, 2, 256, 600), (8, 2, 512, 300), (64, 8, 512, 150), (16, 1, 256, 300),
        (64, 6, 2048, 40), (256, 8, 4096, 30),
    ])
    func analyticFloorMatchesSimulation(_ experts: Int, _ topK: Int, _ tokens: Int, _ trials: Int) {
        let floor = RoutingMetrics.uniformMaxViolationFloor(experts: experts, topK: topK, tokens: tokens)
        let simulated = Self.simulate(experts: experts, topK: topK, tokens: tokens, trials: trials, seed: 0x1234_5678_9ABC_DEF1)
        #expect(
            abs(floor - simulated.mean) <= 0.03 * simulated.mean + 3 * simulated.standardError,
            "E=\(experts) k=\(topK) T=\(tokens): floor \(floor), simulation \(simulated.mean) ± \(simulated.standardError)")
    }

    /// Simulated path (T ≤ 64): the library's seeded simulation against ours.
    @Test(arguments: [(8, 2, 16), (16, 1, 8), (64, 8, 32)])
    func smallScopeFloorMatchesSimulation(_ experts: Int, _ topK: Int, _ tokens: Int) {
        let floor = RoutingMetrics.uniformMaxViolationFloor(experts: experts, topK: topK, tokens: tokens)
        let simulated = Self.simulate(experts: experts, topK: topK, tokens: tokens, trials: 2000, seed: 99)
        #expect(
            abs(floor - simulated.mean) <= 4 * simulated.standardError,
            "E=\(experts) k=\(topK) T=\(tokens): floor \(floor), simulation \(simulated.mean) ± \(simulated.standardError)")
    }

    /// One token: its k experts hold 1 each, c̄ = k/E, so MaxVio = E/k − 1 exactly; k = E has no imbalance.
    @Test func exactEdgeCases() {
        #expect(close(RoutingMetrics.uniformMaxViolationFloor(experts: 8, topK: 2, tokens: 1), 3))
        #expect(RoutingMetrics.uniformMaxViolationFloor(experts: 4, topK: 4, tokens: 100) == 0)
        #expect(RoutingMetrics.uniformMaxViolationFloor(experts: 8, topK: 2, tokens: 0) == 0)
    }

    @Test func floorShrinksWithMoreTokens() {
        let floors = [128, 1024, 8192, 65536].map { RoutingMetrics.uniformMaxViolationFloor(experts: 64, topK: 8, tokens: $0) }
        #expect(zip(floors, floors.dropFirst()).allSatisfy { $0 > $1 })
        #expect(floors.allSatisfy { $0.isFinite && $0 > 0 })
    }
}
