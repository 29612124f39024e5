import Foundation
import MoECore
import MoEModels
import MoETensor

/// What `moe-eval bench` measures and on which shapes.
public struct SpeedBenchmarkOptions: Sendable {
    public var batch = 4
    public var seqLen = 512
    /// Tokens decoded one by one (batch 1) after a prompt of 16; 0: no decode timing.
    public var decodeTokens = 32
    /// Timed repetitions (median reported) after one warm-up.
    public var iterations = 3
    /// Benchmark the model args' shapes with random weights instead of loading the checkpoint.
    public var randomWeights = false
    /// With random weights: this many layers instead of the args' own.
    public var layers: Int?
    public var randomWeightDType: DType = .bfloat16
    public var skipRouting = false
    /// `--ep`: the expert-parallel degree asked for.
    public var expertParallelDegree: Int?

    public init() {}
}

/// `moe-eval bench --json`: one flat object (docs/PERFORMANCE.md names the keys).
public struct SpeedBenchmarkResult: Encodable {
    public var prefillTokensPerSecond: Double
    public var decodeTokensPerSecond: Double
    public var routingAnalysisTokensPerSecond: Double
    public var sgemmPeakGflopsPerSecond: Double
    public var prefillMFU: Double
    public var loadSeconds: Double
    public var peakResidentBytes: Int
    public var prefillGflopsPerSecond: Double
    public var weightBytes: Int
    public var residentBytesAfterDecode: Int
    public var decodeKVCacheBytes: Int
    public var activeWeightBytesPerToken: Int
    public var dramReadBytesPerSecond: Double
    public var decodeRooflineTokensPerSecond: Double
    public var decodeRooflineFraction: Double
    public var batch: Int
    public var seqLen: Int
    public var decodeTokens: Int
    public var threads: Int
    /// Where the weights came from (a checkpoint, or random of which shapes).
    public var weights: String
    /// Precision of the matrix products (`fp32`, `bf16`) and what decided it.
    public var compute: String
    public var computeReason: String
    public var expertParallel: ExpertParallelReport?

    enum CodingKeys: String, CodingKey {
        case prefillTokensPerSecond = "prefill_tokens_per_s", decodeTokensPerSecond = "decode_tokens_per_s"
        case routingAnalysisTokensPerSecond = "routing_analysis_tokens_per_s", sgemmPeakGflopsPerSecond = "sgemm_peak_gflops_per_s"
        case prefillMFU = "prefill_mfu", loadSeconds = "load_seconds", peakResidentBytes = "peak_rss_bytes"
        case prefillGflopsPerSecond = "prefill_gflops_per_s", weightBytes = "weight_bytes", residentBytesAfterDecode =
            "rss_after_decode_bytes"
        case decodeKVCacheBytes = "decode_kv_cache_bytes", activeWeightBytesPerToken = "active_weight_bytes_per_token"
        case dramReadBytesPerSecond = "dram_read_bytes_per_s", decodeRooflineTokensPerSecond = "decode_roofline_tokens_per_s"
        case decodeRooflineFraction = "decode_roofline_fraction", batch, seqLen = "seq_len", decodeTokens = "decode_tokens", threads,
            weights
        case compute, computeReason = "compute_reason"
        case expertParallel = "expert_parallel"
    }
}

/// Prefill, decode and routing-analysis speed, load time and memory of one model.
public enum SpeedBenchmark {
    /// Under `mpirun -np N` every forward runs expert-parallel; every rank gets the result (the per-rank report
    /// is a collective). `tokens`: reads `count` token ids for a vocabulary of `vocabSize`; nil: random ids.
    public static func run(
        spec: ModelSpec, options: SpeedBenchmarkOptions, processes: EvaluationProcesses,
        tokens readTokens: ((_ count: Int, _ vocabSize: Int) throws -> [Int32])?,
        note: (String) -> Void
    ) throws -> SpeedBenchmarkResult {
        let loadStart = DispatchTime.now().uptimeNanoseconds
        let model: any CausalLanguageModel
        let source: String
        let compute: (precision: ComputePrecision, reason: String)
        if options.randomWeights {
            var args = try ModelLoader.resolveArgs(spec, source: nil).args
            if let layers = options.layers { args = try args.withLayers(layers) }
            let group = try processes.makeGroup(requestedDegree: options.expertParallelDegree, spec: spec, configDegree: nil, note: note)
            let weights = RandomWeightSource(args: args, dtype: options.randomWeightDType)
            compute = try spec.resolveCompute(weights)
            let onCPU = try DeepSeekV3(
                args: args, weights: weights, numerics: Numerics.resolve(args: args, namingEra: .v0_2),
                expertParallel: group, compute: compute.precision)
            model = try spec.placement?.place(onCPU, weights: weights) ?? onCPU
            source = weights.description
        } else {
            _ = try processes.makeGroup(requestedDegree: options.expertParallelDegree, spec: spec, configDegree: nil, note: note)
            let loaded = try processes.load(spec)
            model = loaded.model
            source = loaded.source.description
            compute = (loaded.compute, loaded.computeReason)
        }
        let loadSeconds = Double(DispatchTime.now().uptimeNanoseconds - loadStart) / 1e9
        let shape = model.shape
        let batch = options.batch, seqLen = options.seqLen, decodeTokens = options.decodeTokens
        let tokens: [Int32]
        if let readTokens {
            tokens = try readTokens(batch * seqLen, shape.vocabSize)
        } else {
            var rng = SplitMix64(seed: 1)
            tokens = (0..<(batch * seqLen)).map { _ in Int32(rng.next() % UInt64(shape.vocabSize)) }
        }

        func median(_ body: () throws -> Void) rethrows -> Double {
            try body() // warm-up
            var times: [Double] = []
            for _ in 0..<options.iterations {
                let start = DispatchTime.now().uptimeNanoseconds
                try body()
                times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
            return times.sorted()[times.count / 2]
        }
        let decodeSeconds =
            decodeTokens > 0
            ? try timeDecode(
                model: model, prompt: Array(tokens.prefix(16)), tokens: decodeTokens,
                iterations: options.iterations) : 0
        // Weights touched by decoding + the KV cache + one token's activations: the memory target's measure.
        let decodeResident = ProcessMemory.currentResidentBytes()
        let kvCacheBytes = decodeTokens > 0 ? model.kvCacheLayout.valuesPerPosition * 4 * (16 + decodeTokens) : 0
        // Last-position logits, as generation reads them and llama-bench measures prefill (issue 15).
        let prefill = try median { _ = try model.forward(tokens: tokens, batch: batch, seqLen: seqLen, logits: .last) }
        let routing: Double =
            try options.skipRouting
            ? 0
            : median {
                let collector = RoutingStatisticsCollector(
                    sequenceLength: seqLen, expertGroups: shape.numExpertGroups,
                    limitedGroups: shape.numLimitedGroups)
                _ = try model.forward(tokens: tokens, batch: batch, seqLen: seqLen, logits: .last, observer: collector)
                _ = RoutingMetrics.statistics(collector.finish())
            }
        // Prefill runs the output head on one position per row, not on all of them.
        let skippedHeadFlops = 2 * Double(shape.vocabSize) * Double(shape.dim) * Double(batch * (seqLen - 1))
        let forwardFlops = model.forwardFlopsPerToken(seqLen: seqLen) * Double(batch * seqLen) - skippedHeadFlops
        let sgemmPeak = ComputationalCost.measureSgemmPeak(size: 2048, repeats: 5)
        // Before the bandwidth probe, whose 1 GiB buffer would otherwise be the peak.
        let peakResident = ProcessMemory.peakResidentBytes()
        // Every rank's memory and timings (a collective), also before the probe.
        let report = try processes.report(model: model, routingPhase: nil, predictedLoads: nil)
        let bandwidth = decodeTokens > 0 ? Compute.measureReadBandwidth() : 0
        let decodeRate = decodeTokens > 0 ? Double(decodeTokens) / decodeSeconds : 0
        let activeBytes = model.footprint.activeWeightBytesPerToken
        // Tokens/s if each decode step only streamed its active weights from DRAM at the measured speed.
        let roofline = bandwidth > 0 ? bandwidth / Double(activeBytes) : 0
        return SpeedBenchmarkResult(
            prefillTokensPerSecond: Double(batch * seqLen) / prefill, decodeTokensPerSecond: decodeRate,
            routingAnalysisTokensPerSecond: options.skipRouting ? 0 : Double(batch * seqLen) / routing,
            sgemmPeakGflopsPerSecond: sgemmPeak / 1e9, prefillMFU: forwardFlops / prefill / sgemmPeak,
            loadSeconds: loadSeconds, peakResidentBytes: peakResident, prefillGflopsPerSecond: forwardFlops / prefill / 1e9,
            weightBytes: model.footprint.weightBytes, residentBytesAfterDecode: decodeResident, decodeKVCacheBytes: kvCacheBytes,
            activeWeightBytesPerToken: activeBytes, dramReadBytesPerSecond: bandwidth,
            decodeRooflineTokensPerSecond: roofline, decodeRooflineFraction: roofline > 0 ? decodeRate / roofline : 0,
            batch: batch, seqLen: seqLen, decodeTokens: decodeTokens, threads: Compute.threads, weights: source,
            compute: compute.precision.rawValue, computeReason: compute.reason, expertParallel: report)
    }

    /// Median seconds of `tokens` greedy decode steps (batch 1) after `prompt`; only the steps are timed: the
    /// prompt is prefilled before the clock starts. Iteration 0 is the warm-up.
    static func timeDecode(model: any CausalLanguageModel, prompt: [Int32], tokens: Int, iterations: Int) throws -> Double {
        var times: [Double] = []
        for iteration in 0...iterations {
            let cache = KVCache(model: model, batch: 1, capacity: prompt.count + tokens)
            var next = [prompt.last!]
            _ = try model.forward(tokens: prompt, batch: 1, seqLen: prompt.count, cache: cache, logits: .last)
            let start = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<tokens {
                let logits = try model.forward(tokens: next, batch: 1, seqLen: 1, cache: cache, logits: .last)
                var best = 0
                for v in 0..<model.shape.vocabSize where logits.data[v] > logits.data[best] { best = v }
                next = [Int32(best)]
            }
            if iteration > 0 { times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9) }
        }
        return times.sorted()[times.count / 2]
    }
}
