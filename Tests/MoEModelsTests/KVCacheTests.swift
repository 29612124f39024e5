import Foundation
import Testing

@testable import MoEModels

/// Prefill + token-by-token decode through the KV cache gives the logits of one full forward.
@Suite struct KVCacheTests {
    @Test(arguments: ["v022_sigmoid_groups_yarn", "v030_debug_like", "v022_bf16_export"])
    func decodeMatchesFullForward(variant: String) throws {
        let dir = DSV3Fixtures.root.appendingPathComponent(variant)
        let rows = try #require(try DSV3Fixtures.json(variant, "tokens.json")["tokens"] as? [[Int]])
        let model = try ModelLoader.load(
            ModelSpec(
                checkpoint: dir.appendingPathComponent("checkpoint"),
                modelArgs: dir.appendingPathComponent("model_args.json"))
        ).model
        let batch = rows.count, seqLen = rows[0].count, vocab = model.shape.vocabSize
        let full = try model.forward(tokens: rows.flatMap { $0.map(Int32.init) }, batch: batch, seqLen: seqLen)

        let prefix = 5
        let cache = KVCache(model: model, batch: batch, capacity: seqLen)
        let first = try model.forward(
            tokens: rows.flatMap { $0[..<prefix].map(Int32.init) }, batch: batch, seqLen: prefix,
            cache: cache, logits: .last)
        var worst: Float = 0
        for b in 0..<batch {
            for v in 0..<vocab { worst = max(worst, abs(first.row(b)[v] - full.row(b * seqLen + prefix - 1)[v])) }
        }
        for t in prefix..<seqLen {
            let step = try model.forward(tokens: rows.map { Int32($0[t]) }, batch: batch, seqLen: 1, cache: cache, logits: .last)
            for b in 0..<batch {
                for v in 0..<vocab { worst = max(worst, abs(step.row(b)[v] - full.row(b * seqLen + t)[v])) }
            }
        }
        #expect(cache.length == seqLen)
        #expect(worst < 1e-5, "decode differs from the full forward by \(worst)")
        #expect(throws: ModelLoadError.self) {
            _ = try model.forward(tokens: [Int32](repeating: 1, count: batch), batch: batch, seqLen: 1, cache: cache)
        }
    }
}
