import Foundation
import Testing

@testable import MoEEval

#if canImport(FoundationXML)
import FoundationXML
#endif

/// A results file with many experts, layers and co-activated pairs gives a page of bounded size: heatmap cells
/// average groups of experts, bars and table rows stop with a note, and the co-activation matrix keeps the first pairs.
@Suite struct ReportLimitsTests {
    /// `layers` layers of `experts` experts (expert e of layer l routed l + e tokens) and `pairs` co-activated pairs
    /// over distinct experts in the first layer.
    static func results(layers: Int, experts: Int, pairs: Int) -> String {
        var json = "{\"routing_stats\": {"
        for layer in 0..<layers {
            let counts = (0..<experts).map { String(layer + $0) }.joined(separator: ",")
            json +=
                "\"layer_\(layer)\": {\"tokens_per_expert_distribution\": [\(counts)], \"coefficient_of_variation\": \(layer == 0 ? 9 : 0.5), \"max_violation\": 0.5"
            if layer == 0 {
                let items = (0..<pairs).map { "{\"expert_a\": \(2 * $0), \"expert_b\": \(2 * $0 + 1), \"count\": 3, \"lift\": 1.5}" }
                json += ", \"top_coactivated_pairs\": [\(items.joined(separator: ","))]"
            }
            json += "}" + (layer == layers - 1 ? "" : ",")
        }
        return json + "}}"
    }

    static func count(_ needle: String, in text: String) -> Int {
        text.components(separatedBy: needle).count - 1
    }

    @Test func manyExpertsAndPairsGiveABoundedPage() throws {
        let input = Self.results(layers: 130, experts: 1024, pairs: 2048)
        let started = Date()
        let html = HTMLReport.render(try ResultsFile.parse(Data(input.utf8), path: "big.json"))
        let seconds = Date().timeIntervalSince(started)
        // Input ~0.7 MB; before the caps the co-activation grid alone was 4096² cells (over a GB of SVG).
        #expect(html.utf8.count < 8_000_000, "page of \(html.utf8.count) bytes")
        #expect(seconds < 60, "rendered in \(seconds) s")
        let document = try XMLDocument(xmlString: html, options: [])
        let cells = try document.nodes(forXPath: "//*[@id='load-heatmap']/*[local-name()='rect'][@data-tokens]")
        #expect(cells.count == 44 * 256, "130 layers in groups of 3, 1024 experts in groups of 4")
        let pairs = try document.nodes(forXPath: "//*[@id='coactivation-matrix']/*[local-name()='rect'][@data-lift]")
        // 64 experts hold the first 32 pairs (each drawn twice).
        #expect(pairs.count == 64)
        #expect(html.contains("Showing the first 32 of 2048 pairs"))
    }

    @Test func manyLayersStopWithANote() throws {
        let html = HTMLReport.render(try ResultsFile.parse(Data(Self.results(layers: 600, experts: 2, pairs: 0).utf8), path: "l.json"))
        let document = try XMLDocument(xmlString: html, options: [])
        let bars = try document.nodes(forXPath: "//*[@id='maxvio-bars']/*[local-name()='rect']")
        #expect(bars.count == HTMLReport.Limits.bars)
        #expect(html.contains("344 more layers are not drawn"))
        let rows = try document.nodes(forXPath: "//*[@id='layer-table']/*[local-name()='tr']")
        #expect(rows.count == HTMLReport.Limits.tableRows + 1)
        #expect(html.contains("88 more layers are not listed"))
        let cells = try document.nodes(forXPath: "//*[@id='load-heatmap']/*[local-name()='rect'][@data-tokens]")
        #expect(cells.count == 60 * 2, "600 layers in groups of 10")
    }

    /// Grouped cells carry the totals of the experts and layers they stand for.
    @Test func groupedCellsSumTheirExperts() throws {
        let html = HTMLReport.render(try ResultsFile.parse(Data(Self.results(layers: 1, experts: 512, pairs: 0).utf8), path: "g.json"))
        let document = try XMLDocument(xmlString: html, options: [])
        let cells = try document.nodes(forXPath: "//*[@id='load-heatmap']/*[local-name()='rect'][@data-tokens]").compactMap {
            $0 as? XMLElement
        }
        #expect(cells.count == 256)
        func attribute(_ element: XMLElement, _ name: String) -> String? { element.attributes?.first { $0.name == name }?.stringValue }
        #expect(attribute(cells[0], "data-expert") == "0–1")
        #expect(attribute(cells[0], "data-tokens").flatMap(Double.init) == 1)
        #expect(attribute(cells[255], "data-expert") == "510–511")
        #expect(attribute(cells[255], "data-tokens").flatMap(Double.init) == 1021)
        #expect(html.contains("each cell averages the load ratio of 2 experts × 1 layer"))
    }
}
