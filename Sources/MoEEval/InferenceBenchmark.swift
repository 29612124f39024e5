import Foundation
import MoECore
import MoEModels
import MoETensor

/// Timed generation with a KV cache: prefill of the prompts, then greedy decoding of `newTokens` tokens,
/// repeated `iterations` times after `warmup` untimed runs.
public struct InferenceBenchmark {
    /// The seed script's three prompts.
    public static let seedPrompts = [
        "The future of artificial intelligence is",
        "In the field of quantum computing,",
        "Machine learning models have revolutionized",
    ]

    public struct Result: Codable, Sendable {
        /// Mean wall time of one iteration (prefill + all decode steps), as the seed's `latency_ms`.
        public var latencyMs: Double
        /// Generated tokens per second over the timed iterations, as the seed's `throughput_tokens_per_sec`.
        public var throughputTokensPerSec: Double
        /// Live tensor bytes: weights in memory plus the KV cache (GB = 1e9 bytes, as the seed).
        public var memoryAllocatedGB: Double
        /// Peak resident set size of the process.
        public var memoryReservedGB: Double
        public var weightsGB: Double
        public var kvCacheGB: Double
        public var batchSize: Int
        public var promptTokens: Int
        public var newTokens: Int
        public var iterations: Int
        public var warmupIterations: Int
        public var prefillLatencyMsP50: Double
        public var prefillLatencyMsP95: Double
        public var prefillTokensPerSec: Double
        public var timeToFirstTokenMsP50: Double
        public var decodeLatencyMsPerTokenP50: Double
        public var decodeLatencyMsPerTokenP95: Double
        public var decodeTokensPerSec: Double
        public var sampling: String

        enum CodingKeys: String, CodingKey {
            case latencyMs = "latency_ms", throughputTokensPerSec = "throughput_tokens_per_sec"
            case memoryAllocatedGB = "memory_allocated_gb", memoryReservedGB = "memory_reserved_gb"
            case weightsGB = "weights_gb", kvCacheGB = "kv_cache_gb", batchSize = "batch_size"
            case promptTokens = "prompt_tokens", newTokens = "new_tokens", iterations, warmupIterations = "warmup_iterations"
            case prefillLatencyMsP50 = "prefill_latency_ms_p50", prefillLatencyMsP95 = "prefill_latency_ms_p95"
            case prefillTokensPerSec = "prefill_tokens_per_sec", timeToFirstTokenMsP50 = "time_to_first_token_ms_p50"
            case decodeLatencyMsPerTokenP50 = "decode_latency_ms_per_token_p50"
            case decodeLatencyMsPerTokenP95 = "decode_latency_ms_per_token_p95"
            case decodeTokensPerSec = "decode_tokens_per_sec", sampling
        }
    }

    /// Runs the benchmark on `prompts` (token ids, truncated to a common length so the batch needs no padding).
    public static func run(
        model: any CausalLanguageModel, prompts: [[Int32]], newTokens: Int, iterations: Int, warmup: Int,
        weightBytes: Int, progress: ((String) -> Void)? = nil
    ) throws -> Result {
        let promptLength = max(1, prompts.map(\.count).min() ?? 1)
        let batch = prompts.count
        let tokens = prompts.flatMap { $0.prefix(promptLength) }
        let cache = KVCache(model: model, batch: batch, capacity: promptLength + newTokens)
        var prefillTimes: [Double] = [], firstTokenTimes: [Double] = [], stepTimes: [Double] = [], iterationTimes: [Double] = []
        for iteration in 0..<(warmup + iterations) {
            let timed = iteration >= warmup
            progress?(timed ? "inference iteration \(iteration - warmup + 1)/\(iterations)" : "warm-up \(iteration + 1)/\(warmup)")
            cache.reset()
            let start = DispatchTime.now().uptimeNanoseconds
            var logits = try model.forward(tokens: tokens, batch: batch, seqLen: promptLength, cache: cache, logits: .last)
            var next = argmax(logits)
            let prefillEnd = DispatchTime.now().uptimeNanoseconds
            var last = prefillEnd
            for _ in 1..<max(newTokens, 1) {
                logits = try model.forward(tokens: next, batch: batch, seqLen: 1, cache: cache, logits: .last)
                next = argmax(logits)
                let now = DispatchTime.now().uptimeNanoseconds
                if timed { stepTimes.append(Double(now - last) / 1e6) }
                last = now
            }
            if timed {
                prefillTimes.append(Double(prefillEnd - start) / 1e6)
                firstTokenTimes.append(Double(prefillEnd - start) / 1e6)
                iterationTimes.append(Double(last - start) / 1e6)
            }
        }
        let totalMs = iterationTimes.reduce(0, +)
        let generated = Double(iterations * newTokens * batch)
        let decodeMs = stepTimes.reduce(0, +)
        return Result(
            latencyMs: iterationTimes.isEmpty ? 0 : totalMs / Double(iterationTimes.count),
            throughputTokensPerSec: totalMs > 0 ? generated / (totalMs / 1000) : 0,
            memoryAllocatedGB: Double(weightBytes + cache.byteCount) / 1e9,
            memoryReservedGB: Double(ProcessMemory.peakResidentBytes()) / 1e9,
            weightsGB: Double(weightBytes) / 1e9,
            kvCacheGB: Double(cache.byteCount) / 1e9,
            batchSize: batch, promptTokens: promptLength, newTokens: newTokens, iterations: iterations,
            warmupIterations: warmup,
            prefillLatencyMsP50: percentile(prefillTimes, 0.5),
            prefillLatencyMsP95: percentile(prefillTimes, 0.95),
            prefillTokensPerSec: prefillTimes.isEmpty
                ? 0 : Double(batch * promptLength) / (prefillTimes.reduce(0, +) / Double(prefillTimes.count) / 1000),
            timeToFirstTokenMsP50: percentile(firstTokenTimes, 0.5),
            decodeLatencyMsPerTokenP50: percentile(stepTimes, 0.5),
            decodeLatencyMsPerTokenP95: percentile(stepTimes, 0.95),
            decodeTokensPerSec: decodeMs > 0 ? Double(stepTimes.count * batch) / (decodeMs / 1000) : 0,
            sampling: "greedy (argmax); the seed sampled at temperature 0.7, top-k 50")
    }

    static func argmax(_ logits: Tensor) -> [Int32] {
        (0..<logits.rows).map { r in
            let row = logits.row(r)
            var best = 0
            for v in 1..<logits.lastDim where row[v] > row[best] { best = v }
            return Int32(best)
        }
    }
}
