import ArgumentParser
import Foundation
import MoECore
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
    @OptionGroup var device: DeviceOptions
    @OptionGroup var distributed: DistributedOptions
    @OptionGroup var computeOptions: ComputeOptions

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
        if batch < 1 || seqLen < 1 || iterations < 1 || decodeTokens < 0 {
            throw ValidationError("--batch, --seq-len and --iterations must be ≥ 1")
        }
        if !["bf16", "fp32"].contains(weightDtype) { throw ValidationError("--weight-dtype must be bf16 or fp32") }
        if !randomWeights && model.checkpoint == nil { throw ValidationError("--checkpoint is required (or --random-weights)") }
    }

    func run() throws {
        // Under `mpirun -np N` (an MPI build) the experts are split across the N processes and every forward runs
        // expert-parallel; rank 0 prints the figures and the per-rank report.
        try DistributedRun.run { ranks in
            var spec = try device.placing(randomWeights ? model.spec(defaultCheckpoint: "/dev/null") : model.spec())
            spec.compute = computeOptions.choice(default: .auto)
            let result = try SpeedBenchmark.run(
                spec: spec, options: benchmarkOptions, processes: ranks,
                tokens: tokensFile.map { path in { try Self.readTokens(path, count: $0, vocabSize: $1) } },
                note: { printError("note: " + $0) })
            guard ranks.isRoot else { return }
            if json {
                print(String(decoding: try ResultsJSON.encode(result, pretty: false), as: UTF8.self))
            } else {
                printSummary(result)
            }
        }
    }

    var benchmarkOptions: SpeedBenchmarkOptions {
        var options = SpeedBenchmarkOptions()
        options.batch = batch
        options.seqLen = seqLen
        options.decodeTokens = decodeTokens
        options.iterations = iterations
        options.randomWeights = randomWeights
        options.layers = layers
        options.randomWeightDType = weightDtype == "bf16" ? .bfloat16 : .float32
        options.skipRouting = skipRouting
        options.expertParallelDegree = distributed.ep
        return options
    }

    func printSummary(_ r: SpeedBenchmarkResult) {
        r.expertParallel?.lines.forEach { print("expert parallel: " + $0) }
        print("weights: \(r.weights)")
        print("compute: \(r.compute) products (\(r.computeReason))")
        print(
            String(
                format: "load: %.2f s   weights: %.1f MiB   RSS after decode: %.1f MiB   peak RSS: %.1f MiB   threads: %d",
                r.loadSeconds, Double(r.weightBytes) / 1_048_576, Double(r.residentBytesAfterDecode) / 1_048_576,
                Double(r.peakResidentBytes) / 1_048_576, r.threads))
        print(
            String(
                format: "prefill  B=%d T=%d: %.0f tokens/s (%.1f GFLOP/s)", r.batch, r.seqLen,
                r.prefillTokensPerSecond, r.prefillGflopsPerSecond))
        print(
            String(
                format: "  MFU %.1f %% of the measured fp32 sgemm peak (%.1f GFLOP/s at 2048³)",
                100 * r.prefillMFU, r.sgemmPeakGflopsPerSecond))
        if !skipRouting { print(String(format: "routing analysis: %.0f tokens/s", r.routingAnalysisTokensPerSecond)) }
        if r.decodeTokens > 0 {
            print(
                String(
                    format:
                        "decode   B=1: %.1f tokens/s = %.0f %% of the DRAM roofline (%.1f MB of active weights per token at %.1f GB/s read)",
                    r.decodeTokensPerSecond, 100 * r.decodeTokensPerSecond / max(r.decodeRooflineTokensPerSecond, 1e-9),
                    Double(r.activeWeightBytesPerToken) / 1e6, r.dramReadBytesPerSecond / 1e9))
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
