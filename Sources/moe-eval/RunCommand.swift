import ArgumentParser
import Foundation
import MoECheckpoint
import MoEData
import MoEEval
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
    @OptionGroup var device: DeviceOptions
    @OptionGroup var distributed: DistributedOptions
    @OptionGroup var computeOptions: ComputeOptions

    @Option(name: [.customLong("preset")], help: "30s, 1min, 5min, 15min or full (the seed's default).")
    var preset = "full"

    @Option(
        name: [.customLong("output-dir"), .customLong("output_dir")],
        help: "Folder for eval_results_<timestamp>.json (default: {dump_folder}/eval from the config).")
    var outputDir: String?

    @Option(
        help: "tokenizer.json file or folder (default: the config's hf_assets_path, else the tokenizer.json in an HF --checkpoint folder).")
    var tokenizer: String?

    @Option(
        help:
            "Routing text: a plain text file, a .json/.jsonl file with a \"text\" field per record, or a folder of such files as TorchTitan's dataset_path (default: the config's dataset_path if local, else the demo text)."
    )
    var data: String?

    @Option(
        name: [.customLong("routing-input"), .customLong("routing_input")],
        help: "text (default) or random (the original scripts' random token ids).")
    var routingInput = "text"

    @Flag(name: [.customLong("skip-lm-eval"), .customLong("skip_lm_eval")], help: "Skip benchmark accuracy.")
    var skipLMEval = false

    @Flag(name: [.customLong("lm-eval-only"), .customLong("lm_eval_only")], help: "Only run benchmark accuracy.")
    var lmEvalOnly = false

    @Option(
        name: [.customLong("lm-eval-tasks"), .customLong("lm_eval_tasks"), .customLong("tasks")], parsing: .upToNextOption,
        help: "Tasks, space- or comma-separated (overrides the preset).")
    var lmEvalTasks: [String] = []

    @Option(
        name: [.customLong("lm-eval-limit"), .customLong("lm_eval_limit"), .customLong("limit")],
        help: "Examples per task (overrides the preset).")
    var lmEvalLimit: Int?

    @Option(
        name: [.customLong("num-fewshot"), .customLong("num_fewshot")],
        help: "Few-shot examples per task (default: each task's own, 0 for most).")
    var numFewshot: Int?

    @Option(
        name: [.customLong("data-dir"), .customLong("data_dir")],
        help:
            "Benchmark data folder holding the original release files (hellaswag/, arc/, mmlu/data/…), tried before the Hugging Face caches (default: $MOE_EVAL_DATA_DIR)."
    )
    var dataDir: String?

    @Option(
        name: [.customLong("max-length"), .customLong("max_length")],
        help: ArgumentHelp(
            "Tokens of context per benchmark request (default: the model's max_seq_len).",
            discussion:
                "Requests are cut on the left as lm-eval's HF backend does with max_length. lm-eval's API backends (local-completions) keep one token fewer and predict with one fewer: to reproduce a harness run over `moe-eval serve` with max_length M, pass M − 2."
        ))
    var maxLength: Int?

    @Flag(
        name: [.customLong("log-samples"), .customLong("log_samples")],
        help: "Keep per-document results (lm_eval_samples) for paired comparison.")
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
            var spec = try device.placing(model.spec(defaultCheckpoint: "."))
            spec.compute = computeOptions.choice(default: .fp32)
            let inputs = try ModelInputs.resolve(spec, checkpointGiven: model.checkpoint != nil, tokenizer: tokenizer)
            if let demo = inputs.demo { progress.done("no --checkpoint: evaluating the bundled demo model \(demo.checkpoint.path)") }
            let pipeline = EvaluationPipeline(
                inputs: inputs, options: evaluationOptions, processes: ranks, progress: progress, started: started)
            let (results, written) = try pipeline.run()
            if ranks.isRoot && !quiet { results.run.expertParallel?.lines.forEach { printError("expert parallel: " + $0) } }
            guard let written else { return }
            print("results written to \(written.path)")
            for (task, reason) in results.lmEvalErrors.sorted(by: { $0.key < $1.key }) {
                printError("error: benchmark task \(task) did not run: \(reason)")
            }
            if !results.lmEvalErrors.isEmpty { throw ExitCode(Self.exitTasksFailed) }
        }
    }

    /// The results file was written, but some benchmark tasks could not run.
    static let exitTasksFailed: Int32 = 3

    var evaluationOptions: EvaluationOptions {
        var options = EvaluationOptions(preset: Preset.named(preset)!)
        options.routingInput = RoutingInput.Kind(rawValue: routingInput)!
        options.routingData = data
        options.skipLMEval = skipLMEval
        options.lmEvalOnly = lmEvalOnly
        options.tasks = lmEvalTasks
        options.lmEvalLimit = lmEvalLimit
        options.numFewshot = numFewshot
        options.benchmarkDataDir = dataDir
        options.maxLength = maxLength
        options.logSamples = logSamples
        options.seed = seed
        options.outputDir = outputDir
        options.expertParallelDegree = distributed.ep
        return options
    }
}
