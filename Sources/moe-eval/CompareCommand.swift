import ArgumentParser
import Foundation
import MoECore
import MoEEval

struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Compare results files: every metric side by side, deltas, better/worse, bands, accuracy statistics.",
        discussion: """
            The seed's compare_eval_results.py, extended. Deltas are last file − first file (B − A for two files);
            three or more files give a table over checkpoints. A folder stands for its latest eval_results_*.json
            (--all: every one), or its subfolders' (outputs/eval/step-*/); files are ordered by the training step
            in their checkpoint path (step-N) when every file has one. Seed-format files work too.
            A metric is better or worse only when its difference exceeds its noise: routing metrics their
            sampling noise floors, timings the run-to-run spread in the file or --timing-tolerance, accuracy
            the paired McNemar test (lm_eval_samples in both files) or Δ ± √(SE_A² + SE_B²); otherwise
            "same within noise" (docs/METRICS.md, "compare").
            Files that carry routed_experts for the same tokens also get a routing-agreement table
            (docs/METRICS.md, "Routing agreement").

            Examples:
              moe-eval compare outputs/eval/step-500/eval_results_20260129_212638.json outputs/eval/step-1000/eval_results_20260129_220145.json
              moe-eval compare outputs/eval/            (every step-* folder's latest results, in step order)
              moe-eval compare --json step-500.json step-1000.json step-1500.json step-2000.json
            """)

    @Argument(help: "Results files (eval_results_*.json) or folders of them; two or more files in all.")
    var files: [String]

    @Flag(help: "Take every results file of a folder, not only the latest.")
    var all = false

    @Option(help: "Relative difference within which two timings are the same when the file records no spread.")
    var timingTolerance: Double = 0.10

    @Flag(help: "Print the comparison as JSON.")
    var json = false

    @Flag(help: "Also list every layer's routing metrics.")
    var layers = false

    func validate() throws {
        guard !files.isEmpty else { throw ValidationError("compare needs at least two results files") }
        guard timingTolerance.isFinite, timingTolerance >= 0 else {
            throw ValidationError("--timing-tolerance must be a finite number ≥ 0 (a fraction: 0.1 = 10%)")
        }
    }

    func run() throws {
        try reportingErrors {
            let inputs = try ResultsInputs.resolve(files, all: all)
            guard inputs.files.count >= 2 else {
                throw ResultsArgumentError(
                    description: "compare needs at least two results files; \(files.joined(separator: ", ")) gave \(inputs.files.count)")
            }
            var comparison = Comparison(inputs.files, options: .init(perLayer: layers, noise: NoiseModel(timingTolerance: timingTolerance)))
            comparison.setSteps(inputs.steps, resolutionNotes: inputs.notes)
            if json {
                FileHandle.standardOutput.write(try comparison.jsonData())
                print()
            } else {
                var text = comparison.text()
                if inputs.files.count >= 3 {
                    text += TrainingTrend(inputs.files, steps: inputs.steps, agreement: TrainingTrend.topKOverlap).text()
                }
                print(TerminalText.sanitized(text), terminator: "")
            }
        }
    }
}

/// Results-file arguments that resolve to too few files (compare and report).
struct ResultsArgumentError: Error, CustomStringConvertible { let description: String }
