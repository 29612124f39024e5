import Foundation
import Testing

@testable import MoEModels

/// The decode path — absorbed MLA over the compressed KV cache, one-row GEMVs (the fused bf16 kernel for
/// bf16 checkpoints) and per-expert tasks — checked directly against TorchTitan's logits and routing, token by
/// token, with the same tolerance as the full forward (docs/MODEL.md): bf16 weights are widened exactly, so
/// the bf16 path computes in fp32 and needs no looser bound. Reports the routing agreement figure.
@Suite struct DecodePathAgreementTests {
    @Test(arguments: ["v022_bf16_export", "v030_sigmoid_groups_qlora", "v022_softmax_basic"])
    func decodedTokensMatchTorchTitan(variant: String) throws {
        let dir = DSV3Fixtures.root.appendingPathComponent(variant)
        let rows = try #require(try DSV3Fixtures.json(variant, "tokens.json")["tokens"] as? [[Int]])
        let expected = try DSV3Fixtures.json(variant, "expected.json")
        let expectedLogits = try #require(expected["logits"] as? [[[Double]]])
        let routing = try #require(expected["routing"] as? [String: [String: Any]])
        let model = try ModelLoader.load(
            ModelSpec(
                checkpoint: dir.appendingPathComponent("checkpoint"),
                modelArgs: dir.appendingPathComponent("model_args.json"))
        ).model
        let batch = rows.count, seqLen = rows[0].count, vocab = model.shape.vocabSize

        let cache = KVCache(model: model, batch: batch, capacity: seqLen)
        let recorder = RoutingRecorder()
        var worst: Float = 0, largest: Float = 0
        for t in 0..<seqLen {
            let step = try model.forward(
                tokens: rows.map { Int32($0[t]) }, batch: batch, seqLen: 1, cache: cache,
                logits: .last, observer: recorder)
            for b in 0..<batch {
                for v in 0..<vocab {
                    let reference = Float(expectedLogits[b][t][v])
                    worst = max(worst, abs(step.row(b)[v] - reference))
                    largest = max(largest, abs(reference))
                }
            }
        }
        #expect(worst <= 1e-4 * max(1, largest), "\(variant): decode max |Δlogit| \(worst) for max |logit| \(largest)")

        // The recorder holds step-major (t, b) rows; the fixture holds (b, t).
        var selections = 0, agreeing = 0
        for (layerKey, layerRouting) in routing {
            let layer = try #require(Int(layerKey))
            let reference = try #require(layerRouting["experts"] as? [[Int]])
            let ours = try #require(recorder.experts[layer]), k = try #require(recorder.topK[layer])
            #expect(ours.count == batch * seqLen * k)
            for b in 0..<batch {
                for t in 0..<seqLen where (t * batch + b + 1) * k <= ours.count {
                    let mine = Set(ours[((t * batch + b) * k)..<((t * batch + b + 1) * k)].map(Int.init))
                    let theirs = reference[b * seqLen + t]
                    selections += theirs.count
                    agreeing += theirs.filter { mine.contains($0) }.count
                }
            }
        }
        let agreement = Double(agreeing) / Double(max(selections, 1))
        print("\(variant): decode routing agreement \(agreeing)/\(selections) = \(agreement * 100) %, max |Δlogit| \(worst)")
        #expect(selections > 0)
        #expect(agreement >= 0.999, "\(variant): decode routing agreement \(agreement)")
    }
}
