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
    return try compareWithTorchTitan(
        checkpoint: dir.appendingPathComponent(checkpoint), modelArgs: dir.appendingPathComponent("model_args.json"),
        tokens: dir.appendingPathComponent("tokens.json"), expected: dir.appendingPathComponent("expected.json"),
        variantInfo: dir.appendingPathComponent("variant.json"))
}

func compareWithTorchTitan(checkpoint: URL, modelArgs: URL, tokens: URL, expected expectedFile: URL, variantInfo: URL?) throws -> Agreement
{
    func json(_ url: URL) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    }
    let tokenRows = try #require(try json(tokens)["tokens"] as? [[Int]])
    let expected = try json(expectedFile)
    let loaded = try ModelLoader.load(ModelSpec(checkpoint: checkpoint, modelArgs: modelArgs))
    let recorder = RoutingRecorder()
    let batch = tokenRows.count, seqLen = tokenRows[0].count
    let logits = try loaded.model.forward(
        tokens: tokenRows.flatMap { $0.map(Int32.init) }, batch: batch, seqLen: seqLen, observer: recorder)

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
    let info = try variantInfo.map { try json($0) } ?? [:]
    if let yarn = info["yarn_active"] as? Bool {
        #expect(loaded.model.numerics.yarn == yarn, "YaRN decision differs from TorchTitan's module")
    }
    if let eps = info["final_norm_eps"] as? Double {
        #expect(loaded.model.numerics.finalNormEps == Float(eps), "final norm eps differs from TorchTitan's module")
    }
    if let scale = info["softmax_scale"] as? Double {
        #expect(abs(Double(try #require(loaded.model as? DeepSeekV3).softmaxScale) - scale) <= 1e-6 * scale, "softmax scale differs")
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

/// The bundled demo model (assets/demo, trained with TorchTitan 0.2.2's code, bf16 weights) against the
/// reference forward its training script recorded.
@Suite struct DemoModelAgreementTests {
    @Test func demoCheckpointMatchesTorchTitan() throws {
        var root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: root.appendingPathComponent("Package.swift").path) { root.deleteLastPathComponent() }
        let demo = root.appendingPathComponent("assets/demo")
        let reference = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: demo.appendingPathComponent("reference_tokens.json"))) as? [String: Any]
        )
        let checkpoint = try #require(reference["checkpoint"] as? String)
        let a = try compareWithTorchTitan(
            checkpoint: demo.appendingPathComponent(checkpoint.hasPrefix("checkpoint") ? checkpoint : "checkpoint/step-800"),
            modelArgs: demo.appendingPathComponent("model_args.json"),
            tokens: demo.appendingPathComponent("reference_tokens.json"),
            expected: demo.appendingPathComponent("reference_forward.json"), variantInfo: nil)
        #expect(a.nonFiniteLogits == 0)
        #expect(a.maxLogitDiff <= 1e-4 * max(1, a.maxLogit), "max |Δlogit| \(a.maxLogitDiff)")
        #expect(a.routedTokens > 0 && a.expertSetMismatches == 0)
    }
}
