import Foundation
import MoEJSON

/// Which way a metric should move. Everything not listed is neutral: shown with deltas, never judged.
public enum MetricDirection: String, Codable, Sendable {
    case lowerIsBetter = "lower"
    case higherIsBetter = "higher"
    case neutral
}

/// How the last file compares with the first on one metric.
public enum ChangeMark: String, Codable, Sendable {
    case better, worse, same
}

/// The seed's interpretation bands for Gini, CV and utilisation (its "Key Metrics for MoE Comparison" table).
/// The seed leaves gaps (Gini 0.2–0.3, CV 0.4–0.5); values there are `fair`.
public enum SeedBand: String, Codable, Sendable {
    case excellent, good, fair, poor

    /// The band of `value` for a metric named like the seed's (`gini_coefficient`, `avg_gini_coefficient`, …);
    /// nil for every other metric, including the normalised variants, which the seed's table does not cover.
    public static func of(metric: String, value: Double) -> SeedBand? {
        guard value.isFinite else { return nil }
        switch metric {
        case "gini_coefficient", "avg_gini_coefficient":
            return value < 0.1 ? .excellent : value <= 0.2 ? .good : value <= 0.3 ? .fair : .poor
        case "coefficient_of_variation", "avg_coefficient_of_variation":
            return value < 0.2 ? .excellent : value <= 0.4 ? .good : value <= 0.5 ? .fair : .poor
        case "expert_utilization_rate", "avg_expert_utilization_rate":
            return value > 0.95 ? .excellent : value >= 0.8 ? .good : .poor
        default:
            return nil
        }
    }
}

// MARK: - Paired statistics

/// Two checkpoints scored 0/1 on the same documents (docs/METRICS.md, "compare").
/// Δ is B − A, like every delta in `compare`.
public struct PairedStatistics: Codable, Equatable, Sendable {
    public var documents: Int
    public var bothCorrect: Int
    /// McNemar's b: documents A got right and B got wrong.
    public var onlyACorrect: Int
    /// McNemar's c: documents B got right and A got wrong.
    public var onlyBCorrect: Int
    public var bothWrong: Int
    public var accuracyA: Double
    public var accuracyB: Double
    public var delta: Double
    /// sd(d)/√n over d_i = s_i^B − s_i^A (sample sd); nil below two documents.
    public var deltaStandardError: Double?
    /// √(SE_A² + SE_B²) with SE = √(p(1−p)/(n−1)): what the same Δ would get without pairing.
    public var unpairedStandardError: Double?
    /// Exact two-sided McNemar test: 2·P(X ≤ min(b, c)), X ~ Binomial(b + c, ½), capped at 1.
    public var mcnemarExactP: Double
    /// (z_{0.975} + z_{0.80})·SE_Δ: the smallest |Δ| this many paired documents detect at α 0.05, power 0.8.
    public var minimumDetectableEffect: Double?

    /// z_{1−α/2} + z_{power} for α = 0.05 and 80% power (1.959964 + 0.841621).
    public static let detectableEffectMultiplier = 1.959963984540054 + 0.8416212335729143

    enum CodingKeys: String, CodingKey {
        case documents, accuracyA = "accuracy_a", accuracyB = "accuracy_b", delta
        case bothCorrect = "both_correct", onlyACorrect = "only_a_correct", onlyBCorrect = "only_b_correct", bothWrong = "both_wrong"
        case deltaStandardError = "delta_stderr", unpairedStandardError = "unpaired_stderr"
        case mcnemarExactP = "mcnemar_exact_p", minimumDetectableEffect = "minimum_detectable_effect"
    }

    public init(bothCorrect: Int, onlyACorrect: Int, onlyBCorrect: Int, bothWrong: Int) {
        self.bothCorrect = bothCorrect
        self.onlyACorrect = onlyACorrect
        self.onlyBCorrect = onlyBCorrect
        self.bothWrong = bothWrong
        let n = bothCorrect + onlyACorrect + onlyBCorrect + bothWrong
        documents = n
        let count = Double(max(n, 1))
        accuracyA = Double(bothCorrect + onlyACorrect) / count
        accuracyB = Double(bothCorrect + onlyBCorrect) / count
        delta = Double(onlyBCorrect - onlyACorrect) / count
        if n >= 2 {
            // d_i ∈ {−1, 0, 1}: Σd² = b + c, so the sample variance is (b + c − n·Δ²)/(n − 1).
            let variance = max(0, (Double(onlyACorrect + onlyBCorrect) - count * delta * delta) / (count - 1))
            let standardError = (variance / count).squareRoot()
            deltaStandardError = standardError
            minimumDetectableEffect = Self.detectableEffectMultiplier * standardError
            let varianceA = accuracyA * (1 - accuracyA) / (count - 1), varianceB = accuracyB * (1 - accuracyB) / (count - 1)
            unpairedStandardError = (varianceA + varianceB).squareRoot()
        }
        mcnemarExactP = Self.mcnemarExactP(onlyACorrect, onlyBCorrect)
    }

    public init(pairs: [(a: Bool, b: Bool)]) {
        var bothCorrect = 0, onlyA = 0, onlyB = 0, bothWrong = 0
        for pair in pairs {
            switch (pair.a, pair.b) {
            case (true, true): bothCorrect += 1
            case (true, false): onlyA += 1
            case (false, true): onlyB += 1
            case (false, false): bothWrong += 1
            }
        }
        self.init(bothCorrect: bothCorrect, onlyACorrect: onlyA, onlyBCorrect: onlyB, bothWrong: bothWrong)
    }

    /// Exact two-sided McNemar p-value for b and c discordant documents (1 when there are none).
    public static func mcnemarExactP(_ b: Int, _ c: Int) -> Double {
        let n = b + c
        guard n > 0 else { return 1 }
        return min(1, 2 * binomialCDF(min(b, c), trials: n))
    }

    /// P(X ≤ k) for X ~ Binomial(n, ½), summed in log space so that n in the millions neither under- nor overflows.
    public static func binomialCDF(_ k: Int, trials n: Int) -> Double {
        guard k >= 0 else { return 0 }
        guard k < n else { return 1 }
        let logHalfPower = Double(n) * log(0.5)
        let logChoose = { (i: Int) in lgamma(Double(n + 1)) - lgamma(Double(i + 1)) - lgamma(Double(n - i + 1)) }
        var terms = (0...k).map { logChoose($0) + logHalfPower }
        let largest = terms.max() ?? 0
        for i in terms.indices { terms[i] = exp(terms[i] - largest) }
        return min(1, exp(largest) * terms.reduce(0, +))
    }
}

/// Per-sample benchmark results (`lm_eval_samples`, docs/METRICS.md): task → records, each with `doc_id`
/// and 0/1 scores; the counterpart of lm-eval's `--log_samples` files, reduced to what pairing needs.
public struct SampleScores: Sendable {
    /// Score keys read from a record, in this order: `correct` (the task's primary metric), then lm-eval's names.
    public static let scoreKeys = ["correct", "acc", "acc_norm", "exact_match"]
    /// Hashes that must agree for two records with the same `doc_id` to be the same question.
    public static let hashKeys = ["doc_hash", "prompt_hash", "target_hash"]

    public struct Record: Sendable {
        public var scores: [String: Bool]
        public var hashes: [String: String]
    }

    /// task → doc key → record, tasks in file order.
    public var tasks: [(name: String, records: [String: Record])]
    public var problems: [String]

    /// Reads `lm_eval_samples`; records that cannot be used are counted in `problems`, never fatal.
    public init(_ file: ResultsFile, label: String) {
        tasks = []
        problems = []
        guard let samples = file.root["lm_eval_samples"]?.objectValue else { return }
        for (task, value) in samples.entries {
            guard let list = value.arrayValue else {
                problems.append("\(label): lm_eval_samples.\(task) is \(value.typeName), not an array of records; skipped")
                continue
            }
            var records: [String: Record] = [:]
            var unusable = 0, duplicates = 0
            for item in list {
                guard let object = item.objectValue, let key = Self.docKey(object["doc_id"]) else { unusable += 1; continue }
                var scores: [String: Bool] = [:]
                var valid = true
                for name in Self.scoreKeys {
                    guard let score = object[name] else { continue }
                    switch score {
                    case .bool(let flag): scores[name] = flag
                    case .int(0), .int(1), .double(0), .double(1): scores[name] = score.doubleValue == 1
                    case .null: continue
                    default: valid = false
                    }
                }
                guard valid, !scores.isEmpty else { unusable += 1; continue }
                var hashes: [String: String] = [:]
                for name in Self.hashKeys { if let hash = object[name]?.stringValue { hashes[name] = hash } }
                if records[key] != nil { duplicates += 1; continue }
                records[key] = Record(scores: scores, hashes: hashes)
            }
            if unusable > 0 {
                problems.append(
                    "\(label): lm_eval_samples.\(task): \(unusable) record(s) without a doc_id or without 0/1 scores were skipped")
            }
            if duplicates > 0 {
                problems.append("\(label): lm_eval_samples.\(task): \(duplicates) repeated doc_id(s); the first record of each was used")
            }
            tasks.append((task, records))
        }
    }

    static func docKey(_ value: JSONValue?) -> String? {
        switch value {
        case .int(let number): return String(number)
        case .double(let number) where number.isFinite:
            return number.rounded() == number && abs(number) < 9e15 ? String(Int64(number)) : String(number)
        case .string(let text): return text
        default: return nil
        }
    }

    public func records(for task: String) -> [String: Record]? { tasks.first { $0.name == task }?.records }
}

// MARK: - Comparison

/// `moe-eval compare`: every numeric metric of two or more results files side by side.
/// Deltas are always last file − first file (B − A for two files).
public struct Comparison: Codable, Sendable {
    public struct FileInfo: Codable, Sendable {
        public var label: String
        public var path: String
        public var checkpointDir: String?
        public var evalTimestamp: String?
        public var preset: String?
        /// `moe-eval` or `seed` (written by the original Python scripts).
        public var format: String
        /// The training step named by the checkpoint path (`step-N`), when `compare` resolved it.
        public var step: Int?

        enum CodingKeys: String, CodingKey {
            case label, path, checkpointDir = "checkpoint_dir", evalTimestamp = "eval_timestamp", preset, format, step
        }
    }

    /// Records each file's training step and what resolving folders did (ResultsInputs).
    public mutating func setSteps(_ steps: [Int?], resolutionNotes: [String]) {
        for index in files.indices where index < steps.count { files[index].step = steps[index] }
        notes = resolutionNotes + notes
    }

    public struct MetricRow: Codable, Sendable {
        /// `routing_stats.aggregate`, `routing_stats.layers (mean over layers)`, `routing_stats.layer_<i>`,
        /// `inference_performance`, `computational_cost` or `run`.
        public var section: String
        /// The key, with nested keys joined by `.` and list entries as `[C=1.25]` / `[R=8]`.
        public var metric: String
        /// One per file, in the order given; nil where the file has no value.
        public var values: [Double?]
        /// Text-valued rows (`worst_layer`); nil for numeric rows.
        public var texts: [String?]?
        public var direction: MetricDirection
        public var delta: Double?
        /// delta / |first|; 0 when both are 0, nil when only the first is 0.
        public var relativeDelta: Double?
        public var mark: ChangeMark?
        /// The seed's band per file, for Gini, CV and utilisation.
        public var bands: [SeedBand?]?
        /// |Δ| must exceed this to count as better or worse (NoiseModel); nil when the metric has no noise model,
        /// and then the mark is the plain direction of Δ.
        public var noiseThreshold: Double?
        public var noiseSource: String?

        enum CodingKeys: String, CodingKey {
            case section, metric, values, texts, direction, delta, relativeDelta = "relative_delta", mark, bands
            case noiseThreshold = "noise_threshold", noiseSource = "noise_source"
        }
    }

    public struct AccuracyRow: Codable, Sendable {
        public var task: String
        /// As lm-eval keys it, e.g. `acc_norm,none`.
        public var metric: String
        public var values: [Double?]
        public var standardErrors: [Double?]
        public var direction: MetricDirection
        public var delta: Double?
        /// √(SE_first² + SE_last²), from the files' `*_stderr` keys (independent samples).
        public var deltaStandardError: Double?
        public var ci95: [Double]?
        public var z: Double?
        public var significant: Bool?
        /// better/worse only when significant: the paired test (McNemar exact p < 0.05) where both files have
        /// per-document results for this score, else |z| > 1.96 on the unpaired SE; `same` otherwise.
        public var mark: ChangeMark?
        /// `paired (McNemar)`, `unpaired SE`, or nil when there is no uncertainty (then `mark` is nil).
        public var noiseSource: String?

        enum CodingKeys: String, CodingKey {
            case task, metric, values, standardErrors = "stderrs", direction, delta, deltaStandardError = "delta_stderr"
            case ci95 = "ci95", z, significant, mark, noiseSource = "noise_source"
        }
    }

    public struct PairedRow: Codable, Sendable {
        public var task: String
        /// Which 0/1 score of the records (`correct`, `acc`, `acc_norm`, `exact_match`).
        public var score: String
        public var from: String
        public var to: String
        public var statistics: PairedStatistics
    }

    public struct Summary: Codable, Sendable {
        /// Directional metrics (accuracy included) where the last file is better / worse than the first beyond
        /// noise, or the same within it.
        public var better: Int
        public var worse: Int
        public var same: Int
        /// Of those, the ones judged without a noise model (the plain direction of Δ).
        public var withoutNoiseModel: Int
        /// The side with more metrics better beyond noise, `tie`, or `same within noise` when none differs.
        public var winner: String

        enum CodingKeys: String, CodingKey {
            case better, worse, same, withoutNoiseModel = "without_noise_model", winner
        }
    }

    public var files: [FileInfo]
    public var notes: [String]
    public var metrics: [MetricRow]
    public var accuracy: [AccuracyRow]
    public var paired: [PairedRow]
    /// Routing agreement of file pairs that carry routed expert ids for the same tokens (RoutingAgreement.swift).
    public var agreement: [AgreementRow]
    public var summary: Summary

    public struct Options: Sendable {
        /// Also list every layer's metrics (one row per layer and key).
        public var perLayer: Bool
        public var noise: NoiseModel
        public init(perLayer: Bool = false, noise: NoiseModel = .init()) {
            self.perLayer = perLayer
            self.noise = noise
        }
    }

    public static func label(_ index: Int) -> String {
        index < 26 ? String(UnicodeScalar(UInt8(65 + index))) : "F\(index + 1)"
    }

    // MARK: Building

    public init(_ inputs: [ResultsFile], options: Options = .init()) {
        let labels = inputs.indices.map(Self.label)
        files = zip(inputs, labels).map { file, label in
            FileInfo(
                label: label, path: file.path, checkpointDir: file.checkpointDir, evalTimestamp: file.timestamp,
                preset: file.preset, format: file.isSeedFormat ? "seed" : "moe-eval")
        }
        notes = Self.notes(inputs, labels: labels)
        var table = MetricTable(fileCount: inputs.count)

        // Routing: the aggregate as written, then per-layer keys the aggregate does not summarise, averaged.
        for (index, file) in inputs.enumerated() {
            if let aggregate = file.routingAggregate {
                for (key, value) in Self.leaves(aggregate, textKeys: ["worst_layer"]) {
                    table.set("routing_stats.aggregate", key, index, value)
                }
            }
        }
        let summarised = Set(
            inputs.flatMap { file -> [String] in
                guard let aggregate = file.routingAggregate else { return [] }
                return aggregate.entries.flatMap { key, value -> [String] in
                    value.objectValue != nil ? [key] : key.hasPrefix("avg_") ? [String(key.dropFirst(4))] : []
                }
            })
        for (index, file) in inputs.enumerated() {
            var sums: [(key: String, sum: Double, count: Int)] = []
            for layer in file.routingLayers {
                for (key, value) in Self.leaves(layer.metrics, textKeys: []) {
                    guard let number = value.doubleValue, !Self.layerIdentityKeys.contains(key), !summarised.contains(key) else { continue }
                    if let at = sums.firstIndex(where: { $0.key == key }) {
                        sums[at].sum += number
                        sums[at].count += 1
                    } else {
                        sums.append((key, number, 1))
                    }
                }
            }
            for entry in sums {
                table.set("routing_stats.layers (mean over layers)", entry.key, index, .double(entry.sum / Double(entry.count)))
            }
        }
        if options.perLayer {
            for (index, file) in inputs.enumerated() {
                for layer in file.routingLayers {
                    for (key, value) in Self.leaves(layer.metrics, textKeys: []) where !Self.layerIdentityKeys.contains(key) {
                        table.set("routing_stats.\(layer.name)", key, index, value)
                    }
                }
            }
        }
        for section in ["inference_performance", "computational_cost"] {
            for (index, file) in inputs.enumerated() {
                guard let object = file.section(section) else { continue }
                for (key, value) in Self.leaves(object, textKeys: []) {
                    table.set(section, key, index, value)
                }
            }
        }
        // The seed's scripts summed every parameter into active_params_billions: show it as the total.
        for (index, file) in inputs.enumerated() where file.isSeedFormat {
            guard let cost = file.section("computational_cost"), let total = cost["active_params_billions"]?.doubleValue else { continue }
            table.clear("computational_cost", "active_params_billions", index)
            if cost["total_params_billions"] == nil { table.set("computational_cost", "total_params_billions", index, .double(total)) }
        }
        for (index, file) in inputs.enumerated() {
            if let walltime = file.walltimeSeconds { table.set("run", "walltime_seconds", index, .double(walltime)) }
        }
        metrics = table.rows.map { Self.row(section: $0.section, metric: $0.metric, cells: $0.cells) }
        if let first = inputs.first, let last = inputs.last {
            Self.applyNoise(&metrics, first: first, last: last, model: options.noise)
        }
        accuracy = Self.accuracyRows(inputs)

        var pairs: [(Int, Int)] = inputs.count >= 2 ? (1..<inputs.count).map { ($0 - 1, $0) } : []
        if inputs.count >= 3 { pairs.append((0, inputs.count - 1)) }
        let samples = zip(inputs, labels).map { SampleScores($0, label: $1) }
        notes += samples.flatMap(\.problems)
        var paired: [PairedRow] = []
        for (a, b) in pairs {
            let (rows, pairNotes) = Self.pairedRows(samples[a], samples[b], labels: (labels[a], labels[b]))
            paired += rows
            notes += pairNotes
        }
        self.paired = paired
        if let firstLabel = labels.first, let lastLabel = labels.last {
            Self.judgeAccuracy(&accuracy, paired: paired, first: firstLabel, last: lastLabel)
        }
        let agreementRows = Self.agreementRows(inputs, labels: labels)
        agreement = agreementRows.rows
        notes += agreementRows.notes

        let sections = Dictionary(grouping: metrics, by: \.section).mapValues { Set($0.map(\.metric)) }
        let voting = metrics.filter { Self.votes($0, sectionMetrics: sections[$0.section] ?? []) && $0.mark != nil }
        let judged = voting.compactMap(\.mark) + accuracy.compactMap(\.mark)
        let better = judged.count { $0 == .better }, worse = judged.count { $0 == .worse }
        let first = labels.first ?? "A", last = labels.last ?? "A"
        summary = Summary(
            better: better, worse: worse, same: judged.count { $0 == .same },
            withoutNoiseModel: voting.count { $0.noiseThreshold == nil },
            winner: better > worse ? last : worse > better ? first : better == 0 ? "same within noise" : "tie")
    }

    /// Whether a row is one vote in the summary. Each metric votes once: an aggregate's median/p90/min/max and its
    /// worst layer restate its mean, the mean restates the seed's `avg_<metric>` where the file has both, and
    /// per-layer rows (`--per-layer`) restate the aggregate.
    static func votes(_ row: MetricRow, sectionMetrics: Set<String>) -> Bool {
        if row.section.hasPrefix("routing_stats.layer_") { return false }
        guard row.section == "routing_stats.aggregate", let dot = row.metric.lastIndex(of: ".") else { return true }
        let base = row.metric[..<dot], statistic = row.metric[row.metric.index(after: dot)...]
        switch statistic {
        case "median", "p90", "min", "max": return false
        case "mean": return !sectionMetrics.contains("avg_" + base)
        default: return true
        }
    }

    /// Keys that identify a layer or are fixed by the model shape; averaging them says nothing.
    static let layerIdentityKeys: Set<String> = [
        "layer", "top_k", "num_experts", "ep_degree", "fragile_margin_threshold", "coactivation_lift_uniform_baseline",
        "next_layer", "token_specialization_token_ids",
    ]

    /// Numeric leaves of an object: nested objects as `outer.inner`, lists of objects carrying a
    /// `capacity_factor` or `degree` as `key[C=…]`/`key[R=…]`; number lists (distributions) are not metrics.
    static func leaves(_ object: JSONObject, textKeys: Set<String>, prefix: String = "") -> [(String, JSONValue)] {
        var out: [(String, JSONValue)] = []
        for (key, value) in object.entries {
            let name = prefix + key
            switch value {
            case .int, .double:
                out.append((name, value))
            case .null:
                out.append((name, .null))
            case .string where textKeys.contains(key):
                out.append((name, value))
            case .object(let inner):
                out += leaves(inner, textKeys: textKeys, prefix: name + ".")
            case .array(let items):
                for item in items {
                    guard let entry = item.objectValue else { continue }
                    let tag: String
                    if let factor = entry["capacity_factor"]?.doubleValue {
                        tag = "C=\(formatNumber(factor))"
                    } else if let degree = entry["degree"]?.doubleValue {
                        tag = "R=\(formatNumber(degree))"
                    } else {
                        continue
                    }
                    let fields = JSONObject(entry.entries.filter { $0.key != "capacity_factor" && $0.key != "degree" })
                    out += leaves(fields, textKeys: textKeys, prefix: "\(name)[\(tag)].")
                }
            default:
                continue
            }
        }
        return out
    }

    /// Rows in order of first appearance over the files.
    struct MetricTable {
        let fileCount: Int
        var rows: [(section: String, metric: String, cells: [JSONValue?])] = []
        var index: [String: Int] = [:]

        init(fileCount: Int) { self.fileCount = fileCount }

        mutating func set(_ section: String, _ metric: String, _ file: Int, _ value: JSONValue) {
            let key = section + "\u{0}" + metric
            if index[key] == nil {
                index[key] = rows.count
                rows.append((section, metric, Array(repeating: nil, count: fileCount)))
            }
            rows[index[key]!].cells[file] = value
        }

        mutating func clear(_ section: String, _ metric: String, _ file: Int) {
            if let at = index[section + "\u{0}" + metric] { rows[at].cells[file] = nil }
        }
    }

    /// The metric name that decides direction and band: the first component for summaries
    /// (`max_violation.p90`), the field for list entries (`capacity_drop_rate[C=1.25].drop_rate`).
    public static func baseName(_ metric: String) -> String {
        let parts = metric.split(separator: ".")
        if metric.contains("["), let last = parts.last { return String(last) }
        return String(parts.first ?? Substring(metric))
    }

    static let neutralPatterns = [
        "noise_floor", "uniform_baseline", "threshold", "measured_forward", "cpu_sgemm_peak", "gpu_peak_flops",
        "flops_seq_len", "rank_load", "dropped_assignments",
    ]
    static let lowerPatterns = [
        "gini_coefficient", "coefficient_of_variation", "max_violation", "dead_experts", "overload_factor", "drop_rate",
        "aux_balance_loss", "fragile_token_fraction", "latency",
        "time_to_first_token", "memory_", "weights_gb", "kv_cache_gb", "tflops", "total_flops", "flops_per_token",
        "params_billions", "walltime_seconds",
    ]
    static let higherPatterns = [
        "expert_utilization_rate", "effective_experts", "load_entropy", "min_load_ratio", "throughput",
        "tokens_per_sec", "gflops_per_sec", "mfu", "jain_fairness_index",
    ]

    /// Direction of a results-file metric (docs/METRICS.md, "compare").
    public static func direction(of metric: String) -> MetricDirection {
        let name = baseName(metric)
        if neutralPatterns.contains(where: name.contains) { return .neutral }
        if lowerPatterns.contains(where: name.contains) { return .lowerIsBetter }
        if higherPatterns.contains(where: name.contains) { return .higherIsBetter }
        return .neutral
    }

    /// Direction of an lm-eval metric key (`acc,none`, `word_perplexity,none`).
    public static func accuracyDirection(of metric: String) -> MetricDirection {
        let name = metric.split(separator: ",").first.map(String.init) ?? metric
        if name.contains("perplexity") || name == "bits_per_byte" { return .lowerIsBetter }
        let higher = ["acc", "acc_norm", "exact_match", "em", "f1", "mcc", "bleu", "mc1", "mc2", "pass@1", "rouge1", "rouge2", "rougeL"]
        return higher.contains(name) || name.hasPrefix("acc") ? .higherIsBetter : .neutral
    }

    public static func relativeDelta(from first: Double, to last: Double) -> Double? {
        guard first.isFinite, last.isFinite else { return nil }
        if first == 0 { return last == 0 ? 0 : nil }
        return (last - first) / abs(first)
    }

    public static func mark(from first: Double, to last: Double, direction: MetricDirection) -> ChangeMark? {
        guard direction != .neutral, first.isFinite, last.isFinite else { return nil }
        if abs(last - first) <= 1e-12 * max(abs(first), abs(last)) { return .same }
        return (last < first) == (direction == .lowerIsBetter) ? .better : .worse
    }

    static func row(section: String, metric: String, cells: [JSONValue?]) -> MetricRow {
        let values = cells.map { $0?.doubleValue }
        let texts = cells.contains { $0?.stringValue != nil } ? cells.map { $0?.stringValue } : nil
        let direction = texts == nil ? direction(of: metric) : .neutral
        var row = MetricRow(section: section, metric: metric, values: values, texts: texts, direction: direction)
        if texts == nil, let first = values.first ?? nil, let last = values.last ?? nil {
            row.delta = last - first
            row.relativeDelta = relativeDelta(from: first, to: last)
            row.mark = mark(from: first, to: last, direction: direction)
        }
        let name = baseName(metric)
        let bands = values.map { $0.flatMap { SeedBand.of(metric: name, value: $0) } }
        if bands.contains(where: { $0 != nil }) { row.bands = bands }
        return row
    }

    /// lm-eval's key for a metric's standard error: `acc,none` → `acc_stderr,none`.
    public static func standardErrorKey(_ metric: String) -> String {
        guard let comma = metric.firstIndex(of: ",") else { return metric + "_stderr" }
        return metric[..<comma] + "_stderr" + metric[comma...]
    }

    static func accuracyRows(_ inputs: [ResultsFile]) -> [AccuracyRow] {
        var tasks: [String] = []
        for file in inputs {
            for (task, value) in file.section("lm_eval_results")?.entries ?? [] where value.objectValue != nil && !tasks.contains(task) {
                tasks.append(task)
            }
        }
        var rows: [AccuracyRow] = []
        for task in tasks {
            let results = inputs.map { $0.section("lm_eval_results")?[task]?.objectValue }
            var metrics: [String] = []
            for object in results.compactMap({ $0 }) {
                for (key, value) in object.entries where value.doubleValue != nil && !key.contains("_stderr") && !metrics.contains(key) {
                    metrics.append(key)
                }
            }
            for metric in metrics {
                let values = results.map { $0?[metric]?.doubleValue }
                let errors = results.map { $0?[standardErrorKey(metric)]?.doubleValue }
                let direction = accuracyDirection(of: metric)
                var row = AccuracyRow(task: task, metric: metric, values: values, standardErrors: errors, direction: direction)
                if let first = values.first ?? nil, let last = values.last ?? nil {
                    let delta = last - first
                    row.delta = delta
                    row.mark = mark(from: first, to: last, direction: direction)
                    if let a = errors.first ?? nil, let b = errors.last ?? nil, a.isFinite, b.isFinite {
                        let error = (a * a + b * b).squareRoot()
                        row.deltaStandardError = error
                        row.ci95 = [delta - 1.959963984540054 * error, delta + 1.959963984540054 * error]
                        if error > 0 {
                            row.z = delta / error
                            row.significant = abs(delta / error) > 1.959963984540054
                        }
                    }
                }
                rows.append(row)
            }
        }
        return rows
    }

    static func pairedRows(_ a: SampleScores, _ b: SampleScores, labels: (String, String)) -> ([PairedRow], [String]) {
        var rows: [PairedRow] = [], notes: [String] = []
        for (task, recordsA) in a.tasks {
            guard let recordsB = b.records(for: task) else { continue }
            var common: [(key: String, a: SampleScores.Record, b: SampleScores.Record)] = []
            var mismatched = 0
            for (key, recordA) in recordsA {
                guard let recordB = recordsB[key] else { continue }
                let disagree = SampleScores.hashKeys.contains { name in
                    if let x = recordA.hashes[name], let y = recordB.hashes[name] { return x != y }
                    return false
                }
                if disagree { mismatched += 1 } else { common.append((key, recordA, recordB)) }
            }
            let onlyA = recordsA.count - common.count - mismatched, onlyB = recordsB.count - common.count - mismatched
            if mismatched > 0 {
                notes.append(
                    "\(task): \(mismatched) doc_id(s) have different doc/prompt/target hashes in \(labels.0) and \(labels.1) (not the same question); left out of the pairing"
                )
            }
            if onlyA > 0 || onlyB > 0 {
                notes.append(
                    "\(task): paired on the \(common.count) documents \(labels.0) and \(labels.1) share (\(labels.0) has \(onlyA) more, \(labels.1) \(onlyB) more)"
                )
            }
            for score in SampleScores.scoreKeys {
                let pairs = common.compactMap { entry -> (a: Bool, b: Bool)? in
                    guard let x = entry.a.scores[score], let y = entry.b.scores[score] else { return nil }
                    return (x, y)
                }
                guard !pairs.isEmpty else { continue }
                rows.append(PairedRow(task: task, score: score, from: labels.0, to: labels.1, statistics: PairedStatistics(pairs: pairs)))
            }
        }
        return (rows, notes)
    }

    static func notes(_ inputs: [ResultsFile], labels: [String]) -> [String] {
        var notes: [String] = []
        for section in ResultsFile.metricSections {
            let missing = inputs.indices.filter { inputs[$0].section(section) == nil }
            if missing.count == inputs.count {
                notes.append("no file has \(section)")
            } else {
                for index in missing { notes.append("\(labels[index]) has no \(section)") }
            }
        }
        for (index, file) in inputs.enumerated() where file.section("routing_stats") != nil && file.routingAggregate == nil {
            notes.append("\(labels[index]) has routing_stats without an aggregate")
        }
        for (index, file) in inputs.enumerated() where file.isSeedFormat {
            var note = "\(labels[index]) was written by the seed's scripts (no moe_eval record)"
            if let total = file.section("computational_cost")?["active_params_billions"]?.doubleValue {
                note +=
                    "; its active_params_billions (\(formatNumber(total))) is really the total parameter count (the seed summed every parameter), so it is shown as total_params_billions and its active count is unknown"
            }
            notes.append(note)
        }
        let presets = inputs.map { $0.preset }
        if Set(presets.compactMap { $0 }).count > 1 {
            let list = zip(labels, presets).map { "\($0) \($1 ?? "?")" }.joined(separator: ", ")
            notes.append(
                "presets differ (\(list)): routing saw different token counts, so noise floors differ; compare the noise-corrected and normalised values"
            )
        }
        let inputsKinds = inputs.map { $0.runRecord?["routing_input"]?.objectValue?["kind"]?.stringValue }
        if Set(inputsKinds.compactMap { $0 }).count > 1 {
            let list = zip(labels, inputsKinds).map { "\($0) \($1 ?? "?")" }.joined(separator: ", ")
            notes.append("routing input differs (\(list)): random token ids and real text route differently")
        }
        let shapes = inputs.map { file -> String? in
            guard let moe = file.root["model_args"]?.objectValue?["moe_args"]?.objectValue,
                let experts = moe["num_experts"]?.doubleValue, let topK = moe["top_k"]?.doubleValue
            else { return nil }
            return "\(formatNumber(experts)) experts top-\(formatNumber(topK))"
        }
        if Set(shapes.compactMap { $0 }).count > 1 {
            let list = zip(labels, shapes).map { "\($0) \($1 ?? "?")" }.joined(separator: ", ")
            notes.append("router shapes differ (\(list)): raw Gini, CV and MaxVio depend on E and k; compare the normalised values")
        }
        return notes
    }

    // MARK: Output

    /// Non-finite values (a seed file's NaN) as the strings results files use.
    public func jsonData() throws -> Data { Data(try JSONValueEncoder().encode(self).prettyPrinted.utf8) }

    public func text() -> String {
        var out = "moe-eval compare: deltas are \(files.count == 2 ? "B − A" : "\(files.last?.label ?? "") − A (last − first)")\n"
        for file in files {
            var details = [file.format == "seed" ? "seed format" : "moe-eval"]
            if let step = file.step { details.insert("step \(step)", at: 0) }
            if let preset = file.preset { details.append("preset \(preset)") }
            if let timestamp = file.evalTimestamp { details.append(timestamp) }
            if let checkpoint = file.checkpointDir { details.append("checkpoint \(checkpoint)") }
            out += "  \(file.label): \(file.path) (\(details.joined(separator: ", ")))\n"
        }
        if !notes.isEmpty {
            out += "\nNotes:\n" + notes.map { "  - \($0)\n" }.joined()
        }
        let labels = files.map(\.label)
        let two = files.count == 2
        var section = ""
        var table: [[String]] = []
        func flush() {
            guard !table.isEmpty else { return }
            // The band column only where some metric of the section has one.
            if let last = table.first?.last, last == "band", !table.dropFirst().contains(where: { !($0.last ?? "").isEmpty }) {
                table = table.map { Array($0.dropLast()) }
            }
            out += "\n\(section)\n" + Self.layout(table)
            table = []
        }
        let header = ["metric"] + labels + [two ? "Δ (B−A)" : "Δ (last−first)", "rel", "noise ±", "\(labels.last ?? "") vs A", "band"]
        for row in metrics {
            if row.section != section {
                flush()
                section = row.section
                table = [header]
            }
            let cells: [String]
            if let texts = row.texts {
                cells = texts.map { $0 ?? "—" }
            } else {
                cells = row.values.map { $0.map { Self.formatNumber($0) } ?? "—" }
            }
            let delta = row.delta.map { Self.formatNumber($0, signed: true) } ?? ""
            let relative = row.delta == nil ? "" : row.relativeDelta.map { String(format: "%+.1f%%", $0 * 100) } ?? "n/a"
            let mark = row.mark.map { $0.rawValue + (row.noiseThreshold == nil ? "?" : "") } ?? ""
            let noise = row.noiseThreshold.map { Self.formatNumber($0) } ?? ""
            let band = row.bands.map { $0.map { $0?.rawValue ?? "—" }.joined(separator: " → ") } ?? ""
            table.append([row.metric] + cells + [delta, relative, noise, mark, band])
        }
        flush()

        if !accuracy.isEmpty {
            table = [["task", "metric"] + labels + [two ? "Δ (B−A) ± SE" : "Δ (last−first) ± SE", "95% CI", "z", "mark"]]
            for row in accuracy {
                let cells = zip(row.values, row.standardErrors).map { value, error -> String in
                    guard let value else { return "—" }
                    return error.map { "\(Self.formatNumber(value)) ± \(Self.formatNumber($0))" } ?? Self.formatNumber(value)
                }
                var delta = row.delta.map { Self.formatNumber($0, signed: true) } ?? ""
                if let error = row.deltaStandardError { delta += " ± \(Self.formatNumber(error))" }
                let interval = row.ci95.map { "[\(Self.formatNumber($0[0])), \(Self.formatNumber($0[1]))]" } ?? ""
                let z = row.z.map { String(format: "%+.2f", $0) + (row.significant == true ? " *" : "") } ?? ""
                let judged = row.noiseSource?.hasPrefix("paired") == true ? " (paired)" : ""
                table.append([row.task, row.metric] + cells + [delta, interval, z, (row.mark?.rawValue ?? "") + judged])
            }
            section =
                "lm_eval_results (SE_Δ = √(SE_A² + SE_B²), independent samples; * = |z| > 1.96; marks use the paired test where per-document results exist)"
            flush()
        }
        if !paired.isEmpty {
            table = [["task", "score", "pair", "n", "acc", "Δ ± SE (paired)", "SE unpaired", "b / c", "McNemar p", "MDE (80%, α .05)"]]
            for row in paired {
                let s = row.statistics
                let delta = Self.formatNumber(s.delta, signed: true) + (s.deltaStandardError.map { " ± \(Self.formatNumber($0))" } ?? "")
                table.append([
                    row.task, row.score, "\(row.from) → \(row.to)", String(s.documents),
                    "\(Self.formatNumber(s.accuracyA)) → \(Self.formatNumber(s.accuracyB))", delta,
                    s.unpairedStandardError.map { Self.formatNumber($0) } ?? "", "\(s.onlyACorrect) / \(s.onlyBCorrect)",
                    Self.formatNumber(s.mcnemarExactP), s.minimumDetectableEffect.map { Self.formatNumber($0) } ?? "",
                ])
            }
            section = "paired per-document results (lm_eval_samples; b = only the first right, c = only the second right)"
            flush()
        }
        out += agreementText()
        let verdict =
            summary.winner == "tie" || summary.winner == "same within noise" ? summary.winner : "\(summary.winner) wins more metrics"
        out +=
            "\nA metric is better or worse only when |Δ| exceeds its noise threshold (\"noise ±\": 1.96·√(s_A² + s_B²), docs/METRICS.md); "
        out += "within it, \"same\". A \"?\" marks a metric without a noise model, judged by the sign of Δ alone.\n"
        out +=
            "Summary (\(labels.last ?? "") vs A, directional metrics and accuracy): better \(summary.better), worse \(summary.worse), same within noise \(summary.same)"
        if summary.withoutNoiseModel > 0 { out += " (\(summary.withoutNoiseModel) without a noise model)" }
        out += " → \(verdict)\n"
        return out
    }

    /// Columns padded to a common width; the first column left-aligned, the rest right-aligned.
    public static func layout(_ rows: [[String]]) -> String {
        let columns = rows.map(\.count).max() ?? 0
        var widths = [Int](repeating: 0, count: columns)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        var out = ""
        for row in rows {
            var line = "  "
            for (i, cell) in row.enumerated() {
                let pad = String(repeating: " ", count: widths[i] - cell.count)
                line += i == 0 ? cell + pad : "  " + pad + cell
            }
            while line.hasSuffix(" ") { line.removeLast() }
            out += line + "\n"
        }
        return out
    }

    /// Six significant digits; integers in full.
    public static func formatNumber(_ value: Double, signed: Bool = false) -> String {
        if value.isNaN { return "nan" }
        if value.isInfinite { return value > 0 ? (signed ? "+inf" : "inf") : "-inf" }
        let sign = signed && value >= 0 ? "+" : ""
        if value.rounded() == value && abs(value) < 1e15 { return sign + String(format: "%.0f", value) }
        return sign + String(format: "%.6g", value)
    }
}
