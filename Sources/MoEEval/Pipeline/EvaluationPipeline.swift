import Foundation
import MoECheckpoint
import MoECore
import MoEData
import MoEJSON
import MoEModels
import MoETensor
import MoETokenizer

/// What `moe-eval run` evaluates and how; the CLI fills it from its options.
public struct EvaluationOptions: Sendable {
    public var preset: Preset
    public var routingInput: RoutingInput.Kind = .text
    /// `--data`: routing text (else the config's dataset_path, else the demo text).
    public var routingData: String?
    public var skipLMEval = false
    public var lmEvalOnly = false
    /// Benchmark tasks; empty: the preset's.
    public var tasks: [String] = []
    /// Examples per task; nil: the preset's.
    public var lmEvalLimit: Int?
    public var numFewshot: Int?
    /// `--data-dir`: original benchmark release files, tried before the Hugging Face caches.
    public var benchmarkDataDir: String?
    public var maxLength: Int?
    public var logSamples = false
    public var seed: UInt64 = 1337
    /// Folder for `eval_results_<timestamp>.json`; nil: `{dump_folder}/eval` from the config.
    public var outputDir: String?
    /// `--ep`: the expert-parallel degree asked for.
    public var expertParallelDegree: Int?

    public init(preset: Preset) { self.preset = preset }

    /// The tasks to run: `tasks` (entries may hold comma-separated names) or the preset's.
    public var taskNames: [String] {
        tasks.isEmpty ? preset.lmEvalTasks : tasks.flatMap { $0.split(separator: ",").map(String.init) }
    }
}

/// Where the pipeline reports what it is doing; printing stays with the caller.
public protocol EvaluationProgress: AnyObject {
    /// A passing state (a progress bar).
    func update(_ message: String)
    /// A finished step: its own line.
    func done(_ message: String)
    /// Something the user should read even when progress is off.
    func note(_ message: String)
}

/// An argument that only the loaded model can show to be wrong.
public struct EvaluationArgumentError: Error, CustomStringConvertible {
    public let description: String
}

/// `moe-eval run` as library steps: load the model → routing metrics → inference benchmark → computational
/// cost → accuracy tasks → results file. Every rank runs every step; only rank 0 writes.
public final class EvaluationPipeline {
    public let inputs: ModelInputs
    public let options: EvaluationOptions
    public let processes: EvaluationProcesses
    public let progress: EvaluationProgress
    let started: Date

    /// The routing step's measurements, as later steps need them.
    public struct RoutingMeasurement {
        public var statistics: RoutingStatistics
        public var record: RunRecord.RoutingInputRecord
        public var warnings: [String]
        /// Per MoE layer, tokens per expert: what expert parallelism's overload prediction needs.
        public var loads: [Int: [Int]]
        public var seconds: Double
        public var tokens: Int
        /// The experts chosen for the first routed tokens (agreement between checkpoints).
        public var routedExperts: RoutedExperts?
        /// The routing text's per-expert loads, as one source of the per-task routing section.
        public var textSource: TaskRouting.Source
    }

    public init(
        inputs: ModelInputs, options: EvaluationOptions, processes: EvaluationProcesses,
        progress: EvaluationProgress, started: Date = Date()
    ) {
        self.inputs = inputs
        self.options = options
        self.processes = processes
        self.progress = progress
        self.started = started
    }

    /// The evaluation, written to the results file on rank 0. Returns the results and the file written
    /// (nil on other ranks).
    public func run() throws -> (results: EvaluationResults, file: URL?) {
        let preset = options.preset
        let config = inputs.config
        let spec = inputs.spec

        // Everything that can be checked cheaply is checked before the model loads.
        let timestamp = EvaluationResults.timestamp(for: started)
        let outputFolder = URL(
            fileURLWithPath: options.outputDir ?? ((config?.dumpFolder ?? "./outputs") as NSString).appendingPathComponent("eval"))
        if processes.isRoot { try Self.prepareOutputFolder(outputFolder) }
        let outputURL = outputFolder.appendingPathComponent("eval_results_\(timestamp).json")
        let runRouting = !options.lmEvalOnly
        let textInput = options.routingInput == .text
        let tokenizer = try inputs.loadTokenizer(for: .evaluation, required: runRouting && (textInput || preset.inferenceIterations > 0))
        let documents = runRouting && textInput ? try inputs.routingDocuments(data: options.routingData) : nil

        let expertParallel = try processes.makeGroup(
            requestedDegree: options.expertParallelDegree, spec: spec,
            configDegree: config?.expertParallelDegree, note: { progress.note("note: " + $0) })
        progress.update("loading \(spec.checkpoint.path)")
        let loaded = try processes.load(spec)
        progress.done(String(format: "loaded %@ in %.2f s (%@)", loaded.source.description, loaded.loadSeconds, loaded.argsOrigin))
        let numerics = loaded.model.numerics
        var record = RunRecord(
            preset: preset.name, seed: options.seed, threads: Compute.threads, modelArgsOrigin: loaded.argsOrigin,
            loadSeconds: loaded.loadSeconds,
            numerics: .init(yarn: numerics.yarn, finalNormEps: Double(numerics.finalNormEps), origin: numerics.origin),
            keyNaming: loaded.source.namingEra.rawValue, lmEval: .skipped(""))
        record.family = loaded.family.name
        record.compute = RunRecord.ComputeRecord(precision: loaded.compute.rawValue, reason: loaded.computeReason)
        var results = EvaluationResults(
            checkpointDir: checkpointFolderEvaluated(at: spec.checkpoint).path, modelArgs: loaded.modelArgs,
            timestamp: timestamp, outputFile: outputURL.path, run: record)
        results.config = config.flatMap { try? JSONValue.parse(Array($0.json)) }

        var routing: RoutingMeasurement?
        if runRouting {
            let window = Self.routingWindow(preset: preset, model: loaded.model.shape)
            if let note = window.note { progress.note("note: " + note) }
            let input =
                options.routingInput == .random
                ? RoutingInput.random(
                    vocabSize: loaded.model.shape.vocabSize, samples: preset.routingSamples, seqLen: window.seqLen, seed: options.seed)
                : try RoutingInput.text(
                    documents: documents!.documents, source: documents!.source, tokenizer: tokenizer!,
                    samples: preset.routingSamples, seqLen: window.seqLen, seed: options.seed)
            let measured = try measureRouting(
                model: loaded.model, input: input, seqLen: window.seqLen, expertParallel: expertParallel,
                expertParallelDegree: config?.expertParallelDegree)
            routing = measured
            results.routingStats = measured.statistics
            results.routedExperts = measured.routedExperts
            record.routingInput = measured.record
            record.routingWarnings = (window.note.map { [$0] } ?? []) + measured.warnings
            if preset.inferenceIterations > 0, let tokenizer {
                results.inference = try benchmarkInference(loaded: loaded, tokenizer: tokenizer)
            }
            results.cost = try measureCost(model: loaded.model, routing: measured, expertParallel: expertParallel)
        }
        let tasks = options.taskNames
        if options.skipLMEval || tasks.isEmpty {
            record.lmEval = .skipped(options.skipLMEval ? "--skip-lm-eval" : "preset \(preset.name) runs no tasks")
        } else {
            let tokenizer = try tokenizer ?? inputs.loadTokenizer(for: .evaluation)!
            let outcome = try runTasks(tasks, model: loaded.model, tokenizer: tokenizer)
            if let perTask = outcome.taskRouting {
                results.taskRouting = TaskRouting((routing.map { [$0.textSource] } ?? []) + perTask)
            }
            record.lmEval = outcome.record
            results.lmEvalResults = outcome.results
            results.lmEvalErrors = outcome.errors
            results.lmEvalSamples = outcome.samples
        }
        record.expertParallel = try processes.report(
            model: loaded.model, routingPhase: runRouting ? "routing" : nil,
            predictedLoads: routing?.loads)
        guard processes.isRoot else { return (results, nil) }
        record.phaseSeconds = .init(routing: routing?.seconds ?? 0, load: loaded.loadSeconds)
        results.run = record
        results.walltimeSeconds = Date().timeIntervalSince(started)
        let written = try Self.writeUnderFreeName(near: outputURL) { final in
            results.outputFile = final.path
            return try results.jsonData()
        }
        return (results, written)
    }

    /// The preset's routing window, capped at the model's max_seq_len: TorchTitan's RoPE tables end there, so a
    /// longer window would measure positions no trained model sees. The note says so when the cap applies.
    public static func routingWindow(preset: Preset, model shape: ModelShape) -> (seqLen: Int, note: String?) {
        guard preset.routingSeqLen > shape.maxSeqLen else { return (preset.routingSeqLen, nil) }
        return (
            shape.maxSeqLen,
            "routing seq_len \(preset.routingSeqLen) of preset \(preset.name) capped at the model's max_seq_len \(shape.maxSeqLen)"
        )
    }

    /// Routes the input's sequences one at a time (split across the ranks under expert parallelism) and
    /// counts what the router chose.
    public func measureRouting(
        model: any CausalLanguageModel, input: RoutingInput, seqLen: Int, expertParallel: ExpertParallelGroup?,
        expertParallelDegree: Int?
    ) throws -> RoutingMeasurement {
        let shape = model.shape
        let collector = RoutingStatisticsCollector(
            sequenceLength: seqLen, expertGroups: shape.numExpertGroups,
            limitedGroups: shape.numLimitedGroups)
        // Insight metrics (z-loss, specialisation, …) and the routed ids ride along as a second observer.
        let insight = RoutingInsightCollector()
        let observers = RoutingObserverGroup([collector, insight])
        let start = DispatchTime.now().uptimeNanoseconds
        if let expertParallel {
            // Rank r routes sequences r, r+N, …, each as the one-sequence forward of the loop below; rank 0's
            // collector receives them in sequence order, so the statistics are the same numbers.
            var first = 0
            while first < input.sequences.count {
                progress.update("routing \(Self.bar(first, input.sequences.count))")
                let mine = first + expertParallel.rank
                let sequence = mine < input.sequences.count ? input.sequences[mine] : []
                insight.beginForward(sequences: Array(input.sequences[first..<min(first + expertParallel.size, input.sequences.count)]))
                _ = try model.forwardOwnBatches(
                    tokens: sequence, batch: sequence.isEmpty ? 0 : 1, seqLen: seqLen,
                    logits: .last, observer: observers)
                first += expertParallel.size
            }
        } else {
            for (i, sequence) in input.sequences.enumerated() {
                progress.update("routing \(Self.bar(i, input.sequences.count))")
                insight.beginForward(tokens: sequence)
                _ = try model.forward(tokens: sequence, batch: 1, seqLen: sequence.count, logits: .last, observer: observers)
            }
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let tokens = input.sequences.count * seqLen
        processes.endPhase("routing")
        let counts = collector.finish()
        var statistics = RoutingMetrics.statistics(counts, options: RoutingMetricsOptions(expertParallelDegree: expertParallelDegree))
        RoutingMetrics.addInsight(insight.finish(), to: &statistics)
        let loads = Dictionary(uniqueKeysWithValues: counts.map { ($0.layer, $0.tokensPerExpert) })
        progress.done(String(format: "routing: %d sequences × %d tokens in %.2f s", input.sequences.count, seqLen, seconds))
        return RoutingMeasurement(
            statistics: statistics,
            record: .init(
                kind: input.kind.rawValue, source: input.source, samples: input.sequences.count, seqLen: seqLen,
                textTokens: input.availableTokens, windowsOverlap: input.windowsOverlap,
                tokensPerSecond: seconds > 0 ? Double(tokens) / seconds : 0),
            warnings: collector.warnings,
            loads: loads, seconds: seconds, tokens: tokens, routedExperts: insight.routedExperts(),
            textSource: TaskRouting.Source(label: "routing text: \(input.source)", tokens: tokens, loads: loads))
    }

    /// The seed's timed generation of its prompts.
    public func benchmarkInference(loaded: LoadedModel, tokenizer: Tokenizer) throws -> InferenceBenchmark.Result {
        let preset = options.preset
        let prompts = InferenceBenchmark.seedPrompts.map { tokenizer.encode($0, addSpecialTokens: false).map(Int32.init) }
        let weightBytes = loaded.source.tensorInfos.values.reduce(0) { $0 + $1.byteCount }
        let result = try InferenceBenchmark.run(
            model: loaded.model, prompts: prompts, newTokens: preset.inferenceNewTokens,
            iterations: preset.inferenceIterations, warmup: preset.warmupIterations, weightBytes: weightBytes,
            progress: { [progress] in progress.update($0) })
        progress.done(String(format: "inference: %.1f tokens/s decode, %.1f ms per iteration", result.decodeTokensPerSec, result.latencyMs))
        return result
    }

    /// Parameters and FLOPs, and the routing pass's rate against the measured sgemm peak.
    public func measureCost(
        model: any CausalLanguageModel, routing: RoutingMeasurement, expertParallel: ExpertParallelGroup?
    ) throws -> ComputationalCost {
        progress.update("measuring the sgemm peak")
        let peak = ComputationalCost.measureSgemmPeak()
        // The routing rate counts every rank's forwards, so it is compared with every rank's peak.
        let peaks = try expertParallel.map { try $0.communicator.allGather([peak]) } ?? [peak]
        let cost = ComputationalCost.compute(
            model: model, flopsSeqLen: inputs.config?.seqLen ?? model.shape.maxSeqLen,
            measuredTokens: routing.tokens, measuredSeqLen: routing.record.seqLen,
            measuredSeconds: routing.seconds, sgemmPeaks: peaks)
        progress.done(
            String(
                format: "cost: %.3f GFLOP/token forward, MFU %.1f%% of %.0f GFLOP/s sgemm (%d process%@)",
                cost.forwardFlopsPerToken / 1e9, cost.mfu * 100, cost.cpuSgemmPeakGflopsPerSec,
                peaks.count, peaks.count == 1 ? "" : "es"))
        return cost
    }

    public struct TaskOutcome {
        public var record: LMEvalRecord
        public var results: [String: [String: Double]] = [:]
        public var errors: [String: String] = [:]
        public var samples: [String: [NativeTasks.Sample]]?
        /// Per-task expert loads from the scorer's forwards.
        public var taskRouting: [TaskRouting.Source]?
    }

    /// The benchmark tasks, scored natively. A failure of the whole step is kept as every task's error: the
    /// measurements before it stay in the results file.
    public func runTasks(_ tasks: [String], model: any CausalLanguageModel, tokenizer: Tokenizer) throws -> TaskOutcome {
        // Downloads report from the calling thread only; the progress object is not Sendable, the callback must be.
        nonisolated(unsafe) let bar = progress
        let data = inputs.benchmarkData(
            dataDir: options.benchmarkDataDir,
            progress: { file, bytes, total in
                bar.update("downloading \(file) " + (total.map { Self.bar(Int(bytes), Int($0)) + " bytes" } ?? "\(bytes) bytes"))
            })
        let limit = options.lmEvalLimit ?? options.preset.lmEvalLimit
        if let maxLength = options.maxLength, maxLength > model.shape.maxSeqLen {
            throw EvaluationArgumentError(description: "--max-length \(maxLength) exceeds the model's max_seq_len \(model.shape.maxSeqLen)")
        }
        let scorer = NativeScorer(model: model, maxLength: options.maxLength)
        let taskRouting = TaskRoutingCollector()
        scorer.routingObserver = taskRouting
        do {
            let output = try NativeTasks.run(
                tasks: tasks, limit: limit, numFewshot: options.numFewshot, data: data, tokenizer: tokenizer,
                scorer: scorer, logSamples: options.logSamples, skipFailedTasks: true,
                taskRouting: taskRouting, progress: { [progress] in progress.update($0) })
            var record = LMEvalRecord(status: output.errors.isEmpty ? .ran : .ranWithErrors, tasks: tasks)
            record.run = .init(
                limit: limit, numFewshot: output.nShot, maxLength: scorer.maxLength, dataDir: data.dataDir?.path,
                requests: output.requests, scoringSeconds: output.scoringSeconds,
                tokenization: "as lm-eval's API backends (no BOS)")
            progress.done(
                String(
                    format: "lm_eval: %d requests over %@ in %.2f s", output.requests, tasks.joined(separator: ", "), output.scoringSeconds)
            )
            return TaskOutcome(
                record: record, results: output.results, errors: output.errors,
                samples: options.logSamples ? output.samples : nil, taskRouting: taskRouting.finish())
        } catch {
            let reason = "\(error)"
            return TaskOutcome(
                record: .failed(tasks: tasks, reason: reason),
                errors: Dictionary(uniqueKeysWithValues: tasks.map { ($0, reason) }))
        }
    }

    public struct OutputError: Error, CustomStringConvertible { public let description: String }

    static func prepareOutputFolder(_ folder: URL) throws {
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        } catch {
            throw OutputError(description: "output folder \(folder.path) cannot be created: \(error.localizedDescription)")
        }
        guard FileManager.default.isWritableFile(atPath: folder.path) else {
            throw OutputError(description: "output folder \(folder.path) is not writable")
        }
    }

    /// Publishes under `url`, or `NAME_2.EXT`, `NAME_3.EXT`… if another run took the name first.
    static func writeUnderFreeName(near url: URL, contents: (URL) throws -> Data) throws -> URL {
        do {
            return try AtomicFile.write(to: url, existing: .nextFreeName) { final, output in
                try output.write(try contents(final))
            }
        } catch let error as AtomicFileError {
            throw OutputError(description: error.description)
        }
    }

    /// `[####....] done/total`, the progress bar every command shows.
    public static func bar(_ done: Int, _ total: Int, width: Int = 24) -> String {
        let filled = total > 0 ? width * done / total : width
        return "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] \(done)/\(total)"
    }
}
