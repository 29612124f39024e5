import Foundation
import Testing

#if canImport(FoundationXML)
import FoundationXML
#endif

/// `moe-eval compare` and `moe-eval report` on real results files written by `moe-eval run` from two
/// different reference checkpoints.
@Suite struct CompareReportCLITests {
    struct Runs {
        let dir: URL
        let first: URL
        let second: URL
    }

    /// Two 30s-preset runs with random routing input: v022_sigmoid_groups_yarn and v022_softmax_basic.
    static func makeRuns() throws -> Runs {
        let dir = try CLI.scratch()
        var files: [URL] = []
        for variant in ["v022_sigmoid_groups_yarn", "v022_softmax_basic"] {
            let fixture = CLI.dsv3Fixtures.appendingPathComponent(variant)
            let out = dir.appendingPathComponent(variant)
            let r = try CLI.run([
                "run", "--checkpoint", fixture.appendingPathComponent("checkpoint").path,
                "--model-args", fixture.appendingPathComponent("model_args.json").path,
                "--preset", "30s", "--routing-input", "random", "--output-dir", out.path, "--quiet",
            ])
            guard r.status == 0 else { throw CLIFailure(description: "moe-eval run failed: \(r.stderr)") }
            let names = try FileManager.default.contentsOfDirectory(atPath: out.path).filter { $0.hasSuffix(".json") }
            guard names.count == 1 else { throw CLIFailure(description: "expected one results file in \(out.path), found \(names)") }
            files.append(out.appendingPathComponent(names[0]))
        }
        return Runs(dir: dir, first: files[0], second: files[1])
    }

    struct CLIFailure: Error, CustomStringConvertible { let description: String }

    static func json(_ url: URL) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    }

    @Test func compareTwoRealRuns() throws {
        let runs = try Self.makeRuns()
        defer { CLI.cleanUp(runs.dir) }
        let r = try CLI.run(["compare", runs.first.path, runs.second.path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.isEmpty)
        #expect(r.stdout.contains("A: \(runs.first.path)"))
        #expect(r.stdout.contains("B: \(runs.second.path)"))
        #expect(r.stdout.contains("no file has inference_performance")) // the 30s preset runs no inference
        #expect(r.stdout.contains("avg_gini_coefficient"))
        #expect(r.stdout.contains("max_violation.p90"))
        #expect(r.stdout.contains("capacity_drop_rate[C=1.25].drop_rate"))
        #expect(r.stdout.contains("Summary (B vs A"))

        let j = try CLI.run(["compare", "--json", runs.first.path, runs.second.path])
        #expect(j.status == 0, "\(j.stderr)")
        let comparison = try #require(try JSONSerialization.jsonObject(with: Data(j.stdout.utf8)) as? [String: Any])
        let metrics = try #require(comparison["metrics"] as? [[String: Any]])
        // The numbers are the files' own: avg Gini and the seed's utilisation, with Δ = B − A.
        let a = try #require((try Self.json(runs.first)["routing_stats"] as? [String: Any])?["aggregate"] as? [String: Any])
        let b = try #require((try Self.json(runs.second)["routing_stats"] as? [String: Any])?["aggregate"] as? [String: Any])
        for key in ["avg_gini_coefficient", "avg_coefficient_of_variation", "avg_expert_utilization_rate"] {
            let row = try #require(
                metrics.first { $0["metric"] as? String == key && $0["section"] as? String == "routing_stats.aggregate" })
            let values = try #require(row["values"] as? [Double])
            let expectedA = try #require(a[key] as? Double), expectedB = try #require(b[key] as? Double)
            #expect(values == [expectedA, expectedB])
            // JSON text round trips may differ in the last bit (JSONEncoder writes 17 digits).
            #expect(abs((row["delta"] as? Double ?? .nan) - (expectedB - expectedA)) < 1e-15)
            #expect((row["bands"] as? [String])?.count == 2)
        }
        let active = try #require(metrics.first { $0["metric"] as? String == "active_params_billions" })
        #expect(active["direction"] as? String == "lower")
    }

    @Test func compareThreeFilesIsATableOverCheckpoints() throws {
        let runs = try Self.makeRuns()
        defer { CLI.cleanUp(runs.dir) }
        let r = try CLI.run(["compare", runs.first.path, runs.second.path, runs.first.path, "--layers"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("C: \(runs.first.path)"))
        #expect(r.stdout.contains("Δ (last−first)"))
        #expect(r.stdout.contains("routing_stats.layer_2"))
        // First and last are the same file: every judged metric is the same.
        #expect(r.stdout.contains("better 0, worse 0"))
    }

    @Test func compareRejectsFilesThatAreNotResults() throws {
        let runs = try Self.makeRuns()
        defer { CLI.cleanUp(runs.dir) }
        let modelArgs = CLI.dsv3Fixtures.appendingPathComponent("v022_softmax_basic/model_args.json")
        let notJSON = runs.dir.appendingPathComponent("notes.txt")
        try Data("routing was fine\n".utf8).write(to: notJSON)
        let missing = runs.dir.appendingPathComponent("nope.json")
        for (bad, fragment) in [(modelArgs, "is not an eval results file"), (notJSON, "not valid JSON"), (missing, "does not exist")] {
            let r = try CLI.run(["compare", runs.first.path, bad.path])
            #expect(r.status == 1, "\(r.stderr)")
            #expect(r.stderrLines.count == 1, "\(r.stderr)")
            #expect(r.stderr.contains(bad.path) && r.stderr.contains(fragment), "\(r.stderr)")
            #expect(r.stdout.isEmpty)
        }
        let one = try CLI.run(["compare", runs.first.path])
        #expect(one.status != 0 && one.stderr.contains("at least two"))
    }

    /// By scanning `attributes`: FoundationXML's `attribute(forName:)` misses plain attributes of elements in a namespace.
    func attribute(_ element: XMLElement, _ name: String) -> String? {
        element.attributes?.first { $0.name == name }?.stringValue
    }

    @Test func reportWritesOneWellFormedPageWithTheFileNumbers() throws {
        let runs = try Self.makeRuns()
        defer { CLI.cleanUp(runs.dir) }
        let r = try CLI.run(["report", runs.first.path])
        #expect(r.status == 0, "\(r.stderr)")
        let html = runs.first.deletingPathExtension().appendingPathExtension("html")
        #expect(r.stdout.contains("report written to \(html.path)"))
        let document = try XMLDocument(contentsOf: html, options: [])
        let results = try Self.json(runs.first)
        let routing = try #require(results["routing_stats"] as? [String: Any])
        let cells = try document.nodes(forXPath: "//*[@id='load-heatmap']/*[local-name()='rect'][@data-tokens]").compactMap {
            $0 as? XMLElement
        }
        var checked = 0
        for (key, value) in routing where key.hasPrefix("layer_") {
            let counts = try #require((value as? [String: Any])?["tokens_per_expert_distribution"] as? [Int])
            let drawn = cells.filter { attribute($0, "data-layer") == key }
                .compactMap { attribute($0, "data-tokens").flatMap(Double.init) }
            #expect(drawn == counts.map(Double.init))
            let maxVio = try #require((value as? [String: Any])?["max_violation"] as? Double)
            let bar =
                try document.nodes(forXPath: "//*[@id='maxvio-bars']/*[local-name()='rect'][@data-layer='\(key)']").first as? XMLElement
            #expect(bar.flatMap { attribute($0, "data-value") }.flatMap(Double.init) == maxVio)
            checked += 1
        }
        #expect(checked == 2)
        // The worst layer's pairs.
        let worst = try #require(((routing["aggregate"] as? [String: Any])?["max_violation"] as? [String: Any])?["worst_layer"] as? String)
        let pairs = try #require((routing[worst] as? [String: Any])?["top_coactivated_pairs"] as? [[String: Any]])
        let drawnPairs = try document.nodes(forXPath: "//*[@id='coactivation-matrix']/*[local-name()='rect'][@data-lift]").count
        #expect(drawnPairs == 2 * pairs.count)

        // Never overwritten without --overwrite; the page stays as it was.
        let before = try Data(contentsOf: html)
        let again = try CLI.run(["report", runs.first.path])
        #expect(again.status == 1 && again.stderrLines.count == 1 && again.stderr.contains("already exists"))
        #expect(try Data(contentsOf: html) == before)
        let forced = try CLI.run(["report", runs.first.path, "--overwrite"])
        #expect(forced.status == 0, "\(forced.stderr)")
        let custom = runs.dir.appendingPathComponent("custom.html")
        let elsewhere = try CLI.run(["report", runs.second.path, "--output", custom.path])
        #expect(elsewhere.status == 0 && FileManager.default.fileExists(atPath: custom.path))
        // No temporary files left behind.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: runs.dir.path).filter { $0.hasSuffix(".tmp") }
        #expect(leftovers.isEmpty)
    }

    @Test func reportRejectsANonResultsFile() throws {
        let dir = try CLI.scratch(copying: CLI.dsv3Fixtures.appendingPathComponent("v022_softmax_basic/model_args.json"))
        defer { CLI.cleanUp(dir) }
        let input = dir.appendingPathComponent("model_args.json")
        let r = try CLI.run(["report", input.path])
        #expect(r.status == 1)
        #expect(
            r.stderrLines.count == 1 && r.stderr.contains(input.path) && r.stderr.contains("is not an eval results file"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("model_args.html").path))
    }
}
