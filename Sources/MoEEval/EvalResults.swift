import Foundation
import MoEModels

/// The results file: exactly the seed's top-level keys (`eval_moe_model.py`), with moe-eval's additions
/// under keys of their own so that tools written for the seed's files keep working.
public struct EvalResults {
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
    public var configJSON: Data?
    public var modelArgs: any ModelArguments
    public var timestamp: String
    public var outputFile: String
    /// moe-eval's own record of how the run was made (preset, seed, inputs, numerics, timings).
    public var run: [String: Any] = [:]
    /// Per-document results (`--log-samples`), task → records, for paired comparison.
    public var lmEvalSamples: Any?
    /// Benchmark tasks that could not run, task → reason (written as `lm_eval_errors` when there are any).
    public var lmEvalErrors: [String: String] = [:]

    public init(checkpointDir: String, modelArgs: any ModelArguments, timestamp: String, outputFile: String) {
        self.checkpointDir = checkpointDir
        self.modelArgs = modelArgs
        self.timestamp = timestamp
        self.outputFile = outputFile
    }

    /// `YYYYMMDD_HHMMSS` in local time, as the seed names its files.
    public static func timestamp(for date: Date = Date()) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.dateFormat = "yyyyMMdd_HHmmss"
        return formatter.string(from: date)
    }

    /// The seed's four `inference_performance` keys, null, as its script writes them when no inference ran
    /// (the `30s` preset, `--lm-eval-only`).
    public static var inferenceNotRun: [String: Any] { [
        "latency_ms": NSNull(), "throughput_tokens_per_sec": NSNull(), "memory_allocated_gb": NSNull(), "memory_reserved_gb": NSNull(),
    ] }

    public static func object<T: Encodable>(_ value: T) throws -> Any {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return try JSONSerialization.jsonObject(with: encoder.encode(value), options: [.fragmentsAllowed])
    }

    /// Pretty, key-sorted JSON: the same inputs give byte-identical files apart from timings.
    public func jsonData() throws -> Data {
        var top: [String: Any] = [
            "routing_stats": try routingStats.map { try Self.object($0) } ?? [:],
            "inference_performance": try inference.map { try Self.object($0) } ?? Self.inferenceNotRun,
            "computational_cost": try cost.map { try Self.object($0) } ?? [:],
            "lm_eval_results": lmEvalResults,
            "walltime_seconds": walltimeSeconds,
            "checkpoint_dir": checkpointDir,
            "config": configJSON.flatMap { try? JSONSerialization.jsonObject(with: $0) } ?? [:],
            "model_args": try Self.object(modelArgs),
            "eval_timestamp": timestamp,
            "output_file": outputFile,
        ]
        // The seed writes null for the GPU peak on CPU; JSONEncoder would leave the key out.
        if var cost = top["computational_cost"] as? [String: Any], self.cost != nil, cost["gpu_peak_flops"] == nil {
            cost["gpu_peak_flops"] = NSNull()
            top["computational_cost"] = cost
        }
        top["moe_eval"] = run
        if let lmEvalSamples { top["lm_eval_samples"] = lmEvalSamples }
        if !lmEvalErrors.isEmpty { top["lm_eval_errors"] = lmEvalErrors }
        return try JSONSerialization.data(withJSONObject: top, options: [.prettyPrinted, .sortedKeys])
    }
}
