import ArgumentParser
import Foundation
import MoEData
import MoEEval
import MoECheckpoint
import MoEModels
import MoETensor
import MoETokenizer

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Evaluate a checkpoint: routing efficiency, inference performance, compute cost → results JSON.",
        discussion: """
        The seed's eval_moe_model.py, natively. Without --checkpoint it evaluates the bundled demo model.

        Examples:
          moe-eval run --preset 1min
          moe-eval run --checkpoint_dir ./outputs/checkpoint/step-1000 --config_file train.toml --preset 5min
          moe-eval run --checkpoint ./outputs/checkpoint --module deepseek_v3 --config deepseek_v3_debugmodel --training.seq_len 1024
        Presets (routing samples×seq_len; inference iterations×new tokens; lm_eval):
          30s 10×256; none; none · 1min 10×256; 1×16; hellaswag 5 · 5min 30×256; 3×32; hellaswag 20
          15min 50×512; 5×64; hellaswag 100 · full 100×512; 10×128; mmlu hellaswag arc_easy
        Benchmark data is found as lm-eval finds it: --data-dir (original release files) when given, then the
        Hugging Face Hub cache (HF_HUB_CACHE, else HF_HOME/hub), the datasets cache (HF_DATASETS_CACHE), and
        last a download from the Hub (HF_ENDPOINT, HF_TOKEN; none when HF_HUB_OFFLINE=1).
        Exit status: 0 done; 3 the results file was written but some benchmark tasks could not run (their
        reasons are printed and kept under lm_eval_errors); 1 any other error.
        """)

    @OptionGroup var model: ModelOptions
    @OptionGroup var distributed: DistributedOptions

    @Option(name: [.customLong("preset")], help: "30s, 1min, 5min, 15min or full (the seed's default).")
    var preset = "full"

    @Option(name: [.customLong("output-dir"), .customLong("output_dir")],
            help: "Folder for eval_results_<timestamp>.json (default: {dump_folder}/eval from the config).")
    var outputDir: String?

    @Option(help: "tokenizer.json file or folder (default: the config's hf_assets_path, else the tokenizer.json in an HF --checkpoint folder).")
    var tokenizer: String?

    @Option(help: "Routing text: a plain text file, a .json/.jsonl file with a \"text\" field per record, or a folder of such files as TorchTitan's dataset_path (default: the config's dataset_path if local, else the demo text).")
    var data: String?

    @Option(name: [.customLong("routing-input"), .customLong("routing_input")],
            help: "text (default) or random (the original scripts' random token ids).")
    var routingInput = "text"

    @Flag(name: [.customLong("skip-lm-eval"), .customLong("skip_lm_eval")], help: "Skip benchmark accuracy.")
    var skipLMEval = false

    @Flag(name: [.customLong("lm-eval-only"), .customLong("lm_eval_only")], help: "Only run benchmark accuracy.")
    var lmEvalOnly = false

    @Option(name: [.customLong("lm-eval-tasks"), .customLong("lm_eval_tasks"), .customLong("tasks")], parsing: .upToNextOption,
            help: "Tasks, space- or comma-separated (overrides the preset).")
    var lmEvalTasks: [String] = []

    @Option(name: [.customLong("lm-eval-limit"), .customLong("lm_eval_limit"), .customLong("limit")], help: "Examples per task (overrides the preset).")
    var lmEvalLimit: Int?

    @Option(name: [.customLong("num-fewshot"), .customLong("num_fewshot")], help: "Few-shot examples per task (default: each task's own, 0 for most).")
    var numFewshot: Int?

    @Option(name: [.customLong("data-dir"), .customLong("data_dir")],
            help: "Benchmark data folder holding the original release files (hellaswag/, arc/, mmlu/data/…), tried before the Hugging Face caches (default: $MOE_EVAL_DATA_DIR).")
    var dataDir: String?

    @Option(name: [.customLong("max-length"), .customLong("max_length")],
            help: ArgumentHelp("Tokens of context per benchmark request (default: the model's max_seq_len).",
                               discussion: "Requests are cut on the left as lm-eval's HF backend does with max_length. lm-eval's API backends (local-completions) keep one token fewer and predict with one fewer: to reproduce a harness run over `moe-eval serve` with max_length M, pass M − 2."))
    var maxLength: Int?

    @Flag(name: [.customLong("log-samples"), .customLong("log_samples")], help: "Keep per-document results (lm_eval_samples) for paired comparison.")
    var logSamples = false

    @Option(help: "Random seed (routing windows, random input).")
    var seed: UInt64 = 1337

    @Flag(help: "No progress on stderr.")
    var quiet = false

    func validate() throws {
        guard Preset.named(preset) != nil else {
            throw ValidationError("unknown preset \"\(preset)\" (known: \(Preset.names.joined(separator: ", ")))")
        }
        guard RoutingInput.Kind(rawValue: routingInput) != nil else {
            throw ValidationError("--routing-input must be text or random, not \"\(routingInput)\"")
        }
        if skipLMEval && lmEvalOnly { throw ValidationError("--skip-lm-eval and --lm-eval-only exclude each other") }
        if let lmEvalLimit, lmEvalLimit < 1 { throw ValidationError("--lm-eval-limit must be ≥ 1") }
        if let maxLength, maxLength < 1 { throw ValidationError("--max-length must be ≥ 1") }
    }

    func run() throws {
        try DistributedRun.run { ranks in
            let started = Date()
            let progress = Progress(quiet: quiet || !ranks.isRoot)
            let preset = Preset.named(preset)!
            let demo = model.checkpoint == nil ? try DemoAssets.locate() : nil
            var options = model
            if let demo {
                options.checkpoint = demo.checkpoint.path
                if options.config == nil { options.config = demo.config.path }
                if options.modelArgs == nil && options.flavor == nil { options.modelArgs = demo.modelArgs.path }
                progress.done("no --checkpoint: evaluating the bundled demo model \(demo.checkpoint.path)")
            }
            let spec = try options.spec()
            let config = try spec.loadTrainConfig()

            // Everything that can be checked cheaply is checked before the model loads.
            let timestamp = EvalResults.timestamp(for: started)
            let outputFolder = URL(fileURLWithPath: outputDir ?? ((config?.dumpFolder ?? "./outputs") as NSString).appendingPathComponent("eval"))
            if ranks.isRoot { try prepareOutputFolder(outputFolder) }
            let outputURL = resultsFile(in: outputFolder, timestamp: timestamp)
            let kind = RoutingInput.Kind(rawValue: routingInput)!
            let runRouting = !lmEvalOnly
            let tokenizer: Tokenizer? = try loadTokenizer(config: config, demo: demo, checkpoint: spec.checkpoint,
                                                          required: runRouting && (kind == .text || preset.inferenceIterations > 0))
            let documents: (docs: [String], source: String)? = runRouting && kind == .text
                ? try routingDocuments(config: config, demo: demo) : nil

            let expertParallel = try ranks.makeGroup(options: distributed, spec: spec, configDegree: config?.expertParallelDegree)
            progress.update("loading \(spec.checkpoint.path)")
            let loaded = try ranks.load(spec)
            progress.done(String(format: "loaded %@ in %.2f s (%@)", loaded.source.description, loaded.loadSeconds, loaded.argsOrigin))
            let shape = loaded.model.shape
            var results = EvalResults(checkpointDir: checkpointFolderEvaluated(at: spec.checkpoint).path, modelArgs: loaded.modelArgs, timestamp: timestamp, outputFile: outputURL.path)
            results.configJSON = config?.json
            var record: [String: Any] = [
                "preset": preset.name, "seed": seed, "threads": Compute.threads,
                "model_args_origin": loaded.argsOrigin, "load_seconds": loaded.loadSeconds,
                "numerics": ["yarn": loaded.model.numerics.yarn, "final_norm_eps": Double(loaded.model.numerics.finalNormEps),
                             "origin": loaded.model.numerics.origin],
                "key_naming": loaded.source.namingEra.rawValue,
                "tool": "moe-eval",
            ]

            var routingSeconds = 0.0, routingTokens = 0
            var routedLoads: [Int: [Int]]?
            if runRouting {
                let input: RoutingInput
                if kind == .random {
                    input = .random(vocabSize: shape.vocabSize, samples: preset.routingSamples, seqLen: preset.routingSeqLen, seed: seed)
                } else {
                    input = try .text(documents: documents!.docs, source: documents!.source, tokenizer: tokenizer!,
                                      samples: preset.routingSamples, seqLen: preset.routingSeqLen, seed: seed)
                }
                let collector = RoutingStatisticsCollector(sequenceLength: preset.routingSeqLen,
                                                           expertGroups: shape.numExpertGroups,
                                                           limitedGroups: shape.numLimitedGroups)
                let start = DispatchTime.now().uptimeNanoseconds
                if let expertParallel {
                    // Rank r routes sequences r, r+N, …, each as the one-sequence forward of the loop below; rank 0's
                    // collector receives them in sequence order, so the statistics are the same numbers.
                    var first = 0
                    while first < input.sequences.count {
                        progress.update("routing \(Progress.bar(first, input.sequences.count))")
                        let mine = first + expertParallel.rank
                        let sequence = mine < input.sequences.count ? input.sequences[mine] : []
                        _ = try loaded.model.forwardOwnBatches(tokens: sequence, batch: sequence.isEmpty ? 0 : 1, seqLen: preset.routingSeqLen,
                                                               logits: .last, observer: collector)
                        first += expertParallel.size
                    }
                } else {
                    for (i, sequence) in input.sequences.enumerated() {
                        progress.update("routing \(Progress.bar(i, input.sequences.count))")
                        _ = try loaded.model.forward(tokens: sequence, batch: 1, seqLen: sequence.count, logits: .last, observer: collector)
                    }
                }
                routingSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                routingTokens = input.sequences.count * preset.routingSeqLen
                ranks.endPhase("routing")
                let degree = config?.expertParallelDegree
                let counts = collector.finish()
                routedLoads = Dictionary(uniqueKeysWithValues: counts.map { ($0.layer, $0.tokensPerExpert) })
                results.routingStats = RoutingMetrics.statistics(counts, options: RoutingMetricsOptions(expertParallelDegree: degree))
                record["routing_input"] = [
                    "kind": input.kind.rawValue, "source": input.source, "samples": input.sequences.count,
                    "seq_len": preset.routingSeqLen, "text_tokens": input.availableTokens, "windows_overlap": input.windowsOverlap,
                    "tokens_per_second": routingSeconds > 0 ? Double(routingTokens) / routingSeconds : 0,
                ]
                if !collector.warnings.isEmpty { record["routing_warnings"] = collector.warnings }
                progress.done(String(format: "routing: %d sequences × %d tokens in %.2f s", input.sequences.count, preset.routingSeqLen, routingSeconds))

                if preset.inferenceIterations > 0, let tokenizer {
                    let prompts = InferenceBenchmark.seedPrompts.map { tokenizer.encode($0, addSpecialTokens: false).map(Int32.init) }
                    let weightBytes = loaded.source.tensorInfos.values.reduce(0) { $0 + $1.byteCount }
                    results.inference = try InferenceBenchmark.run(
                        model: loaded.model, prompts: prompts, newTokens: preset.inferenceNewTokens,
                        iterations: preset.inferenceIterations, warmup: preset.warmupIterations, weightBytes: weightBytes,
                        progress: { progress.update($0) })
                    progress.done(String(format: "inference: %.1f tokens/s decode, %.1f ms per iteration",
                                         results.inference!.decodeTokensPerSec, results.inference!.latencyMs))
                }
                progress.update("measuring the sgemm peak")
                let peak = ComputationalCost.measureSgemmPeak()
                // The routing rate counts every rank's forwards, so it is compared with every rank's peak.
                let peaks = try expertParallel.map { try $0.communicator.allGather([peak]) } ?? [peak]
                results.cost = ComputationalCost.compute(model: loaded.model, flopsSeqLen: config?.seqLen ?? shape.maxSeqLen,
                                                         measuredTokens: routingTokens, measuredSeqLen: preset.routingSeqLen,
                                                         measuredSeconds: routingSeconds, sgemmPeaks: peaks)
                progress.done(String(format: "cost: %.3f GFLOP/token forward, MFU %.1f%% of %.0f GFLOP/s sgemm (%d process%@)",
                                     results.cost!.forwardFlopsPerToken / 1e9, results.cost!.mfu * 100,
                                     results.cost!.cpuSgemmPeakGflopsPerSec, peaks.count, peaks.count == 1 ? "" : "es"))
            }
            let tasks = lmEvalTasks.isEmpty ? preset.lmEvalTasks : lmEvalTasks.flatMap { $0.split(separator: ",").map(String.init) }
            var samplesJSON: Any?
            if skipLMEval || tasks.isEmpty {
                record["lm_eval"] = ["status": "skipped", "reason": skipLMEval ? "--skip-lm-eval" : "preset \(preset.name) runs no tasks"]
            } else {
                guard let tokenizer = try tokenizer ?? loadTokenizer(config: config, demo: demo, checkpoint: spec.checkpoint, required: true) else { return }
                let data = benchmarkData(demo: demo ?? DemoAssets.owning(spec.checkpoint), progress: progress)
                let limit = lmEvalLimit ?? preset.lmEvalLimit
                if let maxLength, maxLength > loaded.model.shape.maxSeqLen {
                    throw RunArgumentError(description: "--max-length \(maxLength) exceeds the model's max_seq_len \(loaded.model.shape.maxSeqLen)")
                }
                let scorer = NativeScorer(model: loaded.model, maxLength: maxLength)
                do {
                    let output = try NativeTasks.run(tasks: tasks, limit: limit, numFewshot: numFewshot, data: data, tokenizer: tokenizer,
                                                     scorer: scorer, logSamples: logSamples, skipFailedTasks: true,
                                                     progress: { progress.update($0) })
                    results.lmEvalResults = output.results
                    results.lmEvalErrors = output.errors
                    record["lm_eval"] = ["status": output.errors.isEmpty ? "ran" : "ran with errors", "tasks": tasks, "limit": limit as Any,
                                         "num_fewshot": output.nShot, "max_length": scorer.maxLength,
                                         "data_dir": data.dataDir?.path as Any, "requests": output.requests, "scoring_seconds": output.scoringSeconds,
                                         "tokenization": "as lm-eval's API backends (no BOS)"]
                    if logSamples { samplesJSON = try EvalResults.object(output.samples) }
                    progress.done(String(format: "lm_eval: %d requests over %@ in %.2f s", output.requests, tasks.joined(separator: ", "), output.scoringSeconds))
                } catch let error as ExitCode {
                    throw error
                } catch {
                    // Routing, inference and cost are already measured: keep them and say why accuracy is missing.
                    let reason = "\(error)"
                    for task in tasks { results.lmEvalErrors[task] = reason }
                    record["lm_eval"] = ["status": "failed", "tasks": tasks, "reason": reason]
                }
            }
            if let report = try ranks.report(model: loaded.model, routingPhase: runRouting ? "routing" : nil, predictedLoads: routedLoads) {
                record["expert_parallel"] = report.json
                if ranks.isRoot && !quiet { report.lines.forEach { printError("expert parallel: " + $0) } }
            }
            guard ranks.isRoot else { return }
            results.walltimeSeconds = Date().timeIntervalSince(started)
            record["phase_seconds"] = ["routing": routingSeconds, "load": loaded.loadSeconds]
            results.run = record
            results.lmEvalSamples = samplesJSON
            let written = try OutputFile.writeUnderFreeName(near: outputURL) { final in
                results.outputFile = final.path
                return try results.jsonData()
            }
            print("results written to \(written.path)")
            if !results.lmEvalErrors.isEmpty {
                for (task, reason) in results.lmEvalErrors.sorted(by: { $0.key < $1.key }) {
                    printError("error: benchmark task \(task) did not run: \(reason)")
                }
                throw ExitCode(Self.exitTasksFailed)
            }
        }
    }

    /// The results file was written, but some benchmark tasks could not run.
    static let exitTasksFailed: Int32 = 3

    func prepareOutputFolder(_ folder: URL) throws {
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        } catch {
            throw OutputFile.WriteError(description: "output folder \(folder.path) cannot be created: \(error.localizedDescription)")
        }
        guard FileManager.default.isWritableFile(atPath: folder.path) else {
            throw OutputFile.WriteError(description: "output folder \(folder.path) is not writable")
        }
    }

    /// `eval_results_<timestamp>.json`; the file is published under `_2`, `_3`… when another run took the name first.
    func resultsFile(in folder: URL, timestamp: String) -> URL {
        folder.appendingPathComponent("eval_results_\(timestamp).json")
    }

    func loadTokenizer(config: TrainConfig?, demo: DemoAssets?, checkpoint: URL, required: Bool) throws -> Tokenizer? {
        var candidates: [String] = []
        if let tokenizer { candidates = [tokenizer] }
        else if let config, let assets = config.hfAssetsPath {
            candidates = config.hfAssetsCandidates
            if let demo { candidates.append(demo.root.appendingPathComponent(assets).path) }
        }
        if tokenizer == nil, let demo, config?.path == demo.config.path { candidates.append(demo.tokenizer.path) }
        // An HF checkpoint folder carries its tokenizer beside config.json.
        let checkpointFolder = ModelLoader.isDirectory(checkpoint) ? checkpoint : checkpoint.deletingLastPathComponent()
        if tokenizer == nil, FileManager.default.fileExists(atPath: checkpointFolder.appendingPathComponent("tokenizer.json").path) {
            candidates.append(checkpointFolder.path)
        }
        for path in candidates where FileManager.default.fileExists(atPath: path) {
            return try Tokenizer.load(from: URL(fileURLWithPath: path))
        }
        if required {
            let tried = candidates.isEmpty ? "no --config with an hf_assets_path, no --tokenizer, no tokenizer.json in the checkpoint folder" : "not found: \(candidates.joined(separator: ", "))"
            throw RoutingInput.InputError(description: "no tokenizer (\(tried)): pass --module deepseek_v3 --config NAME (TorchTitan 0.3) or --config TRAIN.toml, whose hf_assets_path holds it, or --tokenizer PATH; or use --routing-input random with --preset 30s")
        }
        return nil
    }

    /// `--data-dir` (else `$MOE_EVAL_DATA_DIR`), the Hugging Face caches and Hub, and the demo's own slice of
    /// benchmark items when the demo model is evaluated.
    func benchmarkData(demo: DemoAssets?, progress: Progress) -> BenchmarkDataSources {
        let folder = dataDir ?? ProcessInfo.processInfo.environment["MOE_EVAL_DATA_DIR"].flatMap { $0.isEmpty ? nil : $0 }
        // Downloads report from the calling thread only; Progress is not Sendable, the callback must be.
        nonisolated(unsafe) let bar = progress
        return BenchmarkDataSources(dataDir: folder.map { URL(fileURLWithPath: $0) }, hub: HubEnvironment.from(),
                                    bundledHubCache: demo?.benchmarkData, progress: { file, bytes, total in
            bar.update("downloading \(file) " + (total.map { Progress.bar(Int(bytes), Int($0)) + " bytes" } ?? "\(bytes) bytes"))
        })
    }

    func routingDocuments(config: TrainConfig?, demo: DemoAssets?) throws -> (docs: [String], source: String) {
        if let data { return (try RoutingInput.documents(in: URL(fileURLWithPath: data)), data) }
        if let path = config?.datasetPath, FileManager.default.fileExists(atPath: path) {
            return (try RoutingInput.documents(in: URL(fileURLWithPath: path)), path)
        }
        let text = try demo ?? DemoAssets.locate()
        return (try RoutingInput.documents(in: text.text), text.text.path)
    }
}

/// The bundled demo: a small DeepSeek-V3 trained with TorchTitan's model code (assets/demo/README.md).
struct DemoAssets {
    let root: URL
    var folder: URL { root.appendingPathComponent("assets/demo") }
    var config: URL { folder.appendingPathComponent("train.toml") }
    var modelArgs: URL { folder.appendingPathComponent("model_args.json") }
    var text: URL { folder.appendingPathComponent("demo_text.txt") }
    var tokenizer: URL { root.appendingPathComponent("assets/tokenizers/demo-dsv3") }
    /// A few real benchmark items in the Hub cache layout (assets/demo/hub/README.md).
    var benchmarkData: URL { folder.appendingPathComponent("hub") }
    let checkpoint: URL

    struct MissingError: Error, CustomStringConvertible { let description: String }

    /// The bundled demo when `checkpoint` is one of its checkpoints (named with --checkpoint).
    static func owning(_ checkpoint: URL) -> DemoAssets? {
        guard let demo = try? locate() else { return nil }
        let steps = demo.folder.appendingPathComponent("checkpoint").resolvingSymlinksInPath().standardized.path + "/"
        return checkpoint.resolvingSymlinksInPath().standardized.path.hasPrefix(steps) ? demo : nil
    }

    /// `MOE_EVAL_HOME`, else the first folder above the executable or the working directory holding assets/demo.
    static func locate() throws -> DemoAssets {
        var starts: [URL] = []
        if let home = ProcessInfo.processInfo.environment["MOE_EVAL_HOME"] { starts.append(URL(fileURLWithPath: home)) }
        starts.append(URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent())
        starts.append(URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
        for start in starts {
            var dir = start
            while true {
                let steps = dir.appendingPathComponent("assets/demo/checkpoint")
                if let names = try? FileManager.default.contentsOfDirectory(atPath: steps.path) {
                    let latest = names.compactMap { $0.hasPrefix("step-") ? Int($0.dropFirst(5)) : nil }.max()
                    if let latest {
                        return DemoAssets(root: dir, checkpoint: steps.appendingPathComponent("step-\(latest)"))
                    }
                }
                if dir.path == "/" { break }
                dir = dir.deletingLastPathComponent()
            }
        }
        throw MissingError(description: "no --checkpoint given and the bundled demo (assets/demo) was not found; set MOE_EVAL_HOME to the moe-eval folder or pass --checkpoint")
    }
}

/// An argument that only the loaded model can show to be wrong.
struct RunArgumentError: Error, CustomStringConvertible { let description: String }
