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

    @Option(help: "Sequences per prefill batch.") var batch = 4
    @Option(name: .customLong("seq-len"), help: "Tokens per sequence.") var seqLen = 512
    @Option(name: .customLong("decode-tokens"), help: "Tokens decoded one by one (batch 1) after a prompt of 16.") var decodeTokens = 32
    @Option(help: "Timed repetitions (median reported) after one warm-up.") var iterations = 3
    @Flag(name: .customLong("random-weights"), help: "Benchmark the shapes of --flavor/--model-args without a checkpoint.")
    var randomWeights = false
    @Option(help: "With --random-weights: override the number of layers (e.g. 16B shapes on 2 layers).") var layers: Int?
    @Option(name: .customLong("weight-dtype"), help: "With --random-weights: bf16 or fp32 storage.") var weightDtype = "bf16"
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        if batch < 1 || seqLen < 1 || iterations < 1 || decodeTokens < 0 { throw ValidationError("--batch, --seq-len and --iterations must be ≥ 1") }
        if !["bf16", "fp32"].contains(weightDtype) { throw ValidationError("--weight-dtype must be bf16 or fp32") }
        if !randomWeights && model.checkpoint == nil { throw ValidationError("--checkpoint is required (or --random-weights)") }
    }

    func run() throws {
        try reportingErrors {
            let loadStart = DispatchTime.now().uptimeNanoseconds
            let deepseek: DeepSeekV3
            var source: String
            if randomWeights {
                if let threads = model.threads { Compute.setThreads(threads) }
                let spec = ModelSpec(checkpoint: URL(fileURLWithPath: "/dev/null"), config: model.config.map { URL(fileURLWithPath: $0) },
                                     modelArgs: model.modelArgs.map { URL(fileURLWithPath: $0) }, flavor: model.flavor)
                var args = try ModelLoader.resolveArgs(spec, source: nil).args
                if let layers { args.nLayers = layers; args.nDenseLayers = min(args.nDenseLayers, layers) }
                let weights = RandomWeightSource(args: args, dtype: weightDtype == "bf16" ? .bfloat16 : .float32)
                deepseek = try DeepSeekV3(args: args, weights: weights, numerics: Numerics.resolve(args: args, namingEra: .v0_2))
                source = weights.description
            } else {
                let loaded = try ModelLoader.load(try model.spec())
                deepseek = loaded.model
                source = loaded.source.description
            }
            let loadSeconds = Double(DispatchTime.now().uptimeNanoseconds - loadStart) / 1e9
            let args = deepseek.args
            var rng = SplitMix64(seed: 1)
            let tokens = (0..<(batch * seqLen)).map { _ in Int32(rng.next() % UInt64(args.vocabSize)) }

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
            let prefill = try median { _ = try deepseek.forward(tokens: tokens, batch: batch, seqLen: seqLen, logits: .last) }
            let routing = try median {
                let collector = RoutingStatisticsCollector(sequenceLength: seqLen, expertGroups: args.moeArgs.numExpertGroups,
                                                           limitedGroups: args.moeArgs.numLimitedGroups)
                _ = try deepseek.forward(tokens: tokens, batch: batch, seqLen: seqLen, logits: .last, observer: collector)
                _ = RoutingMetrics.statistics(collector.finish())
            }
            var decodeSeconds = 0.0
            if decodeTokens > 0 {
                let prompt = Array(tokens.prefix(16))
                decodeSeconds = try median {
                    let cache = KVCache(model: deepseek, batch: 1, capacity: prompt.count + decodeTokens)
                    var next = [prompt.last!]
                    _ = try deepseek.forward(tokens: prompt, batch: 1, seqLen: prompt.count, cache: cache, logits: .last)
                    for _ in 0..<decodeTokens {
                        let logits = try deepseek.forward(tokens: next, batch: 1, seqLen: 1, cache: cache, logits: .last)
                        var best = 0
                        for v in 0..<args.vocabSize where logits.data[v] > logits.data[best] { best = v }
                        next = [Int32(best)]
                    }
                }
                // The median above includes the 16-token prompt; subtract one prompt prefill measured alone.
                let promptOnly = try median {
                    let cache = KVCache(model: deepseek, batch: 1, capacity: prompt.count)
                    _ = try deepseek.forward(tokens: prompt, batch: 1, seqLen: prompt.count, cache: cache, logits: .last)
                }
                decodeSeconds = max(decodeSeconds - promptOnly, 1e-9)
            }
            let forwardFlops = ComputationalCost.forwardFlopsPerToken(args, seqLen: seqLen) * Double(batch * seqLen)
            let result: [String: Any] = [
                "prefill_tokens_per_s": Double(batch * seqLen) / prefill,
                "decode_tokens_per_s": decodeTokens > 0 ? Double(decodeTokens) / decodeSeconds : 0,
                "routing_analysis_tokens_per_s": Double(batch * seqLen) / routing,
                "load_seconds": loadSeconds,
                "peak_rss_bytes": ProcessMemory.peakResidentBytes(),
                "prefill_gflops_per_s": forwardFlops / prefill / 1e9,
                "batch": batch, "seq_len": seqLen, "decode_tokens": decodeTokens, "threads": Compute.threads,
                "weights": source,
            ]
            if json {
                let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
                print(String(decoding: data, as: UTF8.self))
            } else {
                print("weights: \(source)")
                print(String(format: "load: %.2f s   peak RSS: %.1f MiB   threads: %d", loadSeconds,
                             Double(ProcessMemory.peakResidentBytes()) / 1_048_576, Compute.threads))
                print(String(format: "prefill  B=%d T=%d: %.0f tokens/s (%.1f GFLOP/s)", batch, seqLen,
                             Double(batch * seqLen) / prefill, forwardFlops / prefill / 1e9))
                print(String(format: "routing analysis: %.0f tokens/s", Double(batch * seqLen) / routing))
                if decodeTokens > 0 { print(String(format: "decode   B=1: %.1f tokens/s", Double(decodeTokens) / decodeSeconds)) }
            }
        }
    }
}
