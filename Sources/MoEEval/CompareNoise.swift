import Foundation
import MoEJSON

/// How large a difference between two results files must be before `compare` counts it as better or worse
/// (docs/METRICS.md, "compare: noise"). Every threshold is z_{0.975}·√(s_A² + s_B²), where s is one file's
/// standard-error scale for the metric: routing metrics take it from the uniform-routing noise floors the file
/// records, proportions and counts from binomial and Poisson sampling, timings from the run-to-run spread in the
/// file or a stated relative tolerance. Deterministic quantities (parameters, FLOPs) must match exactly.
public struct NoiseModel: Sendable {
    public static let z95 = 1.959963984540054
    /// Relative difference below which two timings (latency, throughput, GFLOP/s, MFU, wall time, measured
    /// memory) are the same when the file records no spread for them.
    public var timingTolerance: Double

    public init(timingTolerance: Double = 0.10) { self.timingTolerance = timingTolerance }

    /// A difference threshold and where it came from.
    public struct Threshold: Sendable {
        public var value: Double
        public var source: String
    }

    /// The threshold for one row from the first and last file's scales; nil when the metric has no noise model.
    func threshold(
        section: String, metric: String, first: Double, last: Double,
        scaleFirst: RoutingNoiseScale?, scaleLast: RoutingNoiseScale?,
        spreadFirst: Double?, spreadLast: Double?
    ) -> Threshold? {
        let name = Comparison.baseName(metric)
        if section.hasPrefix("routing_stats") {
            guard let a = scaleFirst?.standardError(of: name, metric: metric, value: first),
                let b = scaleLast?.standardError(of: name, metric: metric, value: last)
            else { return nil }
            return Threshold(value: Self.z95 * (a.value * a.value + b.value * b.value).squareRoot(), source: a.source)
        }
        if Self.isTiming(name) {
            let largest = max(abs(first), abs(last))
            var relative = timingTolerance
            var source = "timing tolerance \(Comparison.formatNumber(timingTolerance * 100))%"
            if let a = spreadFirst, let b = spreadLast {
                let measured = Self.z95 * (a * a + b * b).squareRoot()
                if measured > relative {
                    relative = measured
                    source = "run-to-run spread (p95 − p50)/p50"
                }
            }
            return Threshold(value: relative * largest, source: source)
        }
        if Self.isDeterministic(name) {
            return Threshold(value: 1e-12 * max(abs(first), abs(last)), source: "exact (deterministic)")
        }
        return nil
    }

    static let timingPatterns = [
        "latency", "throughput", "tokens_per_sec", "time_to_first_token", "gflops_per_sec", "mfu",
        "walltime_seconds", "memory_allocated", "memory_reserved",
    ]
    static let deterministicPatterns = ["params_billions", "flops_per_token", "total_flops", "tflops", "weights_gb", "kv_cache_gb"]

    static func isTiming(_ name: String) -> Bool { timingPatterns.contains(where: name.contains) }
    static func isDeterministic(_ name: String) -> Bool { deterministicPatterns.contains(where: name.contains) }

    /// The relative spread of a timing key, from the p50/p95 pair of the same quantity in its section:
    /// `prefill_latency_ms_p50` → (p95 − p50)/p50 of prefill latency; throughput keys use their latency's spread.
    static func relativeSpread(of metric: String, in object: JSONObject?) -> Double? {
        guard let object else { return nil }
        let families = [
            ("prefill", "prefill_latency_ms"), ("decode", "decode_latency_ms_per_token"),
            ("time_to_first_token", "time_to_first_token_ms"),
        ]
        for (prefix, stem) in families where metric.hasPrefix(prefix) {
            guard let p50 = object[stem + "_p50"]?.doubleValue, let p95 = object[stem + "_p95"]?.doubleValue,
                p50 > 0, p95.isFinite, p95 >= p50
            else { return nil }
            return (p95 - p50) / p50
        }
        return nil
    }
}

/// One file's (or one layer's) standard-error scales for routing metrics. The uniform-routing noise floor of a
/// metric is what sampling alone gives it over T tokens, so it serves as that metric's standard error at T.
/// When the routing windows overlap (short text), repeated tokens add no information: the floors are scaled
/// by √(T / distinct text tokens).
struct RoutingNoiseScale: Sendable {
    var cvFloor: Double?
    var maxViolationFloor: Double?
    var batchFloor: Double?
    var sequenceFloor: Double?
    var experts: Int?
    var topK: Int?
    var tokens: Double?
    /// Mean CV of the scope: entropy-type metrics move by about CV·δCV.
    var cv: Double?
    var overlap: Double = 1
    /// Per-layer expert loads (`tokens_per_expert_distribution`), for the drop rates' noise.
    var distributions: [[Double]] = []

    init(layers: [JSONObject], file: ResultsFile) {
        func mean(_ key: String) -> Double? {
            let values = layers.compactMap { $0[key]?.doubleValue }.filter(\.isFinite)
            return values.isEmpty ? nil : values.reduce(0, +) / Double(values.count)
        }
        cvFloor = mean("coefficient_of_variation_noise_floor")
        maxViolationFloor = mean("max_violation_noise_floor")
        batchFloor = mean("max_violation_batch_noise_floor")
        sequenceFloor = mean("max_violation_sequence_noise_floor")
        cv = mean("coefficient_of_variation")
        distributions = layers.compactMap { layer in
            guard let items = layer["tokens_per_expert_distribution"]?.arrayValue else { return nil }
            let loads = items.compactMap(\.doubleValue).filter { $0.isFinite && $0 >= 0 }
            return loads.count == items.count && !loads.isEmpty ? loads : nil
        }
        tokens = mean("num_tokens")
        let moe = file.root["model_args"]?.objectValue?["moe_args"]?.objectValue
        func integer(_ value: Double?) -> Int? {
            guard let value, value.isFinite, value >= 1, value < 1e9, value.rounded() == value else { return nil }
            return Int(value)
        }
        experts = integer(mean("num_experts") ?? moe?["num_experts"]?.doubleValue)
        topK = integer(mean("top_k") ?? moe?["top_k"]?.doubleValue)
        if let input = file.runRecord?["routing_input"]?.objectValue, input["windows_overlap"] == .bool(true),
            let distinct = input["text_tokens"]?.doubleValue, let tokens, distinct >= 1, distinct < tokens
        {
            overlap = (tokens / distinct).squareRoot()
        }
    }

    /// The standard-error scale of a routing metric, by its base name; nil when the metric has no noise model
    /// or the file lacks what it needs.
    func standardError(of name: String, metric: String, value: Double) -> (value: Double, source: String)? {
        guard let scale = rawStandardError(of: name, metric: metric, value: value), scale.value.isFinite else { return nil }
        return (scale.value * overlap, scale.source + (overlap > 1 ? " × √(T/distinct tokens)" : ""))
    }

    private func rawStandardError(of name: String, metric: String, value: Double) -> (value: Double, source: String)? {
        let e = experts.map(Double.init), k = topK.map(Double.init)
        if name.contains("noise_floor") { return nil }
        if name.contains("gini_coefficient") {
            guard let cvFloor else { return nil }
            let gini = cvFloor / Double.pi.squareRoot()
            if name.hasSuffix("normalized") {
                guard let e, let k, e > k else { return nil }
                return (gini * e / (e - k), "CV noise floor/√π·E/(E−k)")
            }
            return (gini, "CV noise floor/√π")
        }
        if name.contains("coefficient_of_variation") {
            guard let cvFloor else { return nil }
            if name.hasSuffix("normalized") {
                guard let e, let k, e > k else { return nil }
                return (cvFloor / ((e - k) / k).squareRoot(), "CV noise floor/√((E−k)/k)")
            }
            return (cvFloor, "CV noise floor")
        }
        if name.contains("top1_max_violation") {
            // The floor's cost grows with E (a simulation at small T) and √T: values no real router has get no model.
            guard let experts, experts <= Self.largestExpertCount, let tokens, tokens >= 1, tokens <= 1e9 else { return nil }
            return (RoutingMetrics.uniformMaxViolationFloor(experts: experts, topK: 1, tokens: Int(tokens)), "top-1 MaxVio noise floor")
        }
        if name.contains("max_violation_batch") { return batchFloor.map { ($0, "batch MaxVio noise floor") } }
        if name.contains("max_violation_sequence") { return sequenceFloor.map { ($0, "sequence MaxVio noise floor") } }
        if name.contains("max_violation") || name.contains("overload_factor") || name == "min_load_ratio" {
            return maxViolationFloor.map { ($0, "MaxVio noise floor") }
        }
        if name.contains("load_entropy") || name.contains("effective_experts") {
            guard let cvFloor else { return nil }
            // H ≈ ln E − CV²/2, so δH ≈ CV·δCV; N_eff = e^H moves by N_eff·δH.
            let entropy = ((cv ?? 0) + cvFloor) * cvFloor
            if name.hasSuffix("normalized") {
                guard let e, e > 1 else { return nil }
                return (entropy / log(e), "(CV + CV floor)·CV floor/ln E")
            }
            if name.contains("effective_experts") { return (abs(value) * entropy, "N_eff·(CV + CV floor)·CV floor") }
            return (entropy, "(CV + CV floor)·CV floor")
        }
        if name.contains("jain_fairness") {
            guard let cvFloor else { return nil }
            // J = 1/(1 + CV²), so δJ = 2·CV·δCV/(1 + CV²)².
            let spread = cv ?? 0
            return (
                2 * (spread + cvFloor) * cvFloor / ((1 + spread * spread) * (1 + spread * spread)), "2(CV + CV floor)·CV floor/(1 + CV²)²"
            )
        }
        if name.contains("utilization_rate") {
            guard let e else { return nil }
            let dead = max(1, e * (1 - value))
            return (dead.squareRoot() / e, "Poisson count of dead experts")
        }
        if name.contains("dead_experts") { return (max(1, value).squareRoot(), "Poisson count") }
        if name.contains("drop_rate") {
            if let capacity = Self.capacityFactor(metric), let overloaded = overloadedNoise(capacity: capacity) {
                return (overloaded, "Poisson loads of the overloaded experts, moving together")
            }
            guard let tokens, let k, tokens * k >= 1 else { return nil }
            let n = tokens * k
            return ((max(value * (1 - value), 1 / n) / n).squareRoot(), "binomial over T·k assignments")
        }
        if name.contains("fragile_token_fraction") {
            guard let tokens, tokens >= 1 else { return nil }
            return ((max(value * (1 - value), 1 / tokens) / tokens).squareRoot(), "binomial over T tokens")
        }
        if name.contains("aux_balance_loss") { return cvFloor.map { ($0, "CV noise floor") } }
        return nil
    }

    static let largestExpertCount = 1 << 16

    /// The C of `capacity_drop_rate[C=1.25].drop_rate`.
    static func capacityFactor(_ metric: String) -> Double? {
        guard let open = metric.range(of: "[C="), let close = metric[open.upperBound...].firstIndex(of: "]") else { return nil }
        return Double(metric[open.upperBound..<close])
    }

    /// drop = Σ_i max(0, c_i − C·c̄)/(T·k), so δdrop = Σ_{i overloaded} δc_i/(T·k). Token loads of real text move
    /// together (a topic shift moves several experts at once), so the overloaded experts' Poisson deviations √c_i
    /// are added, not added in quadrature: s = Σ_{c_i > C·c̄} √c_i / Σ_i c_i, averaged over layers.
    func overloadedNoise(capacity: Double) -> Double? {
        guard capacity.isFinite, capacity > 0, !distributions.isEmpty else { return nil }
        var total = 0.0
        for loads in distributions {
            let sum = loads.reduce(0, +)
            guard sum > 0 else { continue }
            let limit = capacity * sum / Double(loads.count)
            // An expert just under capacity can cross it by one deviation: it counts too.
            let deviations = loads.filter { $0 + $0.squareRoot() > limit }.map { $0.squareRoot() }.reduce(0, +)
            total += max(deviations, 1) / sum
        }
        return total / Double(distributions.count)
    }
}

extension Comparison {
    /// Replaces each directional row's mark by better/worse only beyond its noise threshold (last vs first file).
    static func applyNoise(_ rows: inout [MetricRow], first: ResultsFile, last: ResultsFile, model: NoiseModel) {
        var scales: [String: (RoutingNoiseScale, RoutingNoiseScale)] = [:]
        func scale(_ section: String) -> (RoutingNoiseScale, RoutingNoiseScale) {
            if let known = scales[section] { return known }
            func layers(_ file: ResultsFile) -> [JSONObject] {
                let all = file.routingLayers
                let prefix = "routing_stats."
                guard section.hasPrefix(prefix + "layer_") else { return all.map(\.metrics) }
                let name = String(section.dropFirst(prefix.count))
                return all.filter { $0.name == name }.map(\.metrics)
            }
            let pair = (RoutingNoiseScale(layers: layers(first), file: first), RoutingNoiseScale(layers: layers(last), file: last))
            scales[section] = pair
            return pair
        }
        for index in rows.indices {
            let row = rows[index]
            guard row.direction != .neutral, row.texts == nil, let a = row.values.first ?? nil, let b = row.values.last ?? nil,
                a.isFinite, b.isFinite
            else { continue }
            let pair = row.section.hasPrefix("routing_stats") ? scale(row.section) : nil
            let spreads =
                row.section == "inference_performance"
                ? (
                    NoiseModel.relativeSpread(of: row.metric, in: first.section(row.section)),
                    NoiseModel.relativeSpread(of: row.metric, in: last.section(row.section))
                )
                : (nil, nil)
            guard
                let threshold = model.threshold(
                    section: row.section, metric: row.metric, first: a, last: b,
                    scaleFirst: pair?.0, scaleLast: pair?.1,
                    spreadFirst: spreads.0, spreadLast: spreads.1)
            else { continue }
            rows[index].noiseThreshold = threshold.value
            rows[index].noiseSource = threshold.source
            if abs(b - a) <= threshold.value { rows[index].mark = .same }
        }
    }

    /// Accuracy marks from significance: the paired McNemar test where per-document results pair the first and
    /// last file on this score, else the unpaired z; no mark without an uncertainty.
    static func judgeAccuracy(_ rows: inout [AccuracyRow], paired: [PairedRow], first: String, last: String) {
        for index in rows.indices {
            let row = rows[index]
            guard row.direction != .neutral, let delta = row.delta else {
                rows[index].mark = nil
                continue
            }
            let score = String(row.metric.split(separator: ",").first ?? Substring(row.metric))
            let better: ChangeMark = (delta > 0) == (row.direction == .higherIsBetter) ? .better : .worse
            if let pair = paired.first(where: { $0.task == row.task && $0.score == score && $0.from == first && $0.to == last }) {
                rows[index].noiseSource = "paired (McNemar exact p < 0.05)"
                rows[index].mark = pair.statistics.mcnemarExactP < 0.05 && delta != 0 ? better : .same
            } else if let significant = row.significant {
                rows[index].noiseSource = "unpaired SE (|z| > 1.96)"
                rows[index].mark = significant ? better : .same
            } else if row.deltaStandardError == 0 && delta == 0 {
                rows[index].noiseSource = "unpaired SE (|z| > 1.96)"
                rows[index].mark = .same
            } else {
                rows[index].noiseSource = nil
                rows[index].mark = nil
            }
        }
    }
}
