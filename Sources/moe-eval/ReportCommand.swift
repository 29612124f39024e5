import ArgumentParser
import Foundation
import MoEEval

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write a self-contained HTML report of a results file (heatmaps, per-layer bars, latency, cost).",
        discussion: """
        One HTML file with inline SVG and CSS: no scripts, no network, no web fonts. It shows the layer × expert
        load heatmap, per-layer MaxVio and CV with their noise floors, the co-activated pairs of the worst
        layer, latency and throughput, computational cost and the run's settings. Seed-format files work too.

        Examples:
          moe-eval report outputs/eval/eval_results_20260203_004013.json
          moe-eval report eval_results.json --output /tmp/report.html --overwrite
        """)

    @Argument(help: "A results file (eval_results_*.json).")
    var results: String

    @Option(help: "Where to write the HTML (default: the results file's path with .html).")
    var output: String?

    @Flag(help: "Replace an existing report.")
    var overwrite = false

    func run() throws {
        try reportingErrors {
            let input = URL(fileURLWithPath: results)
            let file = try ResultsFile.load(input)
            let target: URL
            if let output {
                target = URL(fileURLWithPath: output)
            } else if input.pathExtension.lowercased() == "json" {
                target = input.deletingPathExtension().appendingPathExtension("html")
            } else {
                target = input.appendingPathExtension("html")
            }
            try OutputFile.write(Data(HTMLReport.render(file).utf8), to: target, overwrite: overwrite)
            print("report written to \(target.path)")
        }
    }
}
