import Foundation
import MoECheckpoint
import Testing
@testable import MoEModels

/// Reference fixtures written by tools/reference/make_dsv3_fixtures.py with TorchTitan's own model code.
/// `MOE_EVAL_DSV3_FIXTURES=DIR` runs the same checks on fixtures regenerated with another seed.
enum DSV3Fixtures {
    static var root: URL {
        if let dir = ProcessInfo.processInfo.environment["MOE_EVAL_DSV3_FIXTURES"] { return URL(fileURLWithPath: dir) }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/dsv3")
    }

    static var variants: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        return names.filter { FileManager.default.fileExists(atPath: root.appendingPathComponent("\($0)/expected.json").path) }.sorted()
    }

    static func json(_ variant: String, _ file: String) throws -> [String: Any] {
        let data = try Data(contentsOf: root.appendingPathComponent("\(variant)/\(file)"))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }
}

struct Agreement {
    var maxLogitDiff: Float = 0
    var maxLogit: Float = 0
    var routedTokens = 0
    var expertSetMismatches = 0
    var maxWeightDiff: Float = 0
    var nonFiniteLogits = 0
}

/// Runs the model on the fixture's tokens and compares with TorchTitan's logits and routing.
func compareWithTorchTitan(variant: String, checkpoint: String = "checkpoint") throws -> Agreement {
    let dir = DSV3Fixtures.root.appendingPathComponent(variant)
    let tokenRows = try #require(try DSV3Fixtures.json(variant, "tokens.json")["tokens"] as? [[Int]])
    let expected = try DSV3Fixtures.json(variant, "expected.json")
    let spec = ModelSpec(checkpoint: dir.appendingPathComponent(checkpoint), modelArgs: dir.appendingPathComponent("model_args.json"))
    let loaded = try ModelLoader.load(spec)
    let recorder = RoutingRecorder()
    let batch = tokenRows.count, seqLen = tokenRows[0].count
    let logits = try loaded.model.forward(tokens: tokenRows.flatMap { $0.map(Int32.init) }, batch: batch, seqLen: seqLen, observer: recorder)

    var result = Agreement()
    let expectedLogits = try #require(expected["logits"] as? [[[Double]]])
    for b in 0..<batch {
        for t in 0..<seqLen {
            let row = logits.row(b * seqLen + t)
            for (v, value) in expectedLogits[b][t].enumerated() {
                if !row[v].isFinite { result.nonFiniteLogits += 1 }
                result.maxLogitDiff = max(result.maxLogitDiff, abs(row[v] - Float(value)))
                result.maxLogit = max(result.maxLogit, abs(Float(value)))
            }
        }
    }
    let routing = try #require(expected["routing"] as? [String: [String: Any]])
    #expect(Set(routing.keys.compactMap(Int.init)) == Set(recorder.experts.keys), "MoE layers differ")
    for (layerKey, layerRouting) in routing {
        let layer = try #require(Int(layerKey))
        let experts = try #require(layerRouting["experts"] as? [[Int]])
        let weights = try #require(layerRouting["weights"] as? [[Double]])
        let k = try #require(recorder.topK[layer])
        let ours = try #require(recorder.experts[layer]), ourWeights = try #require(recorder.weights[layer])
        #expect(experts.count * k == ours.count)
        for (t, reference) in experts.enumerated() where t * k + k <= ours.count {
            result.routedTokens += 1
            let mine = ours[(t * k)..<(t * k + k)].map(Int.init)
            if Set(mine) != Set(reference) { result.expertSetMismatches += 1; continue }
            for (slot, expert) in reference.enumerated() {
                let ourSlot = try #require(mine.firstIndex(of: expert))
                result.maxWeightDiff = max(result.maxWeightDiff, abs(ourWeights[t * k + ourSlot] - Float(weights[t][slot])))
            }
        }
    }
    let variantInfo = try DSV3Fixtures.json(variant, "variant.json")
    if let yarn = variantInfo["yarn_active"] as? Bool {
        #expect(loaded.model.numerics.yarn == yarn, "YaRN decision differs from TorchTitan's module")
    }
    if let eps = variantInfo["final_norm_eps"] as? Double {
        #expect(loaded.model.numerics.finalNormEps == Float(eps), "final norm eps differs from TorchTitan's module")
    }
    if let scale = variantInfo["softmax_scale"] as? Double {
        #expect(abs(Double(loaded.model.softmaxScale) - scale) <= 1e-6 * scale, "softmax scale differs")
    }
    return result
}

@Suite struct TorchTitanAgreementTests {
    @Test func fixturesArePresent() {
        #expect(DSV3Fixtures.variants.count >= 8, "expected the reference variants under \(DSV3Fixtures.root.path)")
    }

    /// max |Δlogit| ≤ 1e-4 · max(1, max|logit|) and identical expert sets on every token of every MoE layer.
    @Test(arguments: DSV3Fixtures.variants)
    func logitsAndRoutingMatchTorchTitan(variant: String) throws {
        let a = try compareWithTorchTitan(variant: variant)
        #expect(a.maxLogitDiff <= 1e-4 * max(1, a.maxLogit), "\(variant): max |Δlogit| \(a.maxLogitDiff) for max |logit| \(a.maxLogit)")
        #expect(a.nonFiniteLogits == 0, "\(variant): \(a.nonFiniteLogits) logits are NaN or infinite")
        #expect(a.routedTokens > 0)
        #expect(a.expertSetMismatches == 0, "\(variant): \(a.expertSetMismatches) of \(a.routedTokens) tokens routed to other experts")
        #expect(a.maxWeightDiff <= 1e-5, "\(variant): routing weights differ by \(a.maxWeightDiff)")
    }

    /// The same weights through HF safetensors names (2 shards + index) give the same numbers.
    @Test func huggingFaceCopyMatchesTorchTitan() throws {
        let variants = DSV3Fixtures.variants.filter {
            FileManager.default.fileExists(atPath: DSV3Fixtures.root.appendingPathComponent("\($0)/hf/model.safetensors.index.json").path)
        }
        #expect(!variants.isEmpty, "no variant has an hf/ copy")
        for variant in variants {
            let a = try compareWithTorchTitan(variant: variant, checkpoint: "hf")
            #expect(a.maxLogitDiff <= 1e-4 * max(1, a.maxLogit), "\(variant)/hf: max |Δlogit| \(a.maxLogitDiff)")
            #expect(a.nonFiniteLogits == 0)
            #expect(a.expertSetMismatches == 0)
        }
    }
}
