import Foundation
import Testing

@testable import MoEEval

#if canImport(FoundationXML)
import FoundationXML
#endif

/// `moe-eval report`: the page and every SVG in it are well-formed XML, and the numbers drawn are the file's.
@Suite struct ReportTests {
    static let results = """
        {
          "routing_stats": {
            "layer_3": {"tokens_per_expert_distribution": [10, 30, 0, 40], "top1_tokens_per_expert_distribution": [5, 15, 0, 20],
                        "max_violation": 1.0, "max_violation_noise_floor": 0.25, "coefficient_of_variation": 0.7071,
                        "coefficient_of_variation_noise_floor": 0.1, "gini_coefficient": 0.375, "dead_experts": 1,
                        "top_coactivated_pairs": [{"expert_a": 1, "expert_b": 3, "count": 12, "lift": 1.5},
                                                  {"expert_a": 0, "expert_b": 1, "count": 6, "lift": 0.75}],
                        "coactivation_lift_uniform_baseline": 0.5},
            "layer_1": {"tokens_per_expert_distribution": [20, 20, 20, 20], "top1_tokens_per_expert_distribution": [10, 10, 10, 10],
                        "max_violation": 0.0, "max_violation_noise_floor": 0.25, "coefficient_of_variation": 0.0,
                        "coefficient_of_variation_noise_floor": 0.1, "gini_coefficient": 0.0, "dead_experts": 0,
                        "top_coactivated_pairs": [{"expert_a": 0, "expert_b": 2, "count": 9, "lift": 1.1}]},
            "aggregate": {"avg_gini_coefficient": 0.1875, "avg_coefficient_of_variation": 0.35355, "avg_expert_utilization_rate": 0.875,
                          "num_moe_layers": 2,
                          "max_violation": {"mean": 0.5, "median": 0.5, "p90": 0.9, "min": 0.0, "max": 1.0, "worst_layer": "layer_3"}}
          },
          "inference_performance": {"latency_ms": 123.456, "throughput_tokens_per_sec": 77.5, "decode_tokens_per_sec": 81.25,
                                    "time_to_first_token_ms_p50": 12.5, "memory_allocated_gb": 0.25, "sampling": "greedy <argmax> & more"},
          "computational_cost": {"total_params_billions": 0.0123, "active_params_billions": 0.0045, "mfu": 0.123, "gpu_peak_flops": null},
          "lm_eval_results": {"hellaswag": {"acc,none": 0.34, "acc_stderr,none": 0.048}},
          "walltime_seconds": 31.25,
          "checkpoint_dir": "ckpt/<step & 10>",
          "config": {"job": {"description": "demo \\"run\\""}},
          "model_args": {"dim": 32, "moe_args": {"num_experts": 4, "top_k": 2}},
          "eval_timestamp": "20260101_120000",
          "output_file": "out.json",
          "moe_eval": {"preset": "1min", "seed": 1337, "routing_input": {"kind": "text"}}
        }
        """

    static func render(_ json: String = results, path: String = "r.json") throws -> (html: String, document: XMLDocument) {
        let html = HTMLReport.render(try ResultsFile.parse(Data(json.utf8), path: path))
        return (html, try XMLDocument(xmlString: html, options: []))
    }

    static func elements(_ document: XMLDocument, _ xpath: String) throws -> [XMLElement] {
        try document.nodes(forXPath: xpath).compactMap { $0 as? XMLElement }
    }

    /// By scanning `attributes`: FoundationXML's `attribute(forName:)` misses plain attributes of elements in a namespace.
    static func attribute(_ element: XMLElement, _ name: String) -> String? {
        element.attributes?.first { $0.name == name }?.stringValue
    }

    @Test func pageAndEverySVGAreWellFormed() throws {
        let (html, document) = try Self.render()
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        // Each <svg>…</svg> fragment parses on its own as an SVG document.
        var fragments = 0
        var rest = html[...]
        while let start = rest.range(of: "<svg "), let end = rest.range(of: "</svg>", range: start.upperBound..<rest.endIndex) {
            let fragment = String(rest[start.lowerBound..<end.upperBound])
            let svg = try XMLDocument(xmlString: fragment, options: [])
            #expect(svg.rootElement()?.name == "svg")
            #expect(svg.rootElement()?.uri == "http://www.w3.org/2000/svg")
            fragments += 1
            rest = rest[end.upperBound...]
        }
        // load heatmap, top-1 heatmap, MaxVio bars, CV bars, co-activation matrix
        #expect(fragments == 5)
        #expect(try Self.elements(document, "//*[local-name()='svg']").count == 5)
        // Self-contained: no scripts, no external resources.
        #expect(try Self.elements(document, "//*[local-name()='script' or local-name()='link' or local-name()='img']").isEmpty)
        #expect(!html.contains("http://") || !html.replacingOccurrences(of: "http://www.w3.org/", with: "").contains("http://"))
        #expect(!html.contains("https://"))
        // The only url() is the heatmap legend's gradient, a fragment of the page itself.
        #expect(!html.contains("@import") && !html.replacingOccurrences(of: "url(#", with: "").contains("url("))
        // Text from the file is escaped, not interpreted.
        #expect(html.contains("ckpt/&lt;step &amp; 10&gt;"))
        #expect(html.contains("greedy &lt;argmax&gt; &amp; more"))
    }

    @Test func heatmapCellsCarryTheFileCounts() throws {
        let (_, document) = try Self.render()
        let cells = try Self.elements(document, "//*[@id='load-heatmap']/*[local-name()='rect'][@data-tokens]")
        // Layers in index order (layer_1 before layer_3, although the file lists layer_3 first) × 4 experts.
        #expect(cells.count == 8)
        let expected: [String: [Double]] = ["layer_1": [20, 20, 20, 20], "layer_3": [10, 30, 0, 40]]
        for cell in cells {
            let layer = try #require(Self.attribute(cell, "data-layer"))
            let expert = try #require(Self.attribute(cell, "data-expert").flatMap { Int($0) })
            #expect(Double(Self.attribute(cell, "data-tokens") ?? "") == expected[layer]?[expert])
        }
        #expect(cells.first.flatMap { Self.attribute($0, "data-layer") } == "layer_1")
        // layer_3 expert 3: 40 tokens over the balanced 80/4 = 20 → 2× (red end of the scale); expert 2 is dead.
        let busiest = try #require(
            cells.first { Self.attribute($0, "data-layer") == "layer_3" && Self.attribute($0, "data-expert") == "3" })
        #expect(Self.attribute(busiest, "data-ratio") == "2.0")
        #expect(busiest.elements(forName: "title").first?.stringValue?.contains("40") == true)
        let dead = try #require(cells.first { Self.attribute($0, "data-layer") == "layer_3" && Self.attribute($0, "data-expert") == "2" })
        #expect(Self.attribute(dead, "fill") == "#000000")
        let top1 = try Self.elements(document, "//*[@id='top1-heatmap']/*[local-name()='rect'][@data-tokens]")
        #expect(top1.compactMap { Self.attribute($0, "data-tokens").flatMap(Double.init) } == [10, 10, 10, 10, 5, 15, 0, 20])
    }

    @Test func barsShowEachLayersMaxVioAndCVWithFloors() throws {
        let (_, document) = try Self.render()
        let maxVio = try Self.elements(document, "//*[@id='maxvio-bars']/*[local-name()='rect'][@data-value]")
        #expect(
            maxVio.map { "\(Self.attribute($0, "data-layer") ?? "")=\(Self.attribute($0, "data-value") ?? "")" } == [
                "layer_1=0.0", "layer_3=1.0",
            ])
        let floors = try Self.elements(document, "//*[@id='maxvio-bars']/*[local-name()='line']")
        #expect(floors.compactMap { Self.attribute($0, "data-value") } == ["0.25", "0.25"])
        let cv = try Self.elements(document, "//*[@id='cv-bars']/*[local-name()='rect'][@data-value]")
        #expect(cv.compactMap { Self.attribute($0, "data-value").flatMap(Double.init) } == [0.0, 0.7071])
        // The longest bar spans the 360-px plot (past the seed's last CV band edge, 0.5, so all bands show).
        #expect(Self.attribute(maxVio[1], "width") == "360.0")
        #expect(Self.attribute(cv[1], "width") == "360.0")
        let zones = try Self.elements(document, "//*[@id='cv-bars']/*[local-name()='rect'][@data-band]")
        #expect(zones.compactMap { Self.attribute($0, "data-band") } == ["excellent", "good", "fair", "poor"])
        // excellent: CV 0 → 0.2 of 0.7071 over 360 px.
        #expect(Self.attribute(zones[0], "width") == String(format: "%.1f", 0.2 / 0.7071 * 360))
    }

    @Test func coactivationMatrixIsTheWorstLayersPairs() throws {
        let (_, document) = try Self.render()
        let svg = try #require(try Self.elements(document, "//*[@id='coactivation-matrix']").first)
        #expect(Self.attribute(svg, "data-layer") == "layer_3")
        let pairs = try Self.elements(document, "//*[@id='coactivation-matrix']/*[local-name()='rect'][@data-lift]")
        // Each pair is drawn twice (the matrix is symmetric).
        #expect(pairs.count == 4)
        let found = Set(
            pairs.map {
                "\(Self.attribute($0, "data-expert-a") ?? "")-\(Self.attribute($0, "data-expert-b") ?? "")=\(Self.attribute($0, "data-lift") ?? "")/\(Self.attribute($0, "data-count") ?? "")"
            })
        #expect(found == ["1-3=1.5/12.0", "0-1=0.75/6.0"])
    }

    @Test func tablesMatchTheFile() throws {
        let (_, document) = try Self.render()
        func value(_ table: String, _ key: String) throws -> Double? {
            try Self.elements(document, "//*[@id='\(table)']//*[@data-key='\(key)']").first
                .flatMap { Self.attribute($0, "data-value") }.flatMap(Double.init)
        }
        #expect(try value("inference-table", "latency_ms") == 123.456)
        #expect(try value("inference-table", "throughput_tokens_per_sec") == 77.5)
        #expect(try value("inference-table", "decode_tokens_per_sec") == 81.25)
        #expect(try value("inference-table", "time_to_first_token_ms_p50") == 12.5)
        #expect(try value("cost-table", "total_params_billions") == 0.0123)
        #expect(try value("cost-table", "active_params_billions") == 0.0045)
        #expect(try value("run-table", "walltime_seconds") == 31.25)
        #expect(try value("run-table", "moe_eval.seed") == 1337)
        #expect(try value("aggregate-table", "avg_gini_coefficient") == 0.1875)
        #expect(try value("aggregate-table", "max_violation.p90") == 0.9)
        #expect(try value("accuracy-table", "hellaswag/acc,none") == 0.34)
        #expect(try value("accuracy-table", "hellaswag/acc_stderr,none") == 0.048)
        #expect(try value("layer-table", "layer_3/dead_experts") == 1)
        // The seed's band for the aggregate Gini 0.1875 is "good".
        let bands = try Self.elements(document, "//*[@id='aggregate-table']//*[local-name()='span']")
        #expect(bands.first?.stringValue == "good")
    }

    @Test func seedFileGetsMaxVioFromItsCounts() throws {
        let (html, document) = try Self.render(CompareTests.seedExample, path: "seed.json")
        // The seed's layer_1 counts [500, 600, 660, 800]: mean 640, MaxVio = 800/640 − 1 = 0.25.
        let bars = try Self.elements(document, "//*[@id='maxvio-bars']/*[local-name()='rect'][@data-value]")
        #expect(bars.count == 1)
        #expect(Self.attribute(bars[0], "data-value") == "0.25")
        #expect(Self.attribute(bars[0], "data-source") == "computed from tokens_per_expert_distribution")
        let cells = try Self.elements(document, "//*[@id='load-heatmap']/*[local-name()='rect'][@data-tokens]")
        #expect(cells.compactMap { Self.attribute($0, "data-tokens").flatMap(Double.init) } == [500, 600, 660, 800])
        #expect(html.contains("active_params_billions in a seed file is the total parameter count"))
        // No pairs in a seed file: said, not drawn.
        #expect(try Self.elements(document, "//*[@id='coactivation-matrix']").isEmpty)
        #expect(html.contains("No top_coactivated_pairs"))
    }

    @Test func missingSectionsAreSaidNotDrawn() throws {
        let (html, document) = try Self.render(#"{"lm_eval_results": {"arc_easy": {"acc,none": 0.5}}}"#)
        #expect(html.contains("This file has no routing_stats."))
        #expect(html.contains("No inference_performance in this file."))
        #expect(try Self.elements(document, "//*[local-name()='svg']").isEmpty)
    }

    @Test func loadColoursTellDeadNearDeadAndColdApart() {
        // The stops themselves.
        #expect(HTMLReport.loadColor(ratio: 1) == "#ffffff")
        #expect(HTMLReport.loadColor(ratio: 4) == "#b2182b")
        #expect(HTMLReport.loadColor(ratio: 8) == "#67000d")
        #expect(HTMLReport.loadColor(ratio: 100) == "#67000d")
        #expect(HTMLReport.loadColor(ratio: 0.1) == "#762a83")
        #expect(HTMLReport.loadColor(ratio: 0.001) == "#2d004b")
        #expect(HTMLReport.loadColor(ratio: 1e-9) == "#2d004b")
        #expect(HTMLReport.loadColor(ratio: 0) == "#000000")
        // Between stops, linear in log10: 10^−0.5 is the blue stop; 10^−0.6 is 0.8 of the way from purple
        // (118, 42, 131) to it: (77.2, 126, 182.2) → (77, 126, 182).
        #expect(HTMLReport.loadColor(ratio: pow(10, -0.5)) == "#4393c3")
        #expect(HTMLReport.loadColor(ratio: pow(10, -0.6)) == "#4d7eb6")
        // Continuous: cold (0.2×) and near-dead (0.05×) differ from each other and from dead.
        let cold = HTMLReport.loadColor(ratio: 0.2), nearDead = HTMLReport.loadColor(ratio: 0.05), dead = HTMLReport.loadColor(ratio: 0)
        #expect(Set([cold, nearDead, dead]).count == 3)
    }
}
