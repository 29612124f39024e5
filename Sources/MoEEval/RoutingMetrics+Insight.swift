import Foundation

/// The insight metrics, each written once here and once in docs/METRICS.md ("Router insight").
extension RoutingMetrics {
    /// A token id counts towards token specialisation only when seen at least this often: an id seen once is
    /// trivially "specialised" (share 1).
    public static let tokenSpecializationMinimumOccurrences = 4

    /// Jain's fairness index J = (Σ x_i)² / (E·Σ x_i²): 1 when balanced, 1/E when one expert takes all
    /// (vLLM's load_balance_score); 1 without load.
    public static func jainFairnessIndex(_ loads: [Double]) -> Double {
        let sum = loads.reduce(0, +), squares = loads.reduce(0) { $0 + $1 * $1 }
        return squares > 0 && !loads.isEmpty ? sum * sum / (Double(loads.count) * squares) : 1
    }

    public static func jainFairnessIndex(_ loads: [Int]) -> Double { jainFairnessIndex(loads.map(Double.init)) }

    /// CV = σ/μ of real-valued loads (population σ; 0 without load), as `coefficientOfVariation` for counts.
    public static func coefficientOfVariation(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return 0 }
        let mean = values.reduce(0, +) / Double(values.count)
        guard mean > 0 else { return 0 }
        let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count)
        return variance.squareRoot() / mean
    }

    /// Router z-loss (ST-MoE): (1/T)·Σ_t (log Σ_i exp x_{t,i})² over the gate logits x.
    public static func routerZLoss(logSumExpSquaredSum: Double, tokens: Int) -> Double? {
        tokens > 0 ? logSumExpSquaredSum / Double(tokens) : nil
    }

    /// Mean and population standard deviation of all T·E gate logits.
    public static func logitMeanAndStd(sum: Double, squaredSum: Double, tokens: Int, experts: Int) -> (mean: Double, std: Double)? {
        let n = Double(tokens) * Double(experts)
        guard n > 0 else { return nil }
        let mean = sum / n
        return (mean, max(0, squaredSum / n - mean * mean).squareRoot())
    }

    /// Token specialisation (OLMoE): over token ids v seen at least `minimumOccurrences` times,
    /// Σ_v max_i n_{v,i} / Σ_v N_v, with N_v the occurrences of v and n_{v,i} how many of them selected expert i
    /// among their top-k. 1: every occurrence of an id goes to its favourite expert. Nil without such ids.
    public static func tokenSpecialization(
        occurrences: [Int32: Int], expertCounts: [Int: Int], experts: Int,
        minimumOccurrences: Int = tokenSpecializationMinimumOccurrences
    ) -> (value: Double, tokenIds: Int)? {
        var favourite: [Int32: Int] = [:]
        for (key, count) in expertCounts {
            let token = Int32(truncatingIfNeeded: key / experts)
            favourite[token] = max(favourite[token] ?? 0, count)
        }
        var top = 0, total = 0, ids = 0
        for (token, seen) in occurrences where seen >= minimumOccurrences {
            top += favourite[token] ?? 0
            total += seen
            ids += 1
        }
        return total > 0 ? (Double(top) / Double(total), ids) : nil
    }

    /// NMI = I(X;Y) / sqrt(H(X)·H(Y)) from joint counts `[rows][columns]` (row-major); 0 when either side is
    /// constant or there are no counts.
    public static func normalizedMutualInformation(joint: [Int], rows: Int, columns: Int) -> Double {
        guard rows > 0, columns > 0, joint.count == rows * columns else { return 0 }
        let total = Double(joint.reduce(0, +))
        guard total > 0 else { return 0 }
        var rowSums = [Double](repeating: 0, count: rows), columnSums = [Double](repeating: 0, count: columns)
        for r in 0..<rows {
            for c in 0..<columns {
                rowSums[r] += Double(joint[r * columns + c])
                columnSums[c] += Double(joint[r * columns + c])
            }
        }
        func entropy(_ sums: [Double]) -> Double {
            sums.reduce(0) { $1 > 0 ? $0 - $1 / total * log($1 / total) : $0 }
        }
        let hx = entropy(rowSums), hy = entropy(columnSums)
        guard hx > 0, hy > 0 else { return 0 }
        var information = 0.0
        for r in 0..<rows {
            for c in 0..<columns where joint[r * columns + c] > 0 {
                let p = Double(joint[r * columns + c]) / total
                information += p * log(p * total * total / (rowSums[r] * columnSums[c]))
            }
        }
        return max(0, information) / (hx * hy).squareRoot()
    }

    /// Loads as a probability distribution (uniform when there is no load).
    public static func distribution(_ loads: [Int]) -> [Double] {
        let total = Double(loads.reduce(0, +))
        guard total > 0 else { return loads.map { _ in 1 / Double(max(loads.count, 1)) } }
        return loads.map { Double($0) / total }
    }

    /// KL(p ‖ uniform) = Σ_i p_i ln(E·p_i) = ln E − H(p), in nats.
    public static func klToUniform(_ p: [Double]) -> Double {
        let e = Double(p.count)
        return max(0, p.reduce(0) { $1 > 0 ? $0 + $1 * log(e * $1) : $0 })
    }

    /// Jensen–Shannon divergence ½KL(p‖m) + ½KL(q‖m), m = (p + q)/2, in bits (0 … 1).
    public static func jensenShannonDivergence(_ p: [Double], _ q: [Double]) -> Double {
        guard p.count == q.count else { return 0 }
        var divergence = 0.0
        for (a, b) in zip(p, q) {
            let m = (a + b) / 2
            if a > 0 { divergence += 0.5 * a * log2(a / m) }
            if b > 0 { divergence += 0.5 * b * log2(b / m) }
        }
        return max(0, divergence)
    }

    /// Fills each layer's insight keys from the insight collector's counts (layers without counts keep nil).
    public static func addInsight(_ insight: [LayerInsightCounts], to statistics: inout RoutingStatistics) {
        let byLayer = Dictionary(insight.map { ($0.layer, $0) }, uniquingKeysWith: { first, _ in first })
        for index in statistics.layers.indices {
            guard let counts = byLayer[statistics.layers[index].layer], counts.numExperts == statistics.layers[index].numExperts else {
                continue
            }
            var layer = statistics.layers[index]
            layer.gateMassPerExpert = counts.gateMassPerExpert
            layer.gateMassCoefficientOfVariation = coefficientOfVariation(counts.gateMassPerExpert)
            layer.routerZLoss = routerZLoss(logSumExpSquaredSum: counts.logSumExpSquaredSum, tokens: counts.logitTokens)
            if let moments = logitMeanAndStd(
                sum: counts.logitSum, squaredSum: counts.logitSquaredSum,
                tokens: counts.logitTokens, experts: counts.numExperts)
            {
                layer.routerLogitMean = moments.mean
                layer.routerLogitStd = moments.std
                layer.routerLogitAbsMax = counts.logitAbsMax
            }
            if let specialization = tokenSpecialization(
                occurrences: counts.tokenOccurrences, expertCounts: counts.tokenExpertCounts,
                experts: counts.numExperts)
            {
                layer.tokenSpecialization = specialization.value
                layer.tokenSpecializationTokenIds = specialization.tokenIds
            }
            if let next = counts.nextLayer {
                layer.nextLayer = next
                layer.nextLayerTop1NormalizedMutualInformation = normalizedMutualInformation(
                    joint: counts.nextLayerJointTop1, rows: counts.numExperts, columns: counts.nextLayerExperts)
            }
            statistics.layers[index] = layer
        }
    }
}
