import ArgumentParser
import Foundation
import MoEEval
import MoEModels
import MoETensor

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure prefill, decode and routing-analysis speed, load time and memory.",
        discussion: """
        Examples:
          moe-eval bench --checkpoint outputs/checkpoint/step-1000 --config train.toml --batch 4 --seq-len 512
          moe-eval bench --random-weights --flavor 16B --layers 2 --batch 1 --seq-len 256 --json
        """)

    @OptionGroup var model: ModelOptions
    @OptionGroup var distributed: DistributedOptions

    @Option(help: "Sequences per prefill batch.") var batch = 4
    @Option(name: .customLong("seq-len"), help: "Tokens per sequence.") var seqLen = 512
    @Option(name: .customLong("decode-tokens"), help: "Tokens decoded one by one (batch 1) after a prompt of 16.") var decodeTokens = 32
    @Option(help: "Timed repetitions (median reported) after one warm-up.") var iterations = 3
    @Flag(name: .customLong("random-weights"), help: "Benchmark the shapes of --flavor/--model-args without a checkpoint.")
    var randomWeights = false
    @Option(help: "With --random-weights: override the number of layers (e.g. 16B shapes on 2 layers).") var layers: Int?
    @Option(name: .customLong("weight-dtype"), help: "With --random-weights: bf16 or fp32 storage.") var weightDtype = "bf16"
    @Option(name: .customLong("tokens-file"), help: "Token ids (whitespace-separated, batch × seq-len of them) instead of random ones.")
    var tokensFile: String?
    @Flag(name: .customLong("skip-routing"), help: "Do not time the routing-analysis pass.") var skipRouting = false
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        if batch < 1 || seqLen < 1 || iterations < 1 || decodeTokens < 0 { throw ValidationError("--batch, --seq-len and --iterations must be ≥ 1") }
        if !["bf16", "fp32"].contains(weightDtype) { throw ValidationError("--weight-dtype must be bf16 or fp32") }
        if !randomWeights && model.checkpoint == nil { throw ValidationError("--checkpoint is required (or --random-weights)") }
    }

    func run() throws {
        // Under `mpirun -np N` (an MPI build) the experts are split across the N processes and every forward runs
        // expert-parallel; rank 0 prints the figures and the per-rank report.
        try DistributedRun.run { ranks in
            let loadStart = DispatchTime.now().uptimeNanoseconds
            let network: any CausalLanguageModel
            var source: String
            if randomWeights {
                if let threads = model.threads { Compute.setThreads(threads) }
                let spec = try model.spec(defaultCheckpoint: "/dev/null")
                var args = try ModelLoader.resolveArgs(spec, source: nil).args
                if let layers { args.nLayers = layers; args.nDenseLayers = min(args.nDenseLayers, layers) }
                let group = try ranks.makeGroup(options: distributed, spec: spec, configDegree: nil)
                let weights = RandomWeightSource(args: args, dtype: weightDtype == "bf16" ? .bfloat16 : .float32)
                network = try DeepSeekV3(args: args, weights: weights, numerics: Numerics.resolve(args: args, namingEra: .v0_2),
                                         expertParallel: group)
                source = weights.description
            } else {
                let spec = try model.spec()
                _ = try ranks.makeGroup(options: distributed, spec: spec, configDegree: nil)
                let loaded = try ranks.load(spec)
                network = loaded.model
                source = loaded.source.description
            }
            let loadSeconds = Double(DispatchTime.now().uptimeNanoseconds - loadStart) / 1e9
            let shape = network.shape
            let tokens: [Int32]
            if let tokensFile {
                tokens = try BenchCommand.readTokens(tokensFile, count: batch * seqLen, vocabSize: shape.vocabSize)
            } else {
                var rng = SplitMix64(seed: 1)
                tokens = (0..<(batch * seqLen)).map { _ in Int32(rng.next() % UInt64(shape.vocabSize)) }
            }

            func median(_ body: () throws -> Void) rethrows -> Double {
                try body()   // warm-up
                var times: [Double] = []
                for _ in 0..<iterations {
                    let start = DispatchTime.now().uptimeNanoseconds
                    try body()
                    times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
                }
                return times.sorted()[times.count / 2]
            }
            var decodeSeconds = 0.0
            if decodeTokens > 0 {
                let prompt = Array(tokens.prefix(16))
                // Only the decode steps are timed: the 16-token prompt is prefilled before the clock starts.
                var times: [Double] = []
                for iteration in 0...iterations {   // iteration 0 is the warm-up
                    let cache = KVCache(model: network, batch: 1, capacity: prompt.count + decodeTokens)
                    var next = [prompt.last!]
                    _ = try network.forward(tokens: prompt, batch: 1, seqLen: prompt.count, cache: cache, logits: .last)
                    let start = DispatchTime.now().uptimeNanoseconds
                    for _ in 0..<decodeTokens {
                        let logits = try network.forward(tokens: next, batch: 1, seqLen: 1, cache: cache, logits: .last)
                        var best = 0
                        for v in 0..<shape.vocabSize where logits.data[v] > logits.data[best] { best = v }
                        next = [Int32(best)]
                    }
                    if iteration > 0 { times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9) }
                }
                decodeSeconds = times.sorted()[times.count / 2]
            }
            // Weights touched by decoding + the KV cache + one token's activations: the memory target's measure.
            let decodeResident = ProcessMemory.currentResidentBytes()
            let kvCacheBytes = decodeTokens > 0 ? network.kvCacheLayout.valuesPerPosition * 4 * (16 + decodeTokens) : 0
            // Full logits, as a scoring pass (and PyTorch's forward) computes them.
            let prefill = try median { _ = try network.forward(tokens: tokens, batch: batch, seqLen: seqLen, logits: .all) }
            let routing: Double = try skipRouting ? 0 : median {
                let collector = RoutingStatisticsCollector(sequenceLength: seqLen, expertGroups: shape.numExpertGroups,
                                                           limitedGroups: shape.numLimitedGroups)
                _ = try network.forward(tokens: tokens, batch: batch, seqLen: seqLen, logits: .last, observer: collector)
                _ = RoutingMetrics.statistics(collector.finish())
            }
            let forwardFlops = network.forwardFlopsPerToken(seqLen: seqLen) * Double(batch * seqLen)
            let sgemmPeak = ComputationalCost.measureSgemmPeak(size: 2048, repeats: 5)
            // Before the bandwidth probe, whose 1 GiB buffer would otherwise be the peak.
            let peakResident = ProcessMemory.peakResidentBytes()
            // Every rank's memory and timings (a collective), also before the probe.
            let report = try ranks.report(model: network, routingPhase: nil, predictedLoads: nil)
            let bandwidth = decodeTokens > 0 ? Compute.measureReadBandwidth() : 0
            let decodeRate = decodeTokens > 0 ? Double(decodeTokens) / decodeSeconds : 0
            let activeBytes = network.footprint.activeWeightBytesPerToken
            // Tokens/s if each decode step only streamed its active weights from DRAM at the measured speed.
            let roofline = bandwidth > 0 ? bandwidth / Double(activeBytes) : 0
            var result: [String: Any] = [
                "prefill_tokens_per_s": Double(batch * seqLen) / prefill,
                "decode_tokens_per_s": decodeRate,
                "routing_analysis_tokens_per_s": skipRouting ? 0 : Double(batch * seqLen) / routing,
                "sgemm_peak_gflops_per_s": sgemmPeak / 1e9,
                "prefill_mfu": forwardFlops / prefill / sgemmPeak,
                "load_seconds": loadSeconds,
                "peak_rss_bytes": peakResident,
                "prefill_gflops_per_s": forwardFlops / prefill / 1e9,
                "weight_bytes": network.footprint.weightBytes,
                "rss_after_decode_bytes": decodeResident,
                "decode_kv_cache_bytes": kvCacheBytes,
                "active_weight_bytes_per_token": activeBytes,
                "dram_read_bytes_per_s": bandwidth,
                "decode_roofline_tokens_per_s": roofline,
                "decode_roofline_fraction": roofline > 0 ? decodeRate / roofline : 0,
                "batch": batch, "seq_len": seqLen, "decode_tokens": decodeTokens, "threads": Compute.threads,
                "weights": source,
            ]
            guard ranks.isRoot else { return }
            if let report {
                result["expert_parallel"] = report.json
                if !json { report.lines.forEach { print("expert parallel: " + $0) } }
            }
            if json {
                let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
            } else {
                print("weights: \(source)")
                print(String(format: "load: %.2f s   weights: %.1f MiB   RSS after decode: %.1f MiB   peak RSS: %.1f MiB   threads: %d",
                             loadSeconds, Double(network.footprint.weightBytes) / 1_048_576, Double(decodeResident) / 1_048_576,
                             Double(peakResident) / 1_048_576, Compute.threads))
                print(String(format: "prefill  B=%d T=%d: %.0f tokens/s (%.1f GFLOP/s)", batch, seqLen,
                             Double(batch * seqLen) / prefill, forwardFlops / prefill / 1e9))
                print(String(format: "  MFU %.1f %% of the measured fp32 sgemm peak (%.1f GFLOP/s at 2048³)",
                             100 * forwardFlops / prefill / sgemmPeak, sgemmPeak / 1e9))
                if !skipRouting { print(String(format: "routing analysis: %.0f tokens/s", Double(batch * seqLen) / routing)) }
                if decodeTokens > 0 {
                    print(String(format: "decode   B=1: %.1f tokens/s = %.0f %% of the DRAM roofline (%.1f MB of active weights per token at %.1f GB/s read)",
                                 decodeRate, 100 * decodeRate / max(roofline, 1e-9), Double(activeBytes) / 1e6, bandwidth / 1e9))
                }
            }
        }
    }

    /// Whitespace-separated token ids; exactly `count` of them, each inside the vocabulary.
    static func readTokens(_ path: String, count: Int, vocabSize: Int) throws -> [Int32] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ValidationError("\(path): cannot read the token file")
        }
        var tokens: [Int32] = []
        for field in text.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "," }) {
            guard let id = Int32(field), id >= 0, Int(id) < vocabSize else {
                throw ValidationError("\(path): \"\(field)\" is not a token id in 0..<\(vocabSize)")
            }
            tokens.append(id)
        }
        guard tokens.count == count else {
            throw ValidationError("\(path): holds \(tokens.count) token ids, --batch × --seq-len needs \(count)")
        }
        return tokens
    }
}
