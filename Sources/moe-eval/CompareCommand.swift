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
        three or more files give a table over checkpoints in the order given. Seed-format files work too.
        Accuracy: Δ ± √(SE_A² + SE_B²) from lm-eval's *_stderr keys; with per-document results
        (lm_eval_samples) in both files also paired Δ ± SE, the exact McNemar p-value and the minimum
        detectable effect (docs/METRICS.md, "compare"). Files that carry routed_experts for the same tokens
        also get a routing-agreement table (docs/METRICS.md, "Routing agreement").

        Examples:
          moe-eval compare outputs/eval/step-500/eval_results_20260129_212638.json outputs/eval/step-1000/eval_results_20260129_220145.json
          moe-eval compare --json step-500.json step-1000.json step-1500.json step-2000.json
        """)

    @Argument(help: "Two or more results files (eval_results_*.json), oldest checkpoint first.")
    var files: [String]

    @Flag(help: "Print the comparison as JSON.")
    var json = false

    @Flag(help: "Also list every layer's routing metrics.")
    var layers = false

    func validate() throws {
        guard files.count >= 2 else { throw ValidationError("compare needs at least two results files") }
    }

    func run() throws {
        try reportingErrors {
            let results = try files.map { try ResultsFile.load(URL(fileURLWithPath: $0)) }
            let comparison = Comparison(results, options: .init(perLayer: layers))
            if json {
                FileHandle.standardOutput.write(try comparison.jsonData())
                print()
            } else {
                print(TerminalText.sanitized(comparison.text()), terminator: "")
            }
        }
    }
}
