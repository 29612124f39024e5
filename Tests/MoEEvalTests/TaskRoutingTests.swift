import Foundation
import MoEJSON
import Testing

@testable import MoEEval
@testable import MoEModels

/// Per-task routing: attribution of forward rows to tasks, and the per-task metrics on crafted loads.
@Suite struct TaskRoutingTests {
    @Test func rowsAreAttributedToTheirTasksAndPaddingIsIgnored() throws {
        let collector = TaskRoutingCollector()
        collector.label(requests: ["arc_easy", "piqa"])
        // Two rows of length 3: request 0 has 3 real tokens, request 1 has 1 (two padding positions).
        collector.beginForward(rows: [ForwardRow(request: 0, tokens: 3), ForwardRow(request: 1, tokens: 1)], seqLen: 3)
        RoutingInsightTests.decide(
            collector, layer: 1, picks: [0, 1, 0, 2, 3, 1, 2, 3, 0, 0, 0, 0],
            weights: [Float](repeating: 0.5, count: 12), logits: [Float](repeating: 0, count: 24))
        // Rolling windows beyond the labelled requests go to the fallback label.
        collector.label(requests: [], otherwise: "wikitext")
        collector.beginForward(rows: [ForwardRow(request: 5, tokens: 1)], seqLen: 1)
        RoutingInsightTests.decide(collector, layer: 1, picks: [3, 2], weights: [0.5, 0.5], logits: [0, 0, 0, 0])
        let sources = collector.finish()
        #expect(sources.map(\.label) == ["arc_easy", "piqa", "wikitext"])
        #expect(sources[0].loads[1] == [2, 2, 1, 1])
        #expect(sources[0].tokens == 3)
        #expect(sources[1].loads[1] == [0, 0, 1, 1])
        #expect(sources[1].tokens == 1)
        #expect(sources[2].loads[1] == [0, 0, 1, 1])
        #expect(collector.warnings.isEmpty)
    }

    @Test func perTaskMetricsByHand() throws {
        let routing = TaskRouting([
            .init(label: "a", tokens: 2, loads: [1: [3, 1, 0, 0]]),
            .init(label: "b", tokens: 2, loads: [1: [0, 0, 2, 2]]),
            .init(label: "empty", tokens: 0, loads: [:]),
        ])
        #expect(routing.tasks.map(\.label) == ["a", "b"])
        let a = routing.tasks[0]
        // KL(p ‖ u) = ln 4 − H(0.75, 0.25).
        let expected = log(4.0) + 0.75 * log(0.75) + 0.25 * log(0.25)
        #expect(abs((a.klToUniform["layer_1"] ?? 0) - expected) < 1e-12)
        #expect(abs(a.meanKLToUniform - expected) < 1e-12)
        // Pooled loads 3, 1, 2, 2: expert 0 has share 0.75 in a against 0.375 overall, expert 1 0.25 against 0.125.
        #expect(a.mostSpecialisedExperts.map(\.expert) == [0, 1])
        #expect(a.mostSpecialisedExperts[0].share == 0.75 && a.mostSpecialisedExperts[0].overallShare == 0.375)
        // Disjoint supports: 1 bit.
        let divergence = try #require(routing.divergences.first)
        #expect(divergence.a == "a" && divergence.b == "b")
        #expect(abs(divergence.meanJensenShannon - 1) < 1e-12)
    }

    /// Through the real scorer: every real token of every forward is counted once for its request's task,
    /// with and without shared-context scoring (whose sharing check re-scores a group but counts it once).
    @Test(arguments: [false, true])
    func theScorersForwardsAreCountedPerTask(sharesContext: Bool) throws {
        let model = try TaskTestsScorer.fixtureModel()
        let requests = TaskTestsScorer.requests()
        // The first three questions (4 choices each) are task a, everything else task b.
        let labels = requests.indices.map { $0 < 12 ? "a" : "b" }
        let collector = TaskRoutingCollector()
        collector.label(requests: labels)
        let scorer = NativeScorer(model: model, sharesContext: sharesContext)
        scorer.routingObserver = collector
        _ = try scorer.loglikelihood(requests)
        var expected: [String: Int] = [:]
        var groups: [[Int]: [TokenRequest]] = [:]
        for r in requests { groups[r.context, default: []].append(r) }
        for (index, r) in requests.enumerated() where !sharesContext || groups[r.context]!.count == 1 {
            expected[labels[index], default: 0] += r.context.count + r.continuation.count - 1
        }
        if sharesContext {
            for (context, members) in groups where members.count > 1 {
                let label = labels[requests.firstIndex { $0.context == context }!]
                expected[label, default: 0] += context.count + members.reduce(0) { $0 + $1.continuation.count - 1 }
            }
        }
        let sources = collector.finish()
        #expect(Dictionary(uniqueKeysWithValues: sources.map { ($0.label, $0.tokens) }) == expected)
        let topK = model.shape.topK
        for source in sources {
            for (_, loads) in source.loads { #expect(loads.reduce(0, +) == topK * source.tokens) }
        }
        #expect(collector.warnings.isEmpty)
    }

    /// The report's detail tables carry the insight keys and the per-task section with their exact values.
    @Test func reportShowsInsightAndTaskTables() throws {
        let collector = RoutingStatisticsCollector()
        RoutingInsightTests.decide(
            collector, layer: 1, picks: RoutingInsightTests.picks, weights: RoutingInsightTests.weights,
            logits: RoutingInsightTests.logits)
        let stats = RoutingMetrics.statistics(collector.finish())
        let routing = TaskRouting([
            .init(label: "a", tokens: 2, loads: [1: [3, 1, 0, 0]]),
            .init(label: "b", tokens: 2, loads: [1: [0, 0, 2, 2]]),
        ])
        let encoder = JSONValueEncoder()
        let object: JSONObject = [
            "routing_stats": try encoder.encode(stats), "task_routing": try encoder.encode(routing),
            "moe_eval": .object(["tool": .string("moe-eval")]),
        ]
        let page = HTMLReport.render(try ResultsFile.parse(Data(JSONValue.object(object).serialized.utf8), path: "r.json"))
        #expect(page.contains("id=\"insight-table\""))
        #expect(page.contains("data-key=\"layer_1/jain_fairness_index\" data-value=\"0.9\""))
        #expect(page.contains("id=\"task-routing-table\""))
        #expect(page.contains("layer_1/0: 0.750 vs 0.375"))
        #expect(page.contains("data-key=\"a/b/mean_jensen_shannon\" data-value=\"1.0\""))
    }
}
