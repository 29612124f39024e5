import Foundation
import MoEJSON
import Testing

@testable import MoEEval

#if canImport(FoundationXML)
import FoundationXML
#endif

/// Issue 13's presentation: `compare`'s noise thresholds (worked out by hand in the comments), training-step
/// resolution, trend series and the report's first screen.
@Suite struct DashboardTests {
    /// A two-layer file whose layers record the noise floors `run` writes; E = 8, k = 2.
    static func file(
        cv: Double, maxVio: Double, dead: Int = 0, tokens: Int = 4000, textTokens: Int? = nil,
        dropRate: Double = 0.1, checkpoint: String = "ckpt/step-10", path: String = "f.json",
        accuracy: Double? = nil, samples: [Int]? = nil, latency: Double? = nil
    ) throws -> ResultsFile {
        let layers = (1...2).map { i in
            """
            "layer_\(i)": {"coefficient_of_variation": \(cv), "coefficient_of_variation_noise_floor": 0.05,
              "gini_coefficient": \(cv / 2), "max_violation": \(maxVio), "max_violation_noise_floor": 0.1,
              "dead_experts": \(i == 1 ? dead : 0), "num_tokens": \(tokens), "num_experts": 8, "top_k": 2, "layer": \(i),
              "capacity_drop_rate": [{"capacity_factor": 1.25, "drop_rate": \(dropRate)}],
              "tokens_per_expert_distribution": [400, 800, 1200, 1600, 1000, 1000, 1000, 1000]}
            """
        }.joined(separator: ",\n")
        let input =
            textTokens.map { #"{"kind": "text", "windows_overlap": true, "text_tokens": \#($0)}"# }
            ?? #"{"kind": "text", "windows_overlap": false}"#
        let results =
            accuracy.map { #""lm_eval_results": {"arc_easy": {"acc,none": \#($0), "acc_stderr,none": 0.05, "sample_len": 100}},"# } ?? ""
        let perDocument =
            samples.map { scores in
                #""lm_eval_samples": {"arc_easy": ["#
                    + scores.enumerated().map { #"{"doc_id": \#($0.offset), "acc": \#($0.element)}"# }.joined(separator: ",") + "]},"
            } ?? ""
        let inference =
            latency.map {
                #""inference_performance": {"latency_ms": \#($0), "prefill_latency_ms_p50": \#($0), "prefill_latency_ms_p95": \#($0 * 1.5)},"#
            } ?? ""
        return try ResultsFile.parse(
            Data(
                """
                {"routing_stats": {\(layers)}, \(results) \(perDocument) \(inference)
                 "checkpoint_dir": "\(checkpoint)", "model_args": {"moe_args": {"num_experts": 8, "top_k": 2}},
                 "moe_eval": {"preset": "30s", "routing_input": \(input)}}
                """.utf8), path: path)
    }

    static func row(_ c: Comparison, _ metric: String, section: String = "routing_stats.layers (mean over layers)") -> Comparison.MetricRow?
    {
        c.metrics.first { $0.section == section && $0.metric == metric }
    }

    // MARK: Noise

    @Test func routingThresholdsComeFromTheNoiseFloors() throws {
        let a = try Self.file(cv: 0.30, maxVio: 0.50)
        // CV: s = floor 0.05 in each file → 1.959964·√(0.05² + 0.05²) = 0.138590. Δ 0.1 is within it, 0.2 is not.
        let within = Comparison([a, try Self.file(cv: 0.40, maxVio: 0.50)])
        let cv = try #require(Self.row(within, "coefficient_of_variation"))
        #expect(abs((cv.noiseThreshold ?? 0) - 0.138590) < 1e-6)
        #expect(cv.mark == .same)
        #expect(Self.row(Comparison([a, try Self.file(cv: 0.50, maxVio: 0.50)]), "coefficient_of_variation")?.mark == .worse)
        // Gini: s = 0.05/√π = 0.0282095 → threshold 0.0781913; Δ = (0.4 − 0.3)/2 = 0.05 is within.
        let gini = try #require(Self.row(within, "gini_coefficient"))
        #expect(abs((gini.noiseThreshold ?? 0) - 0.0781913) < 1e-6)
        #expect(gini.mark == .same)
        // MaxVio: floor 0.1 → threshold 0.277181; 0.5 → 0.25 is within, 0.5 → 0.2 is better.
        let maxVio = try #require(Self.row(Comparison([a, try Self.file(cv: 0.3, maxVio: 0.25)]), "max_violation"))
        #expect(abs((maxVio.noiseThreshold ?? 0) - 0.277181) < 1e-6)
        #expect(maxVio.mark == .same)
        #expect(Self.row(Comparison([a, try Self.file(cv: 0.3, maxVio: 0.2)]), "max_violation")?.mark == .better)
        // Drop rate at C = 1.25: loads sum to 8000, mean 1000, capacity 1250; only expert 3 (1600) is over it
        // (1200 + √1200 = 1234.6 stays under), so s = √1600/8000 = 0.005 → threshold 2.771808·0.005 = 0.0138590.
        // 0.1 → 0.11 is within it, 0.1 → 0.12 is worse.
        let drop = try #require(
            Self.row(Comparison([a, try Self.file(cv: 0.3, maxVio: 0.5, dropRate: 0.11)]), "capacity_drop_rate[C=1.25].drop_rate"))
        #expect(abs((drop.noiseThreshold ?? 0) - 0.0138590) < 1e-7)
        #expect(drop.mark == .same)
        #expect(drop.noiseSource?.contains("overloaded") == true)
        #expect(
            Self.row(Comparison([a, try Self.file(cv: 0.3, maxVio: 0.5, dropRate: 0.12)]), "capacity_drop_rate[C=1.25].drop_rate")?.mark
                == .worse)
        // Dead experts (mean over the two layers 0 → 0.5): Poisson s = √max(1, n) = 1 each → threshold 2.771808.
        let dead = try #require(Self.row(Comparison([a, try Self.file(cv: 0.3, maxVio: 0.5, dead: 1)]), "dead_experts"))
        #expect(abs((dead.noiseThreshold ?? 0) - 2.771808) < 1e-6)
        #expect(dead.mark == .same)
    }

    @Test func jainsIndexMovesWithCV() throws {
        // CV 0.3, floor 0.05: s = 2·(0.3 + 0.05)·0.05/(1.09²) = 0.035/1.1881 = 0.0294588 → threshold 2.771808·s = 0.0816548.
        let scale = RoutingNoiseScale(
            layers: [["coefficient_of_variation": .double(0.3), "coefficient_of_variation_noise_floor": .double(0.05)]],
            file: try Self.file(cv: 0.3, maxVio: 0.5))
        let s = try #require(scale.standardError(of: "jain_fairness_index", metric: "jain_fairness_index", value: 0.917))
        #expect(abs(s.value - 0.0294588) < 1e-6)
    }

    @Test func absurdShapesGetNoNoiseModelInsteadOfAHugeSimulation() throws {
        // A billion experts at T = 10 would make the top-1 floor simulate a billion-entry load table.
        func hostile(_ value: Double) throws -> ResultsFile {
            try ResultsFile.parse(
                Data(
                    #"{"routing_stats": {"layer_1": {"top1_max_violation": \#(value), "num_experts": 1000000000, "top_k": 1, "num_tokens": 10}}}"#
                        .utf8), path: "h.json")
        }
        let row = try #require(Self.row(Comparison([try hostile(1), try hostile(2)]), "top1_max_violation"))
        #expect(row.noiseThreshold == nil && row.mark == .worse)
    }

    @Test func overlappingWindowsWidenTheThreshold() throws {
        // T = 4000 routed tokens from 1000 distinct text tokens: floors × √(4000/1000) = 2 → CV threshold 0.277181.
        let a = try Self.file(cv: 0.3, maxVio: 0.5, textTokens: 1000), b = try Self.file(cv: 0.5, maxVio: 0.5, textTokens: 1000)
        let cv = try #require(Self.row(Comparison([a, b]), "coefficient_of_variation"))
        #expect(abs((cv.noiseThreshold ?? 0) - 0.277181) < 1e-6)
        #expect(cv.mark == .same)
        #expect(cv.noiseSource?.contains("distinct") == true)
    }

    @Test func timingsUseTheFileSpreadOrTheTolerance() throws {
        // prefill p95/p50 = 1.5 → spread 0.5 per file → 1.959964·√(0.5² + 0.5²) = 1.385904 relative: 100 → 200 ms is the same.
        let a = try Self.file(cv: 0.3, maxVio: 0.5, latency: 100), b = try Self.file(cv: 0.3, maxVio: 0.5, latency: 200)
        let c = Comparison([a, b])
        let prefill = try #require(Self.row(c, "prefill_latency_ms_p50", section: "inference_performance"))
        #expect(abs((prefill.noiseThreshold ?? 0) - 1.385904 * 200) < 1e-3)
        #expect(prefill.mark == .same)
        // latency_ms has no recorded spread: the 10% tolerance of the larger value, 20 ms → worse.
        let latency = try #require(Self.row(c, "latency_ms", section: "inference_performance"))
        #expect(abs((latency.noiseThreshold ?? 0) - 20) < 1e-9)
        #expect(latency.mark == .worse)
        let loose = Comparison([a, b], options: .init(noise: NoiseModel(timingTolerance: 1.5)))
        #expect(Self.row(loose, "latency_ms", section: "inference_performance")?.mark == .same)
    }

    @Test func accuracyVotesOnlyWhenSignificant() throws {
        // Unpaired: Δ 0.05 with SE √(0.05² + 0.05²) = 0.0707 → z 0.71 → same; Δ 0.2 → z 2.83 → better.
        let a = try Self.file(cv: 0.3, maxVio: 0.5, accuracy: 0.5)
        #expect(Comparison([a, try Self.file(cv: 0.3, maxVio: 0.5, accuracy: 0.55)]).accuracy.first?.mark == .same)
        let better = Comparison([a, try Self.file(cv: 0.3, maxVio: 0.5, accuracy: 0.7)])
        #expect(better.accuracy.first?.mark == .better)
        #expect(better.summary.better == 1 && better.summary.worse == 0 && better.summary.winner == "B")
        // Paired: 10 documents A got wrong and B right, none the other way: McNemar p = 2/2¹⁰ = 0.00195 → better,
        // although the files' unpaired z (0.55 − 0.5)/0.0707 alone would say same.
        let pairedA = try Self.file(
            cv: 0.3, maxVio: 0.5, accuracy: 0.5, samples: Array(repeating: 0, count: 10) + Array(repeating: 1, count: 10))
        let pairedB = try Self.file(cv: 0.3, maxVio: 0.5, accuracy: 0.55, samples: Array(repeating: 1, count: 20))
        let paired = Comparison([pairedA, pairedB]).accuracy.first
        #expect(paired?.mark == .better)
        #expect(paired?.noiseSource?.hasPrefix("paired") == true)
        // 1 against 2 discordant documents: p = 1 → same.
        let fewA = try Self.file(cv: 0.3, maxVio: 0.5, accuracy: 0.5, samples: [1, 0, 0, 1])
        let fewB = try Self.file(cv: 0.3, maxVio: 0.5, accuracy: 0.55, samples: [0, 1, 1, 1])
        #expect(Comparison([fewA, fewB]).accuracy.first?.mark == .same)
    }

    @Test func nothingBeyondNoiseIsSameWithinNoise() throws {
        let c = Comparison([try Self.file(cv: 0.3, maxVio: 0.5), try Self.file(cv: 0.31, maxVio: 0.52)])
        #expect(c.summary.better == 0 && c.summary.worse == 0)
        #expect(c.summary.winner == "same within noise")
        #expect(c.text().contains("→ same within noise"))
    }

    // MARK: Steps and trends

    @Test func trainingStepsComeFromThePath() throws {
        #expect(ResultsInputs.step(inPath: "outputs/checkpoint/step-1000") == 1000)
        #expect(ResultsInputs.step(inPath: "/x/step_500/") == 500)
        #expect(ResultsInputs.step(inPath: "runs/Step20/eval") == 20)
        #expect(ResultsInputs.step(inPath: "runs/step-1000/eval/step-abc") == 1000)
        #expect(ResultsInputs.step(inPath: "steps/stepping") == nil)
        #expect(ResultsInputs.step(inPath: "step-99999999999999999999") == nil)
        let file = try Self.file(cv: 0.3, maxVio: 0.5, checkpoint: "no-step-here", path: "eval/step-30/r.json")
        #expect(ResultsInputs.trainingStep(file) == 30)
    }

    @Test func folderResolutionOrdersByStepAndTakesTheLatest() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("moe-eval-trend-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        func write(_ folder: String, _ name: String, step: Int) throws {
            let dir = root.appendingPathComponent(folder)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try Data(#"{"routing_stats": {}, "checkpoint_dir": "ckpt/step-\#(step)"}"#.utf8).write(to: dir.appendingPathComponent(name))
        }
        try write("b", "eval_results_20260101_000000.json", step: 900)
        try write("b", "eval_results_20260102_000000.json", step: 800)
        try write("a", "eval_results_20260101_000000.json", step: 100)
        try Data("{}".utf8).write(to: root.appendingPathComponent("notes.json"))
        let latest = try ResultsInputs.resolve([root.path], all: false)
        #expect(latest.steps == [100, 800])
        let all = try ResultsInputs.resolve([root.path], all: true)
        #expect(all.steps == [100, 800, 900])
        #expect(throws: ResultsFile.LoadError.self) { try ResultsInputs.resolve([root.appendingPathComponent("a/none").path], all: false) }
    }

    @Test func trendSeriesFollowTheFilesInStepOrder() throws {
        let early = try Self.file(cv: 0.6, maxVio: 1.2, dead: 2, checkpoint: "ckpt/step-100", accuracy: 0.3)
        let late = try Self.file(cv: 0.3, maxVio: 0.4, checkpoint: "ckpt/step-800", accuracy: 0.5)
        let trend = TrainingTrend([early, late], steps: [100, 800]) { a, b in
            (a.checkpointDir == b.checkpointDir ? 1 : 0.6, 0.25)
        }
        func series(_ id: String) -> TrainingTrend.Series? { trend.series.first { $0.id == id } }
        #expect(series("cv")?.values == [0.6, 0.3])
        #expect(series("maxvio")?.values == [1.2, 0.4])
        #expect(series("maxvio")?.reference == [0.1, 0.1])
        #expect(series("dead")?.values == [2, 0])
        #expect(series("agreement-previous")?.values == [nil, 0.6])
        #expect(series("agreement-final")?.values == [0.6, 1])
        #expect(series("agreement-final")?.reference == [0.25, 0.25])
        let accuracy = try #require(series("acc-arc_easy-acc"))
        #expect(accuracy.values == [0.3, 0.5] && accuracy.errors == [0.05, 0.05])
        #expect(TrainingTrend([early, late], steps: [100, 800]).series.allSatisfy { !$0.id.hasPrefix("agreement") })

        let svg = try XMLDocument(xmlString: trend.svg(accuracy), options: [])
        let points = try svg.nodes(forXPath: "//*[local-name()='circle']").compactMap { $0 as? XMLElement }
        #expect(points.compactMap { $0.attributes?.first { $0.name == "data-step" }?.stringValue } == ["100", "800"])
        #expect(try !svg.nodes(forXPath: "//*[local-name()='polygon']").isEmpty) // the ±SE band
        #expect(trend.text().contains("step 100") && trend.text().contains("0.3 ± 0.05"))
    }

    // MARK: First screen

    @Test func verdictsComeFirstWithTheirBands() throws {
        let (html, document) = try ReportTests.render()
        let verdict = try #require(html.range(of: "id=\"verdict\""))
        let heatmap = try #require(html.range(of: "id=\"load-heatmap\""))
        let details = try #require(html.range(of: "id=\"details\""))
        #expect(verdict.lowerBound < heatmap.lowerBound && heatmap.lowerBound < details.lowerBound)
        func card(_ id: String) throws -> XMLElement? {
            try ReportTests.elements(document, "//*[@id='verdict-\(id)']").first
        }
        // Gini 0.1875 good, CV 0.35355 good, utilisation 0.875 good; MaxVio mean 0.5 over a floor of 0.25 → excess
        // 0.25 → good; one dead expert → poor; hellaswag acc 0.34 ± 0.048 has no band.
        let expected = ["gini": "good", "cv": "good", "utilization": "good", "maxvio": "good", "dead": "poor", "acc-hellaswag-acc": "info"]
        for (id, band) in expected {
            let element = try #require(try card(id), "no verdict \(id)")
            #expect(ReportTests.attribute(element, "data-band") == band, "\(id)")
        }
        #expect(try card("acc-hellaswag-acc")?.stringValue?.contains("0.34 ± 0.048") == true)
        // Tables sit in scrolling boxes; the details are collapsed.
        #expect(try ReportTests.elements(document, "//*[local-name()='table'][not(parent::*[@class='scroll'])]").isEmpty)
        #expect(try ReportTests.elements(document, "//*[@id='layers'][local-name()='details'][not(@open)]").count == 1)
        #expect(html.contains("overflow-x: auto") && html.contains("@media print"))
    }
}
