import Foundation
import Testing

/// The headline routing metrics in a results file, recomputed here from its per-expert counts with the
/// textbook formulas (docs/METRICS.md), independently of the code that wrote them.
@Suite struct RoutingFileRecomputeTests {
    @Test func metricsFollowFromTheCountsInTheFile() throws {
        let out = try CLI.scratch()
        defer { CLI.cleanUp(out) }
        // The demo model on its default demo text: the path `moe-eval run` takes with no arguments.
        let r = try CLI.run(["run", "--preset", "30s", "--quiet", "--output-dir", out.path])
        #expect(r.status == 0, "\(r.stderr)")
        let file = try #require(try FileManager.default.contentsOfDirectory(atPath: out.path).first { $0.hasSuffix(".json") })
        let json = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: out.appendingPathComponent(file))) as? [String: Any])
        let routing = try #require(json["routing_stats"] as? [String: Any])
        let layers = routing.keys.filter { $0.hasPrefix("layer_") }
        #expect(layers.count == 3)
        var ginis: [Double] = []
        for name in layers {
            let layer = try #require(routing[name] as? [String: Any])
            let counts = try #require(layer["tokens_per_expert_distribution"] as? [Double])
            let k = try #require(layer["top_k"] as? Int), tokens = try #require(layer["num_tokens"] as? Int)
            let e = Double(counts.count), total = counts.reduce(0, +)
            #expect(total == Double(k * tokens))
            let mean = total / e
            let std = (counts.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / e).squareRoot()
            let sorted = counts.sorted()
            let gini = 2 * sorted.enumerated().map { Double($0.offset + 1) * $0.element }.reduce(0, +) / (e * total) - (e + 1) / e
            let entropy = -counts.filter { $0 > 0 }.map { $0 / total * log($0 / total) }.reduce(0, +)
            func close(_ key: String, _ value: Double) {
                #expect(
                    abs((layer[key] as? Double ?? .nan) - value) <= 1e-9 * max(1, abs(value)),
                    "\(name).\(key): file \(layer[key] ?? "nil"), recomputed \(value)")
            }
            close("gini_coefficient", gini)
            close("coefficient_of_variation", std / mean)
            close("max_violation", counts.max()! / mean - 1)
            close("effective_experts_fraction", exp(entropy) / e)
            close("expert_utilization_rate", Double(counts.filter { $0 > 0 }.count) / e)
            for entry in try #require(layer["ep_overload_factor_by_degree"] as? [[String: Any]]) {
                let degree = try #require(entry["degree"] as? Int)
                let per = counts.count / degree
                let loads = (0..<degree).map { rank in counts[(rank * per)..<((rank + 1) * per)].reduce(0, +) }
                let expected = loads.max()! / (loads.reduce(0, +) / Double(degree))
                #expect(abs((entry["overload_factor"] as? Double ?? .nan) - expected) < 1e-12, "\(name) EP \(degree)")
            }
            for entry in try #require(layer["capacity_drop_rate"] as? [[String: Any]]) {
                let c = try #require(entry["capacity_factor"] as? Double)
                let capacity = (c * total / e).rounded(.up)
                let dropped = counts.map { max(0, $0 - capacity) }.reduce(0, +)
                #expect(abs((entry["drop_rate_global"] as? Double ?? .nan) - dropped / total) < 1e-12, "\(name) C=\(c)")
            }
            ginis.append(gini)
        }
        let aggregate = try #require(routing["aggregate"] as? [String: Any])
        let average = ginis.reduce(0, +) / Double(ginis.count)
        #expect(abs((aggregate["avg_gini_coefficient"] as? Double ?? .nan) - average) < 1e-12)
        let record = try #require(json["moe_eval"] as? [String: Any])
        let input = try #require(record["routing_input"] as? [String: Any])
        #expect(input["kind"] as? String == "text" && (input["source"] as? String)?.hasSuffix("assets/demo/demo_text.txt") == true)
    }
}
