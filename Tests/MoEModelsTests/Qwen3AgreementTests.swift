import Foundation
import MoECheckpoint
import Testing

@testable import MoEModels

/// Qwen3-MoE reference fixtures written by tools/reference/make_family_fixtures.py with TorchTitan 0.3.0's own
/// `qwen3` model code (each `variant.json` states the math), and the `hf/` copy written by TorchTitan's
/// `Qwen3StateDictAdapter.to_hf` that transformers reproduced.
enum Qwen3Fixtures {
    static var root: URL { URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/qwen3") }

    static var variants: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        return names.filter { FileManager.default.fileExists(atPath: root.appendingPathComponent("\($0)/expected.json").path) }.sorted()
    }

    static func json(_ variant: String, _ file: String) throws -> [String: Any] {
        let data = try Data(contentsOf: root.appendingPathComponent("\(variant)/\(file)"))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    static func args(_ variant: String) throws -> Qwen3Args {
        try Qwen3Args.load(jsonFile: root.appendingPathComponent("\(variant)/model_args.json"))
    }

    static func model(_ variant: String, checkpoint: String = "checkpoint") throws -> Qwen3MoE {
        let args = try args(variant)
        let source = try Qwen3WeightSource.open(at: root.appendingPathComponent("\(variant)/\(checkpoint)"), args: args)
        return try Qwen3MoE(args: args, weights: source)
    }
}

@Suite struct Qwen3AgreementTests {
    @Test func fixturesArePresent() {
        #expect(Qwen3Fixtures.variants == ["v030_qwen3_bf16", "v030_qwen3_expert_bias_two_process", "v030_qwen3_fp32"])
    }

    /// Prefill: max |Δlogit| ≤ 1e-4 · max(1, max|logit|) over every position, identical expert sets on every token
    /// of every layer, routing weights within 1e-5.
    @Test(arguments: Qwen3Fixtures.variants)
    func prefillMatchesTorchTitan(variant: String) throws {
        let model = try Qwen3Fixtures.model(variant)
        let rows = try #require(try Qwen3Fixtures.json(variant, "tokens.json")["tokens"] as? [[Int]])
        let expected = try Qwen3Fixtures.json(variant, "expected.json")
        let recorder = RoutingRecorder()
        let batch = rows.count, seqLen = rows[0].count
        let logits = try model.forward(tokens: rows.flatMap { $0.map(Int32.init) }, batch: batch, seqLen: seqLen, observer: recorder)
        let reference = try #require(expected["logits"] as? [[[Double]]])
        var worst: Float = 0, largest: Float = 0
        for b in 0..<batch {
            for t in 0..<seqLen {
                for (v, value) in reference[b][t].enumerated() {
                    #expect(logits.row(b * seqLen + t)[v].isFinite)
                    worst = max(worst, abs(logits.row(b * seqLen + t)[v] - Float(value)))
                    largest = max(largest, abs(Float(value)))
                }
            }
        }
        print("qwen3 \(variant): prefill max |Δlogit| \(worst) for max |logit| \(largest)")
        #expect(worst <= 1e-4 * max(1, largest), "\(variant): max |Δlogit| \(worst) for max |logit| \(largest)")

        let routing = try #require(expected["routing"] as? [String: [String: Any]])
        #expect(Set(routing.keys.compactMap(Int.init)) == Set(recorder.experts.keys))
        var tokens = 0, mismatches = 0, weightDiff: Float = 0
        for (layerKey, layerRouting) in routing {
            let layer = try #require(Int(layerKey))
            let experts = try #require(layerRouting["experts"] as? [[Int]])
            let weights = try #require(layerRouting["weights"] as? [[Double]])
            let ours = try #require(recorder.experts[layer]), ourWeights = try #require(recorder.weights[layer])
            let k = try #require(recorder.topK[layer])
            #expect(ours.count == experts.count * k)
            for (t, theirs) in experts.enumerated() where (t + 1) * k <= ours.count {
                tokens += 1
                let mine = ours[(t * k)..<((t + 1) * k)].map(Int.init)
                guard Set(mine) == Set(theirs) else { mismatches += 1; continue }
                for (slot, expert) in theirs.enumerated() {
                    let ourSlot = try #require(mine.firstIndex(of: expert))
                    weightDiff = max(weightDiff, abs(ourWeights[t * k + ourSlot] - Float(weights[t][slot])))
                }
            }
        }
        #expect(tokens == batch * seqLen * model.args.nLayers)
        #expect(mismatches == 0, "\(variant): \(mismatches) of \(tokens) tokens routed to other experts")
        #expect(weightDiff <= 1e-5, "\(variant): routing weights differ by \(weightDiff)")
    }

    /// Decode: token by token through the KV cache, the same logits and experts as TorchTitan's full forward.
    @Test(arguments: Qwen3Fixtures.variants)
    func decodeMatchesTorchTitan(variant: String) throws {
        let model = try Qwen3Fixtures.model(variant)
        let rows = try #require(try Qwen3Fixtures.json(variant, "tokens.json")["tokens"] as? [[Int]])
        let expected = try Qwen3Fixtures.json(variant, "expected.json")
        let reference = try #require(expected["logits"] as? [[[Double]]])
        let batch = rows.count, seqLen = rows[0].count
        let cache = try KVCache(model: model, batch: batch, capacity: seqLen)
        let recorder = RoutingRecorder()
        var worst: Float = 0, largest: Float = 0
        for t in 0..<seqLen {
            let step = try model.forward(
                tokens: rows.map { Int32($0[t]) }, batch: batch, seqLen: 1, cache: cache,
                logits: .last, observer: recorder)
            for b in 0..<batch {
                for (v, value) in reference[b][t].enumerated() {
                    worst = max(worst, abs(step.row(b)[v] - Float(value)))
                    largest = max(largest, abs(Float(value)))
                }
            }
        }
        print("qwen3 \(variant): decode max |Δlogit| \(worst) for max |logit| \(largest)")
        #expect(worst <= 1e-4 * max(1, largest), "\(variant): decode max |Δlogit| \(worst)")
        #expect(cache.length == seqLen)
        // The recorder holds step-major (t, b) rows; the fixture holds (b, t).
        let routing = try #require(expected["routing"] as? [String: [String: Any]])
        var mismatches = 0, tokens = 0
        for (layerKey, layerRouting) in routing {
            let layer = try #require(Int(layerKey))
            let theirs = try #require(layerRouting["experts"] as? [[Int]])
            let ours = try #require(recorder.experts[layer]), k = try #require(recorder.topK[layer])
            #expect(ours.count == batch * seqLen * k)
            for b in 0..<batch {
                for t in 0..<seqLen where (t * batch + b + 1) * k <= ours.count {
                    tokens += 1
                    let mine = Set(ours[((t * batch + b) * k)..<((t * batch + b + 1) * k)].map(Int.init))
                    if mine != Set(theirs[b * seqLen + t]) { mismatches += 1 }
                }
            }
        }
        #expect(
            tokens == batch * seqLen * model.args.nLayers && mismatches == 0,
            "\(variant): \(mismatches) of \(tokens) decoded tokens routed differently")
    }

    /// The HF `Qwen3MoeForCausalLM` copy: the same numbers as the DCP checkpoint and TorchTitan, in prefill and decode.
    @Test func huggingFaceCopyMatchesTorchTitan() throws {
        let variant = "v030_qwen3_fp32"
        let hfArgs = try Qwen3Args.load(hfConfig: Qwen3Fixtures.root.appendingPathComponent("\(variant)/hf/config.json"))
        var dcpArgs = try Qwen3Fixtures.args(variant)
        // HF has no load-balancing bias (zero in this fixture) and its config has no load_balance_coeff.
        dcpArgs.moeArgs.loadBalanceCoeff = nil
        #expect(hfArgs == dcpArgs)
        let source = try Qwen3WeightSource.open(at: Qwen3Fixtures.root.appendingPathComponent("\(variant)/hf"), args: hfArgs)
        #expect(source.namingEra == .huggingface)
        let model = try Qwen3MoE(args: hfArgs, weights: source)
        let rows = try #require(try Qwen3Fixtures.json(variant, "tokens.json")["tokens"] as? [[Int]])
        let reference = try #require(try Qwen3Fixtures.json(variant, "expected.json")["logits"] as? [[[Double]]])
        let batch = rows.count, seqLen = rows[0].count
        let logits = try model.forward(tokens: rows.flatMap { $0.map(Int32.init) }, batch: batch, seqLen: seqLen)
        let cache = try KVCache(model: model, batch: batch, capacity: seqLen)
        var worst: Float = 0, worstDecode: Float = 0, largest: Float = 0
        for t in 0..<seqLen {
            let step = try model.forward(tokens: rows.map { Int32($0[t]) }, batch: batch, seqLen: 1, cache: cache, logits: .last)
            for b in 0..<batch {
                for (v, value) in reference[b][t].enumerated() {
                    worst = max(worst, abs(logits.row(b * seqLen + t)[v] - Float(value)))
                    worstDecode = max(worstDecode, abs(step.row(b)[v] - Float(value)))
                    largest = max(largest, abs(Float(value)))
                }
            }
        }
        // transformers' own logits for the last position (hf_expected.json) agree too.
        let hfLast = try #require(try Qwen3Fixtures.json(variant, "hf_expected.json")["logits"] as? [[Double]])
        var worstHF: Float = 0
        for b in 0..<batch {
            for (v, value) in hfLast[b].enumerated() { worstHF = max(worstHF, abs(logits.row(b * seqLen + seqLen - 1)[v] - Float(value))) }
        }
        print("qwen3 hf copy: max |Δlogit| prefill \(worst), decode \(worstDecode), vs transformers \(worstHF)")
        #expect(worst <= 1e-4 * max(1, largest) && worstDecode <= 1e-4 * max(1, largest) && worstHF <= 1e-4 * max(1, largest))
    }

    /// The two-process save: every tensor but the q/k/v projections is split over two .distcp files, tok_embeddings
    /// and lm_head unevenly (49 rows: 25 + 24).
    @Test func twoProcessSaveIsReassembled() throws {
        let variant = "v030_qwen3_expert_bias_two_process"
        let source = try Qwen3WeightSource.open(
            at: Qwen3Fixtures.root.appendingPathComponent("\(variant)/checkpoint"), args: Qwen3Fixtures.args(variant))
        #expect(source.description.contains("2 files") || source.entries.contains { $0.chunkCount == 2 })
        #expect(source.tensorInfos["lm_head.weight"]?.shape == [49, 32])
        let model = try Qwen3Fixtures.model(variant)
        #expect(model.layers.allSatisfy { $0.moe.expertBias != nil && $0.moe.expertBias!.contains { $0 != 0 } })
    }
}
