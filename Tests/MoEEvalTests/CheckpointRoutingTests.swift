import Foundation
import Testing

@testable import MoEEval
@testable import MoEModels

/// The collector on real routing: the tiny TorchTitan checkpoints of MoEModelsTests (written by
/// tools/reference/make_dsv3_fixtures.py with TorchTitan's own model code). `variant.json` records
/// `min_routing_margin`, the smallest k-th vs (k+1)-th biased-score gap (and, with expert groups, kept vs
/// dropped group-score gap) that TorchTitan's router produced on the fixture tokens.
@Suite struct CheckpointRoutingTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("MoEModelsTests/Fixtures/dsv3")

    /// Re-derives every decision with the collector's router reproduction (biased scores, node-limited
    /// groups, top-k with the model's tie rule) and counts disagreements, slot order included.
    final class SelectionCheck: RoutingObserver {
        let groups: Int?, limited: Int?
        var tokens = 0, disagreements = 0

        init(groups: Int?, limited: Int?) { self.groups = groups; self.limited = limited }

        func observe(_ decision: RoutingDecision) {
            let e = decision.numExperts, k = decision.topK
            let z = UnsafeMutablePointer<Float>.allocate(capacity: e), allowed = UnsafeMutablePointer<Bool>.allocate(capacity: e)
            let pick = UnsafeMutablePointer<Int32>.allocate(capacity: k)
            let groupScores = UnsafeMutablePointer<Float>.allocate(capacity: max(groups ?? 1, 1))
            let groupPick = UnsafeMutablePointer<Int32>.allocate(capacity: max(groups ?? 1, 1))
            defer { z.deallocate(); allowed.deallocate(); pick.deallocate(); groupScores.deallocate(); groupPick.deallocate() }
            for t in 0..<decision.tokenCount {
                for j in 0..<e { z[j] = decision.scores[t * e + j] + (decision.expertBias?[j] ?? 0) }
                if let groups, let limited {
                    RouterSelection.markAllowedGroups(
                        z, experts: e, groups: groups, limited: limited,
                        groupScores: groupScores, groupPick: groupPick, allowed: allowed)
                }
                RouterSelection.topK(z, count: e, k: k, allowed: groups == nil ? nil : UnsafePointer(allowed), into: pick)
                if (0..<k).contains(where: { pick[$0] != decision.experts[t * k + $0] }) { disagreements += 1 }
                tokens += 1
            }
        }
    }

    static func route(_ variant: String, observer: RoutingObserver) throws -> Double {
        let dir = fixtures.appendingPathComponent(variant)
        let tokensJSON = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("tokens.json")))
        let rows = try #require((tokensJSON as? [String: Any])?["tokens"] as? [[Int]], "\(variant)/tokens.json")
        let variantJSON = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("variant.json")))
        let margin = try #require((variantJSON as? [String: Any])?["min_routing_margin"] as? Double)
        let loaded = try ModelLoader.load(
            ModelSpec(
                checkpoint: dir.appendingPathComponent("checkpoint"),
                modelArgs: dir.appendingPathComponent("model_args.json")))
        _ = try loaded.model.forward(
            tokens: rows.flatMap { $0.map(Int32.init) }, batch: rows.count,
            seqLen: rows[0].count, observer: observer)
        return margin
    }

    @Test(arguments: ["v022_softmax_basic", "v022_sigmoid_groups_yarn"])
    func reproductionOfTheRouterMatchesTheModel(_ variant: String) throws {
        let dir = Self.fixtures.appendingPathComponent(variant)
        let argsJSON = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("model_args.json")))
        let moe = try #require((argsJSON as? [String: Any])?["moe_args"] as? [String: Any])
        let check = SelectionCheck(groups: moe["num_expert_groups"] as? Int, limited: moe["num_limited_groups"] as? Int)
        _ = try Self.route(variant, observer: check)
        #expect(check.tokens > 0)
        #expect(check.disagreements == 0)
    }

    /// Every fixture's TorchTitan margin is ≥ 1e-4; where it is ≥ 1e-3 no token may be fragile, and where it
    /// is below, at least one must be. A zero bias cannot reroute anything.
    @Test(arguments: ["v022_softmax_basic", "v022_sigmoid_groups_yarn"])
    func fragileTokensAgreeWithTorchTitansMargin(_ variant: String) throws {
        let dir = Self.fixtures.appendingPathComponent(variant)
        let argsJSON = try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("model_args.json")))
        let moe = try #require((argsJSON as? [String: Any])?["moe_args"] as? [String: Any])
        let collector = RoutingStatisticsCollector(
            expertGroups: moe["num_expert_groups"] as? Int,
            limitedGroups: moe["num_limited_groups"] as? Int)
        let margin = try Self.route(variant, observer: collector)
        let stats = RoutingMetrics.statistics(collector.finish())
        #expect(collector.warnings.isEmpty)
        #expect(!stats.layers.isEmpty)
        let fragile = stats.layers.reduce(0.0) { $0 + ($1.fragileTokenFraction ?? -1) }
        if margin >= Double(RoutingStatisticsCollector.fragileMarginThreshold) {
            #expect(fragile == 0, "\(variant): TorchTitan's smallest margin is \(margin)")
        } else {
            #expect(fragile > 0, "\(variant): TorchTitan's smallest margin is \(margin)")
        }
        for layer in stats.layers {
            #expect(layer.tokensPerExpertDistribution.reduce(0, +) == layer.topK * layer.numTokens)
            #expect((layer.auxBalanceLoss ?? 0) > 0)
        }
        if variant == "v022_softmax_basic" {
            // Its expert_bias is all zero (variant description).
            #expect(stats.layers.allSatisfy { $0.expertBiasRerouteRate == 0 })
        }
    }
}
