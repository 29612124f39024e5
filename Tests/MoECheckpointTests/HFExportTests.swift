import Foundation
import MoEModels
import MoETensor
import Testing

@testable import MoECheckpoint

/// TorchTitan DCP → HF DeepSeek-V3 safetensors, read back through our HF reader.
@Suite struct HFExportTests {
    static let dsv3 = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../MoEModelsTests/Fixtures/dsv3").standardizedFileURL

    static func scratch() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("hfexport-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    static func export(
        _ source: WeightSource, dtype: HFExportDType = .keep, maxShardSize: Int = 5_000_000_000
    ) throws -> (URL, HFExportPlan) {
        let dir = try scratch()
        let plan = try HFExportPlan(source: source, dtype: dtype, maxShardSize: maxShardSize)
        try HFExport.write(plan, from: source, into: dir)
        return (dir, plan)
    }

    /// Every tensor read back from the HF files (experts re-stacked) equals the checkpoint's, bit for bit:
    /// one process and FSDP-sharded (chunks reassembled), both naming eras, fp32 and bf16.
    @Test(arguments: ["v022_sigmoid_groups_yarn", "v022_two_process_fsdp", "v030_sigmoid_groups_qlora", "v022_bf16_export"])
    func roundTripIsBitIdentical(variant: String) throws {
        let dcp = try openWeightSource(at: Self.dsv3.appendingPathComponent("\(variant)/checkpoint"))
        let (dir, plan) = try Self.export(dcp, maxShardSize: 60_000)
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(plan.shards.count > 1)
        let hf = try openWeightSource(at: dir)
        #expect(hf.namingEra == .huggingface)
        #expect(Set(hf.tensorInfos.keys) == Set(dcp.tensorInfos.keys))
        for name in dcp.tensorInfos.keys.sorted() {
            let a = try dcp.load(name), b = try hf.load(name)
            #expect(a.dtype == b.dtype && a.shape == b.shape, "\(name)")
            #expect(a.bytes.elementsEqual(b.bytes), "\(name): bytes differ")
        }
    }

    @Test func shardsRespectTheLimitAndTheIndexListsEveryTensor() throws {
        let dcp = try openWeightSource(at: Self.dsv3.appendingPathComponent("v022_sigmoid_groups_yarn/checkpoint"))
        let limit = 20_000
        let (dir, plan) = try Self.export(dcp, maxShardSize: limit)
        defer { try? FileManager.default.removeItem(at: dir) }
        let count = plan.shards.count
        #expect(plan.shards.map(\.fileName) == (1...count).map { String(format: "model-%05d-of-%05d.safetensors", $0, count) })
        for shard in plan.shards {
            #expect(shard.byteCount <= limit || shard.tensors.count == 1)
            let file = try SafetensorsFile(url: dir.appendingPathComponent(shard.fileName))
            #expect(Set(file.tensorInfos.keys) == Set(shard.tensors.map(\.name)))
            #expect(file.metadata == ["format": "pt"])
        }
        let index =
            try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("model.safetensors.index.json")))
            as? [String: Any]
        let weightMap = try #require(index?["weight_map"] as? [String: String])
        #expect(weightMap.count == plan.tensors.count)
        #expect((index?["metadata"] as? [String: Any])?["total_size"] as? Int == plan.totalSize)
        // Experts of one grouped weight are written one after another (one grouped tensor in memory at a time).
        let names = plan.shards.flatMap { $0.tensors.map(\.name) }
        let experts = names.filter { $0.hasPrefix("model.layers.2.mlp.experts.") && $0.hasSuffix("gate_proj.weight") }
        let first = try #require(names.firstIndex(of: experts[0]))
        #expect(Array(names[first..<(first + experts.count)]) == (0..<8).map { "model.layers.2.mlp.experts.\($0).gate_proj.weight" })
    }

    /// fp32 → bf16 rounds to nearest even (checked against an independent rounding here); the routing
    /// bias stays fp32; bf16 → fp32 widens exactly.
    @Test func dtypeConversion() throws {
        let dcp = try openWeightSource(at: Self.dsv3.appendingPathComponent("v022_sigmoid_groups_yarn/checkpoint"))
        let (dir, _) = try Self.export(dcp, dtype: .bfloat16)
        defer { try? FileManager.default.removeItem(at: dir) }
        let hf = try openWeightSource(at: dir)
        #expect(hf.tensorInfos["layers.2.moe.expert_bias"]?.dtype == .float32)
        for name in ["layers.2.moe.experts.w1", "tok_embeddings.weight", "layers.0.attention.wq_a.weight"] {
            let a = try dcp.load(name), b = try hf.load(name)
            #expect(b.dtype == .bfloat16)
            let expected = (0..<a.elementCount).map { i -> UInt16 in
                let bits = a.bytes.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)
                let upper = bits >> 16, lower = bits & 0xffff
                return UInt16(truncatingIfNeeded: (lower > 0x8000 || (lower == 0x8000 && upper & 1 == 1)) ? upper + 1 : upper)
            }
            let got = (0..<b.elementCount).map { b.bytes.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self) }
            #expect(got == expected, "\(name)")
        }

        let bf16 = try openWeightSource(at: Self.dsv3.appendingPathComponent("v022_bf16_export/checkpoint"))
        let (wide, _) = try Self.export(bf16, dtype: .float32)
        defer { try? FileManager.default.removeItem(at: wide) }
        let widened = try openWeightSource(at: wide)
        for name in bf16.tensorInfos.keys.sorted() {
            let a = try bf16.load(name), b = try widened.load(name)
            #expect(b.dtype == .float32)
            let ok = (0..<a.elementCount).allSatisfy { i in
                UInt32(a.bytes.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)) << 16
                    == b.bytes.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)
            }
            #expect(ok, "\(name)")
        }
    }

    /// A MoE layer without `expert_bias` (TorchTitan without load balancing) gets an all-zero fp32
    /// `e_score_correction_bias`; a router gate bias has no HF name and is refused.
    @Test func missingExpertBiasAndGateBias() throws {
        let dcp = try openWeightSource(at: Self.dsv3.appendingPathComponent("v022_softmax_basic/checkpoint"))
        let withoutBias = FilteredSource(base: dcp, dropping: { $0.hasSuffix("moe.expert_bias") })
        let (dir, plan) = try Self.export(withoutBias)
        defer { try? FileManager.default.removeItem(at: dir) }
        let bias = try #require(plan.tensors.first { $0.name == "model.layers.1.mlp.gate.e_score_correction_bias" })
        #expect(bias.origin == .zeros && bias.dtype == .float32 && bias.shape == [8])
        let hf = try openWeightSource(at: dir)
        let zeros = try hf.load("layers.1.moe.expert_bias")
        #expect(zeros.bytes.count == 32 && zeros.bytes.allSatisfy { $0 == 0 })

        let bias8 = try [Float](repeating: 0, count: 8).withUnsafeBytes {
            try StoredTensor(name: "layers.1.moe.router.gate.bias", dtype: .float32, shape: [8], copying: $0)
        }
        let gateBias = FilteredSource(base: dcp, dropping: { _ in false }, adding: [bias8.name: bias8])
        #expect(throws: CheckpointError.self) { try HFExportPlan(source: gateBias, dtype: .keep, maxShardSize: 1000) }
    }

    /// DeepSeek-V2 has no selection bias: the plan leaves it out, and only a checkpoint whose bias is zero (or absent)
    /// is one that architecture reproduces. -0 counts as zero; any other bit pattern does not.
    @Test func routingBiasForAnArchitectureWithoutOne() throws {
        let dcp = try openWeightSource(at: Self.dsv3.appendingPathComponent("v022_softmax_basic/checkpoint"))
        #expect(try HFExport.routingBiasIsZero(in: dcp))
        let plan = try HFExportPlan(source: dcp, dtype: .keep, maxShardSize: 5_000_000, routingBias: false)
        #expect(!plan.tensors.contains { $0.name.hasSuffix("e_score_correction_bias") })
        #expect(plan.tensors.count + 2 == (try HFExportPlan(source: dcp, dtype: .keep, maxShardSize: 5_000_000)).tensors.count)
        #expect(try HFExport.routingBiasIsZero(in: FilteredSource(base: dcp, dropping: { $0.hasSuffix("moe.expert_bias") })))

        func withBias(_ values: [Float]) throws -> FilteredSource {
            let bias = try values.withUnsafeBytes {
                try StoredTensor(name: "layers.2.moe.expert_bias", dtype: .float32, shape: [8], copying: $0)
            }
            return FilteredSource(base: dcp, dropping: { _ in false }, adding: [bias.name: bias])
        }
        #expect(try HFExport.routingBiasIsZero(in: withBias([0, -0.0, 0, 0, 0, 0, 0, 0])))
        #expect(try !HFExport.routingBiasIsZero(in: withBias([0, 0, 0, 0, 0, 0, 0, 1e-30])))
        #expect(try !HFExport.routingBiasIsZero(in: withBias([0, 0, -2, 0, 0, 0, 0, 0])))
    }

    @Test func byteSizes() {
        #expect(parseByteSize("5GB") == 5_000_000_000)
        #expect(parseByteSize("500MB") == 500_000_000)
        #expect(parseByteSize("2KB") == 2000)
        #expect(parseByteSize("2kb") == 2000)
        #expect(parseByteSize("4GiB") == 4 * 1_073_741_824)
        #expect(parseByteSize("1.5MiB") == 1_572_864)
        #expect(parseByteSize("1000") == 1000)
        #expect(parseByteSize("12B") == 12)
        for bad in ["", "GB", "-1GB", "0", "five", "1e30GB", "nanGB"] { #expect(parseByteSize(bad) == nil, "\(bad)") }
    }

    @Test func stagedFolderRefusesNonEmptyAndCommitsWhole() throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let target = dir.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
        try Data("old".utf8).write(to: target.appendingPathComponent("keep.txt"))
        #expect(throws: CheckpointError.self) { try StagedOutputFolder(destination: target, overwrite: false) }

        let abandoned = try StagedOutputFolder(destination: target, overwrite: true)
        try abandoned.write(Data("new".utf8), to: "a.txt")
        abandoned.discard()
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["out"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: target.path) == ["keep.txt"])

        let stage = try StagedOutputFolder(destination: target, overwrite: true)
        try stage.write(Data("new".utf8), to: "a.txt")
        try stage.commit()
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["out"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: target.path) == ["a.txt"])
    }
}

/// A checkpoint with some tensors removed or added, as a checkpoint saved under other settings would hold.
struct FilteredSource: WeightSource {
    let base: WeightSource
    let dropping: @Sendable (String) -> Bool
    var adding: [String: StoredTensor] = [:]

    var description: String { "filtered \(base.description)" }
    var namingEra: NamingEra { base.namingEra }
    var tensorInfos: [String: TensorInfo] {
        base.tensorInfos.filter { !dropping($0.key) }.merging(adding.mapValues(\.info)) { $1 }
    }
    func load(_ name: String) throws -> StoredTensor {
        if let t = adding[name] { return t }
        guard !dropping(name) else { throw CheckpointError("\(name) dropped") }
        return try base.load(name)
    }
}
