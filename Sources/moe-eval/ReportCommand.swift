import ArgumentParser
import Foundation
import MoEEval

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write a self-contained HTML dashboard of results files (verdicts, trends, heatmaps, per-layer bars).",
        discussion: """
            One HTML file with inline SVG and CSS: no scripts, no network, no web fonts. First the verdict per
            headline metric with its band (Gini, CV, utilisation, MaxVio vs its noise floor, dead experts,
            accuracy ± SE), then the plots (with several checkpoints: each headline metric against training
            step; the layer × expert load heatmap; per-layer MaxVio and CV with floors and bands; co-activation
            when a pair stands out), then the details collapsed. Several files or folders (a folder: its latest
            eval_results_*.json, --all: every one) are ordered by the step-N in their checkpoint path; the
            dashboard judges the last. Seed-format files work too.

            Examples:
              moe-eval report outputs/eval/eval_results_20260203_004013.json
              moe-eval report outputs/eval/step-*/ --output /tmp/training.html
              moe-eval report eval_results.json --output /tmp/report.html --overwrite
            """)

    @Argument(help: "Results files (eval_results_*.json) or folders of them.")
    var results: [String]

    @Flag(help: "Take every results file of a folder, not only the latest.")
    var all = false

    @Option(help: "Where to write the HTML (default: the results file's path with .html; several files: the last one's with .trend.html).")
    var output: String?

    @Flag(help: "Replace an existing report.")
    var overwrite = false

    func run() throws {
        try reportingErrors {
            let inputs = try ResultsInputs.resolve(results, all: all)
            guard let last = inputs.files.last else {
                throw ResultsArgumentError(description: "report needs at least one results file or folder")
            }
            let input = URL(fileURLWithPath: last.path)
            let target: URL
            if let output {
                target = URL(fileURLWithPath: output)
            } else if inputs.files.count > 1 {
                target = input.deletingPathExtension().appendingPathExtension("trend.html")
            } else if input.pathExtension.lowercased() == "json" {
                target = input.deletingPathExtension().appendingPathExtension("html")
            } else {
                target = input.appendingPathExtension("html")
            }
            let html = HTMLReport.render(inputs.files, steps: inputs.steps, agreement: TrainingTrend.topKOverlap)
            try OutputFile.write(Data(html.utf8), to: target, overwrite: overwrite)
            print("report written to \(target.path)")
        }
    }
}
