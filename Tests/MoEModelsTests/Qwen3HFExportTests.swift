import Foundation
import MoECheckpoint
import Testing

@testable import MoEModels

/// `Qwen3HFExport` against the golden `hf/` copy of v030_qwen3_fp32, which TorchTitan 0.3.0's
/// `Qwen3StateDictAdapter.to_hf` wrote and from which transformers 5.24 reproduced TorchTitan's logits
/// (max |Δ| 9.5e-7, variant.json "hf").
@Suite struct Qwen3HFExportTests {
    static let variant = "v030_qwen3_fp32"

    @Test func exportEqualsTheGoldenHFCopy() throws {
        let dir = Qwen3Fixtures.root.appendingPathComponent(Self.variant)
        let args = try Qwen3Fixtures.args(Self.variant)
        let source = try Qwen3WeightSource.open(at: dir.appendingPathComponent("checkpoint"), args: args)
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("qwen3-export-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: out) }
        // A small shard limit: several files and an index, as a large model gets.
        let (plan, notes) = try Qwen3HFExport.write(source: source, args: args, dtype: .keep, maxShardSize: 40_000, into: out)
        #expect(plan.shards.count > 1)
        #expect(notes.isEmpty, "the fixture's expert bias is zero: \(notes)")

        let written = try SafetensorsCheckpoint(url: out)
        let golden = try SafetensorsCheckpoint(url: dir.appendingPathComponent("hf/model.safetensors"))
        #expect(Set(written.rawTensorInfos.keys) == Set(golden.rawTensorInfos.keys))
        for name in golden.rawTensorInfos.keys.sorted() {
            let a = try written.loadRaw(name), b = try golden.loadRaw(name)
            #expect(a.dtype == b.dtype && a.shape == b.shape, "\(name)")
            #expect(a.bytes.elementsEqual(b.bytes), "\(name): bytes differ")
        }
        // config.json: the same Qwen3MoeConfig fields as the golden's (what transformers reads).
        let ours = try Qwen3Args.load(hfConfig: out.appendingPathComponent("config.json"))
        let theirs = try Qwen3Args.load(hfConfig: dir.appendingPathComponent("hf/config.json"))
        #expect(ours == theirs)

        // The exported folder loads back to TorchTitan's logits.
        let model = try Qwen3MoE(args: ours, weights: try Qwen3WeightSource.open(at: out, args: ours))
        let rows = try #require(try Qwen3Fixtures.json(Self.variant, "tokens.json")["tokens"] as? [[Int]])
        let reference = try #require(try Qwen3Fixtures.json(Self.variant, "expected.json")["logits"] as? [[[Double]]])
        let logits = try model.forward(tokens: rows.flatMap { $0.map(Int32.init) }, batch: rows.count, seqLen: rows[0].count)
        var worst: Float = 0, largest: Float = 0
        for b in 0..<rows.count {
            for t in 0..<rows[0].count {
                for (v, value) in reference[b][t].enumerated() {
                    worst = max(worst, abs(logits.row(b * rows[0].count + t)[v] - Float(value)))
                    largest = max(largest, abs(Float(value)))
                }
            }
        }
        #expect(worst <= 1e-4 * max(1, largest), "exported model: max |Δlogit| \(worst)")
    }

    /// A nonzero load-balancing bias cannot be expressed in Qwen3MoeForCausalLM: the export says so.
    @Test func nonzeroExpertBiasIsReported() throws {
        let variant = "v030_qwen3_expert_bias_two_process"
        let args = try Qwen3Fixtures.args(variant)
        let source = try Qwen3WeightSource.open(at: Qwen3Fixtures.root.appendingPathComponent("\(variant)/checkpoint"), args: args)
        let (plan, notes) = try Qwen3HFExport.plan(source: source, args: args, dtype: .bfloat16, maxShardSize: 1 << 30)
        #expect(notes.count == args.nLayers && notes.allSatisfy { $0.contains("no selection bias") })
        #expect(plan.tensors.allSatisfy { $0.dtype == .bfloat16 })
        #expect(plan.tensors.count == 3 + args.nLayers * (9 + 3 * args.moeArgs.numExperts))
    }
}
