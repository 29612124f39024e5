import Foundation
import MoEJSON
import MoEModels

/// The results file: exactly the seed's top-level keys (`eval_moe_model.py`), with moe-eval's additions
/// under keys of their own so that tools written for the seed's files keep working.
public struct EvaluationResults: Encodable {
    public static let seedKeys = [
        "routing_stats", "inference_performance", "computational_cost", "lm_eval_results", "walltime_seconds",
        "checkpoint_dir", "config", "model_args", "eval_timestamp", "output_file",
    ]

    public var routingStats: RoutingStatistics?
    public var inference: InferenceBenchmark.Result?
    public var cost: ComputationalCost?
    /// Task → metric → value, keyed as lm-eval reports (`"acc,none"`).
    public var lmEvalResults: [String: [String: Double]] = [:]
    public var walltimeSeconds: Double = 0
    public var checkpointDir: String
    /// The train config as the results file shows it (`{}` without one).
    public var config: JSONValue?
    /// The family's own model args (DeepSeek-V3's, Qwen3's, gpt-oss's field names).
    public var modelArgs: any ModelArguments
    public var timestamp: String
    public var outputFile: String
    /// moe-eval's own record of how the run was made (`moe_eval`).
    public var run: RunRecord
    /// Per-document results (`--log-samples`), task → records, for paired comparison.
    public var lmEvalSamples: [String: [NativeTasks.Sample]]?
    /// Benchmark tasks that could not run, task → reason (written as `lm_eval_errors` when there are any).
    public var lmEvalErrors: [String: String] = [:]
    /// The experts routed for a fixed token set (agreement between checkpoints; `routed_experts`).
    public var routedExperts: RoutedExperts?
    /// Per-task expert loads (`task_routing`).
    public var taskRouting: TaskRouting?

    public init(checkpointDir: String, modelArgs: any ModelArguments, timestamp: String, outputFile: String, run: RunRecord) {
        self.checkpointDir = checkpointDir
        self.modelArgs = modelArgs
        self.timestamp = timestamp
        self.outputFile = outputFile
        self.run = run
    }

    /// `YYYYMMDD_HHMMSS` in local time, as the seed names its files.
    public static func timestamp(for date: Date = Date()) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.dateFormat = "yyyyMMdd_HHmmss"
        return formatter.string(from: date)
    }

    enum CodingKeys: String, CodingKey {
        case routingStats = "routing_stats", inference = "inference_performance", cost = "computational_cost"
        case lmEvalResults = "lm_eval_results", walltimeSeconds = "walltime_seconds", checkpointDir = "checkpoint_dir"
        case config, modelArgs = "model_args", timestamp = "eval_timestamp", outputFile = "output_file"
        case run = "moe_eval", lmEvalSamples = "lm_eval_samples", lmEvalErrors = "lm_eval_errors"
        case routedExperts = "routed_experts", taskRouting = "task_routing"
    }

    /// A step that did not run is written as the seed writes it: `{}`, or for inference its four keys as null.
    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        if let routingStats {
            try container.encode(routingStats, forKey: .routingStats)
        } else {
            try container.encode(EmptyObject(), forKey: .routingStats)
        }
        if let inference {
            try container.encode(inference, forKey: .inference)
        } else {
            try container.encode(InferenceNotRun(), forKey: .inference)
        }
        if let cost {
            try container.encode(CostRecord(cost: cost), forKey: .cost)
        } else {
            try container.encode(EmptyObject(), forKey: .cost)
        }
        try container.encode(lmEvalResults, forKey: .lmEvalResults)
        try container.encode(walltimeSeconds, forKey: .walltimeSeconds)
        try container.encode(checkpointDir, forKey: .checkpointDir)
        try container.encode(config ?? .object([:]), forKey: .config)
        try container.encode(modelArgs, forKey: .modelArgs)
        try container.encode(timestamp, forKey: .timestamp)
        try container.encode(outputFile, forKey: .outputFile)
        try container.encode(run, forKey: .run)
        try container.encodeIfPresent(lmEvalSamples, forKey: .lmEvalSamples)
        if !lmEvalErrors.isEmpty { try container.encode(lmEvalErrors, forKey: .lmEvalErrors) }
        try container.encodeIfPresent(routedExperts, forKey: .routedExperts)
        try container.encodeIfPresent(taskRouting, forKey: .taskRouting)
    }

    /// Pretty, key-sorted JSON: the same inputs give byte-identical files apart from timings.
    public func jsonData() throws -> Data { try ResultsJSON.encode(self) }

    struct EmptyObject: Encodable {}

    /// The seed's four `inference_performance` keys, null, as its script writes them when no inference ran
    /// (the `30s` preset, `--lm-eval-only`).
    struct InferenceNotRun: Encodable {
        enum CodingKeys: String, CodingKey {
            case latencyMs = "latency_ms", throughput = "throughput_tokens_per_sec"
            case allocated = "memory_allocated_gb", reserved = "memory_reserved_gb"
        }
        func encode(to encoder: Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            for key in [CodingKeys.latencyMs, .throughput, .allocated, .reserved] { try container.encodeNil(forKey: key) }
        }
    }

    /// The seed writes null for the GPU peak on CPU, where an encoder would leave the key out.
    struct CostRecord: Encodable {
        let cost: ComputationalCost
        func encode(to encoder: Encoder) throws {
            try cost.encode(to: encoder)
            if cost.gpuPeakFlops == nil {
                var container = encoder.container(keyedBy: ComputationalCost.CodingKeys.self)
                try container.encodeNil(forKey: .gpuPeakFlops)
            }
        }
    }
}

/// `moe_eval`: how the run was made (preset, seed, inputs, numerics, timings) and what moe-eval adds to the
/// seed's sections.
public struct RunRecord: Encodable {
    public var preset: String
    public var seed: UInt64
    public var threads: Int
    public var modelArgsOrigin: String
    public var loadSeconds: Double
    public var numerics: NumericsRecord
    public var keyNaming: String
    /// The model family evaluated (TorchTitan module name).
    public var family: String?
    /// Precision of the matrix products (`--compute`) and what decided it.
    public var compute: ComputeRecord?
    public var tool = "moe-eval"
    public var routingInput: RoutingInputRecord?
    public var routingWarnings: [String]?
    public var lmEval: LMEvalRecord
    public var expertParallel: ExpertParallelReport?
    public var phaseSeconds: PhaseSeconds?
    /// Sections other steps add (per-task routing loads, routed expert ids…): a record type of their own under
    /// its own key of `moe_eval`. Keys this record already writes are not replaced.
    public var extraSections: [String: any Encodable] = [:]

    public init(
        preset: String, seed: UInt64, threads: Int, modelArgsOrigin: String, loadSeconds: Double,
        numerics: NumericsRecord, keyNaming: String, lmEval: LMEvalRecord
    ) {
        self.preset = preset; self.seed = seed; self.threads = threads; self.modelArgsOrigin = modelArgsOrigin
        self.loadSeconds = loadSeconds; self.numerics = numerics; self.keyNaming = keyNaming; self.lmEval = lmEval
    }

    public struct NumericsRecord: Encodable, Equatable {
        public var yarn: Bool
        public var finalNormEps: Double
        public var origin: String
        public init(yarn: Bool, finalNormEps: Double, origin: String) {
            self.yarn = yarn; self.finalNormEps = finalNormEps; self.origin = origin
        }
        enum CodingKeys: String, CodingKey { case yarn, finalNormEps = "final_norm_eps", origin }
    }

    public struct RoutingInputRecord: Encodable, Equatable {
        public var kind: String
        public var source: String
        public var samples: Int
        public var seqLen: Int
        public var textTokens: Int
        public var windowsOverlap: Bool
        public var tokensPerSecond: Double
        enum CodingKeys: String, CodingKey {
            case kind, source, samples, seqLen = "seq_len", textTokens = "text_tokens", windowsOverlap = "windows_overlap"
            case tokensPerSecond = "tokens_per_second"
        }
    }

    public struct ComputeRecord: Encodable, Equatable {
        /// `fp32` or `bf16`.
        public var precision: String
        public var reason: String
        public init(precision: String, reason: String) { self.precision = precision; self.reason = reason }
    }

    public struct PhaseSeconds: Encodable, Equatable {
        public var routing: Double
        public var load: Double
    }

    enum CodingKeys: String, CodingKey {
        case preset, seed, threads, modelArgsOrigin = "model_args_origin", loadSeconds = "load_seconds", numerics
        case keyNaming = "key_naming", family, compute, tool, routingInput = "routing_input", routingWarnings = "routing_warnings"
        case lmEval = "lm_eval", expertParallel = "expert_parallel", phaseSeconds = "phase_seconds"
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(preset, forKey: .preset)
        try container.encode(seed, forKey: .seed)
        try container.encode(threads, forKey: .threads)
        try container.encode(modelArgsOrigin, forKey: .modelArgsOrigin)
        try container.encode(loadSeconds, forKey: .loadSeconds)
        try container.encode(numerics, forKey: .numerics)
        try container.encode(keyNaming, forKey: .keyNaming)
        try container.encodeIfPresent(family, forKey: .family)
        try container.encodeIfPresent(compute, forKey: .compute)
        try container.encode(tool, forKey: .tool)
        try container.encodeIfPresent(routingInput, forKey: .routingInput)
        try container.encodeIfPresent(routingWarnings.flatMap { $0.isEmpty ? nil : $0 }, forKey: .routingWarnings)
        try container.encode(lmEval, forKey: .lmEval)
        try container.encodeIfPresent(expertParallel, forKey: .expertParallel)
        try container.encodeIfPresent(phaseSeconds, forKey: .phaseSeconds)
        var extra = encoder.container(keyedBy: SectionKey.self)
        for (key, value) in extraSections where CodingKeys(rawValue: key) == nil {
            try extra.encode(AnyEncodable(value: value), forKey: SectionKey(key))
        }
    }
}

/// `moe_eval.lm_eval`: whether the benchmark tasks ran, and how.
public struct LMEvalRecord: Encodable, Equatable {
    public enum Status: String, Encodable, Sendable { case skipped, ran, ranWithErrors = "ran with errors", failed }
    public var status: Status
    public var reason: String?
    public var tasks: [String]?
    /// What a finished run used (`ran`, `ran with errors`); nil otherwise.
    public var run: Details?

    public struct Details: Equatable {
        public var limit: Int?
        public var numFewshot: [String: Int]
        public var maxLength: Int
        public var dataDir: String?
        public var requests: Int
        public var scoringSeconds: Double
        public var tokenization: String
    }

    public static func skipped(_ reason: String) -> LMEvalRecord { LMEvalRecord(status: .skipped, reason: reason) }
    public static func failed(tasks: [String], reason: String) -> LMEvalRecord {
        LMEvalRecord(status: .failed, reason: reason, tasks: tasks)
    }

    enum CodingKeys: String, CodingKey {
        case status, reason, tasks, limit, numFewshot = "num_fewshot", maxLength = "max_length", dataDir = "data_dir"
        case requests, scoringSeconds = "scoring_seconds", tokenization
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(status, forKey: .status)
        try container.encodeIfPresent(reason, forKey: .reason)
        try container.encodeIfPresent(tasks, forKey: .tasks)
        guard let run else { return }
        // A finished run states its limit and data folder even when there were none (null).
        if let limit = run.limit { try container.encode(limit, forKey: .limit) } else { try container.encodeNil(forKey: .limit) }
        if let dataDir = run.dataDir { try container.encode(dataDir, forKey: .dataDir) } else { try container.encodeNil(forKey: .dataDir) }
        try container.encode(run.numFewshot, forKey: .numFewshot)
        try container.encode(run.maxLength, forKey: .maxLength)
        try container.encode(run.requests, forKey: .requests)
        try container.encode(run.scoringSeconds, forKey: .scoringSeconds)
        try container.encode(run.tokenization, forKey: .tokenization)
    }
}

struct AnyEncodable: Encodable {
    let value: any Encodable
    func encode(to encoder: Encoder) throws { try value.encode(to: encoder) }
}

/// A key chosen at run time (sections added by other steps).
struct SectionKey: CodingKey {
    let stringValue: String
    var intValue: Int? { nil }
    init(_ string: String) { stringValue = string }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// The one way result records become JSON text (MoEJSON's encoder): keys sorted at every level, so the same
/// inputs give byte-identical files apart from timings; non-finite numbers as the strings "nan", "inf", "-inf"
/// (strict JSON has no literal for them), as results files have always stored them.
public enum ResultsJSON {
    public static func encode<T: Encodable>(_ value: T, pretty: Bool = true) throws -> Data {
        let tree = sortingKeys(try JSONValueEncoder(nonFiniteDoubles: .strings).encode(value))
        return Data((pretty ? tree.prettyPrinted : tree.serialized).utf8)
    }

    static func sortingKeys(_ value: JSONValue) -> JSONValue {
        switch value {
        case .object(let object):
            return .object(JSONObject(object.entries.sorted { $0.key < $1.key }.map { (key: $0.key, value: sortingKeys($0.value)) }))
        case .array(let items):
            return .array(items.map(sortingKeys))
        default:
            return value
        }
    }
}
