import Foundation
import Testing

@testable import MoEEval
@testable import MoEModels

/// Routing agreement on checkpoints of one real training run: a tiny DeepSeek-V3 trained with TorchTitan
/// 0.3.0's model code, load-balancing hook and CheckpointManager (tools/reference/make_training_run_fixtures.py),
/// saved at steps 0, 50, 150 and 400, plus the same recipe with another seed.
@Suite struct TrainingRunAgreementTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/training_run")
    static let steps = [0, 50, 150, 400]
    static let final = "seed0/step-400"

    static func tokens() throws -> [[Int32]] {
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: fixtures.appendingPathComponent("tokens.json")))
        let rows = try #require((object as? [String: Any])?["tokens"] as? [[Int]])
        return rows.map { $0.map(Int32.init) }
    }

    static func route(_ checkpoint: String) throws -> RoutedExperts {
        let loaded = try ModelLoader.load(
            ModelSpec(
                checkpoint: fixtures.appendingPathComponent(checkpoint),
                modelArgs: fixtures.appendingPathComponent("model_args.json")))
        let insight = RoutingInsightCollector(recordedTokenLimit: Int.max)
        for row in try tokens() {
            insight.beginForward(tokens: row)
            _ = try loaded.model.forward(tokens: row, batch: 1, seqLen: row.count, logits: .last, observer: insight)
        }
        #expect(insight.warnings.isEmpty)
        return try #require(insight.routedExperts())
    }

    /// TorchTitan's own routing of the same tokens (written by the generator), agreement with the final step.
    static func torchtitan(_ checkpoint: String) throws -> (top1: Double, overlap: Double, margin: Double) {
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: fixtures.appendingPathComponent("torchtitan_agreement.json")))
        let entry = try #require(((object as? [String: Any])?["checkpoints"] as? [String: Any])?[checkpoint] as? [String: Any])
        let layers = try #require(entry["layers"] as? [String: [String: Double]])
        let top1 = layers.values.map { $0["top1_agreement_with_final"] ?? .nan }
        let overlap = layers.values.map { $0["topk_overlap_with_final"] ?? .nan }
        return (
            top1.reduce(0, +) / Double(top1.count), overlap.reduce(0, +) / Double(overlap.count),
            try #require(entry["min_routing_margin"] as? Double)
        )
    }

    @Test func selfAgreementIsExactlyOne() throws {
        let final = try Self.route(Self.final)
        let agreement = try RoutingAgreement.between(final, try Self.route(Self.final))
        #expect(agreement.top1Agreement == 1)
        #expect(agreement.topKOverlap == 1)
        #expect(agreement.weightedOverlap == 1)
    }

    /// Top-1 agreement with step 400 rises at every saved step. The top-k overlap is not monotone in this run:
    /// the random init (step 0) shares more second choices with the final router than step 50 does
    /// (TorchTitan's own routing gives the same numbers, torchtitan_agreement.json), so it is checked
    /// after step 50 (50 → 150 → 400).
    @Test func agreementWithTheFinalCheckpointRisesWithStep() throws {
        let final = try Self.route(Self.final)
        var previousTop1 = -1.0, previousOverlap = -1.0
        var rows: [String] = []
        for step in Self.steps {
            let name = "seed0/step-\(step)"
            let agreement = try RoutingAgreement.between(try Self.route(name), final)
            rows.append(
                String(
                    format: "step %d: top-1 %.3f, top-k overlap %.3f, weighted %.3f", step,
                    agreement.top1Agreement, agreement.topKOverlap, agreement.weightedOverlap))
            #expect(agreement.top1Agreement > previousTop1, "\(rows.joined(separator: "; "))")
            if step > 50 { #expect(agreement.topKOverlap > previousOverlap, "\(rows.joined(separator: "; "))") }
            previousTop1 = agreement.top1Agreement
            previousOverlap = agreement.topKOverlap
            // The same numbers as TorchTitan's routing of these tokens (every decision at least 1e-5 from a tie;
            // the two forwards differ by ~1e-6 in fp32).
            let reference = try Self.torchtitan(name)
            let finalMargin = try Self.torchtitan(Self.final).margin
            if reference.margin >= 1e-5 && finalMargin >= 1e-5 {
                #expect(abs(agreement.topKOverlap - reference.overlap) < 1e-12, "\(name)")
                #expect(abs(agreement.top1Agreement - reference.top1) < 1e-12, "\(name)")
            }
        }
        #expect(previousTop1 == 1 && previousOverlap == 1)
        print(rows.joined(separator: "\n"))
    }

    /// Two runs that differ only in the seed learn unrelated expert labellings: agreement near chance.
    @Test func differentlySeededModelsSitNearChance() throws {
        let agreement = try RoutingAgreement.between(try Self.route("seed1/step-400"), try Self.route(Self.final))
        print(
            String(
                format: "seed 1 vs seed 0: top-1 %.3f (chance %.3f), top-k overlap %.3f (chance %.3f), weighted %.3f",
                agreement.top1Agreement, agreement.top1AgreementChance, agreement.topKOverlap,
                agreement.topKOverlapChance, agreement.weightedOverlap))
        #expect(abs(agreement.top1Agreement - agreement.top1AgreementChance) < 0.1)
        #expect(abs(agreement.topKOverlap - agreement.topKOverlapChance) < 0.1)
        #expect(abs(agreement.weightedOverlap - agreement.weightedOverlapChance) < 0.1)
    }
}
