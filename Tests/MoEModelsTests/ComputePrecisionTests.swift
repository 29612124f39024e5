import CKernels
import Foundation
import MoECheckpoint
import MoETensor
import Testing

@testable import MoEModels

/// The reference fixtures of every family (TorchTitan's own forward), loaded the way the CLI loads them.
enum FamilyFixtures {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    /// `family/variant` of each fixture with an expected.json; those stored as bf16 in `bf16Stored`.
    static let all = [
        "dsv3/v022_bf16_export", "dsv3/v022_softmax_basic", "dsv3/v022_sigmoid_groups_yarn", "dsv3/v030_debug_like",
        "dsv3/v030_sigmoid_groups_qlora", "qwen3/v030_qwen3_fp32", "qwen3/v030_qwen3_bf16", "gpt_oss/v030_gptoss_fp32",
        "gpt_oss/v030_gptoss_bf16",
    ]
    static let bf16Stored = ["dsv3/v022_bf16_export", "qwen3/v030_qwen3_bf16", "gpt_oss/v030_gptoss_bf16"]

    static func load(_ fixture: String, compute: ComputeChoice = .fp32) throws -> LoadedModel {
        let dir = folder.appendingPathComponent(fixture)
        return try ModelLoader.load(
            ModelSpec(
                checkpoint: dir.appendingPathComponent("checkpoint"), modelArgs: dir.appendingPathComponent("model_args.json"),
                compute: compute))
    }

    static func tokens(_ fixture: String) throws -> [[Int32]] {
        let data = try Data(contentsOf: folder.appendingPathComponent("\(fixture)/tokens.json"))
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        return try #require(object["tokens"] as? [[Int]]).map { $0.map(Int32.init) }
    }

    /// `[batch·seq][vocab]` logits and, per MoE layer, `[token][slot]` experts of expected.json.
    static func expected(_ fixture: String) throws -> (logits: [[Float]], experts: [Int: [[Int]]]) {
        let data = try Data(contentsOf: folder.appendingPathComponent("\(fixture)/expected.json"))
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let logits = try #require(object["logits"] as? [[[Double]]]).flatMap { $0.map { $0.map(Float.init) } }
        var experts: [Int: [[Int]]] = [:]
        for (key, value) in try #require(object["routing"] as? [String: [String: Any]]) {
            experts[try #require(Int(key))] = try #require(value["experts"] as? [[Int]])
        }
        return (logits, experts)
    }
}

/// `LogitsSelection`: every selection's rows are the matching rows of `.all` in every family: the same hidden rows
/// through the same norm and head. Not always bit for bit: OpenBLAS picks its sgemm micro-kernels by the number of
/// rows, so the head's sums may round differently by an ulp (seen on DeepSeek-V3's 160-wide head, never on the
/// 48-wide ones); the bound is 4 ulp of the largest logit, far below any wrong row (logits differ by O(1)).
@Suite struct LogitsSelectionTests {
    @Test(arguments: FamilyFixtures.all)
    func selectionsEqualTheRowsOfAll(fixture: String) throws {
        let model = try FamilyFixtures.load(fixture).model
        let rows = try FamilyFixtures.tokens(fixture)
        let batch = rows.count, seqLen = rows[0].count, vocab = model.shape.vocabSize
        try #require(batch == 2 && seqLen >= 8)
        let tokens = rows.flatMap { $0 }
        let all = try model.forward(tokens: tokens, batch: batch, seqLen: seqLen, logits: .all)
        #expect(all.shape == [batch * seqLen, vocab])
        let again = try model.forward(tokens: tokens, batch: batch, seqLen: seqLen, logits: .all)
        #expect((0..<all.count).allSatisfy { all.data[$0] == again.data[$0] }, "\(fixture): .all is not deterministic")
        let largest = (0..<all.count).map { abs(all.data[$0]) }.max() ?? 0
        let ulpBound = 4 * max(largest, 1).ulp
        func expectRows(_ selection: LogitsSelection, _ hiddenRows: [Int]) throws {
            let selected = try model.forward(tokens: tokens, batch: batch, seqLen: seqLen, logits: selection)
            #expect(selected.shape == [hiddenRows.count, vocab])
            for (i, r) in hiddenRows.enumerated() {
                let worst = (0..<vocab).map { abs(selected.row(i)[$0] - all.row(r)[$0]) }.max() ?? 0
                #expect(worst <= ulpBound, "\(fixture) \(selection): output row \(i) differs from row \(r) of .all by \(worst)")
            }
        }
        try expectRows(.last, [seqLen - 1, 2 * seqLen - 1])
        try expectRows(.positions([2..<7, 0..<seqLen]), Array(2..<7) + Array(seqLen..<(2 * seqLen)))
        try expectRows(.positions([seqLen - 3..<seqLen, 1..<2]), Array((seqLen - 3)..<seqLen) + [seqLen + 1])
        try expectRows(.positions([0..<0, 4..<6]), [seqLen + 4, seqLen + 5])
        try expectRows(.positions([0..<seqLen, 0..<seqLen]), Array(0..<(batch * seqLen)))
    }

    /// With a cache, positions index the new tokens of this call.
    @Test func positionsAreAmongTheNewTokens() throws {
        let fixture = "qwen3/v030_qwen3_fp32"
        let model = try FamilyFixtures.load(fixture).model
        let rows = try FamilyFixtures.tokens(fixture)
        let seqLen = rows[0].count, vocab = model.shape.vocabSize
        let all = try model.forward(tokens: rows.flatMap { $0 }, batch: 2, seqLen: seqLen, logits: .all)
        let cache = KVCache(model: model, batch: 2, capacity: seqLen)
        _ = try model.forward(tokens: rows.flatMap { $0.prefix(5) }, batch: 2, seqLen: 5, cache: cache, logits: .last)
        let rest = try model.forward(
            tokens: rows.flatMap { $0.dropFirst(5) }, batch: 2, seqLen: seqLen - 5, cache: cache, logits: .positions([1..<3, 0..<1]))
        #expect(rest.shape == [3, vocab])
        for (i, r) in [6, 7, seqLen + 5].enumerated() {
            let worst = (0..<vocab).map { abs(rest.row(i)[$0] - all.row(r)[$0]) }.max() ?? 0
            #expect(worst < 1e-4, "row \(r): cached positions differ by \(worst)")
        }
    }

    @Test(arguments: [
        (LogitsSelection.positions([0..<2]), "batch has 2 rows"),
        (LogitsSelection.positions([0..<2, 0..<2, 0..<2]), "batch has 2 rows"),
        (LogitsSelection.positions([0..<2, 3..<13]), "positions 3..<13 of row 1, outside its"),
        (LogitsSelection.positions([0..<13, 0..<2]), "positions 0..<13 of row 0, outside its"),
    ])
    func malformedSelectionsAreRefused(selection: LogitsSelection, mentions: String) throws {
        for fixture in ["dsv3/v030_debug_like", "qwen3/v030_qwen3_fp32", "gpt_oss/v030_gptoss_fp32"] {
            let model = try FamilyFixtures.load(fixture).model
            let rows = try FamilyFixtures.tokens(fixture)
            try #require(rows[0].count <= 12)
            do {
                _ = try model.forward(tokens: rows.flatMap { $0 }, batch: 2, seqLen: rows[0].count, logits: selection)
                Issue.record("\(fixture): \(selection) was accepted")
            } catch {
                #expect(String(describing: error).contains(mentions), "\(fixture): \(error)")
            }
        }
    }
}

/// bf16 compute (`--compute bf16`) on the fixtures stored as bf16, against the fp32 reference of the same weights:
/// TorchTitan's forward in expected.json, and our own fp32 compute. The figures against TorchTitan's bf16 forward
/// itself are in docs/MODEL.md (tools/reference/bf16_fidelity.py).
@Suite struct BF16ComputeFidelityTests {
    struct Figures {
        var relativeLogitError: Double
        var agreeingSlots: Int
        var slots: Int
        var agreement: Double { Double(agreeingSlots) / Double(max(slots, 1)) }
    }

    /// `‖ours − reference‖₂ / ‖reference‖₂` over every logit, and token-slots whose expert is also among the
    /// reference's top-k for that token.
    static func figures(
        _ logits: Tensor, _ recorder: RoutingRecorder, against reference: (logits: [[Float]], experts: [Int: [[Int]]])
    )
        -> Figures
    {
        var difference = 0.0, norm = 0.0
        for (r, row) in reference.logits.enumerated() {
            for (v, value) in row.enumerated() {
                difference += pow(Double(logits.row(r)[v] - value), 2)
                norm += Double(value) * Double(value)
            }
        }
        var agreeing = 0, slots = 0
        for (layer, tokens) in reference.experts {
            let ours = recorder.experts[layer] ?? [], k = recorder.topK[layer] ?? 1
            for (t, experts) in tokens.enumerated() {
                let mine = t * k + k <= ours.count ? Set(ours[(t * k)..<(t * k + k)].map(Int.init)) : []
                agreeing += experts.filter { mine.contains($0) }.count
                slots += experts.count
            }
        }
        return Figures(relativeLogitError: (difference / max(norm, 1e-30)).squareRoot(), agreeingSlots: agreeing, slots: slots)
    }

    static func run(_ loaded: LoadedModel, _ fixture: String) throws -> (Tensor, RoutingRecorder) {
        let rows = try FamilyFixtures.tokens(fixture)
        let recorder = RoutingRecorder()
        let logits = try loaded.model.forward(tokens: rows.flatMap { $0 }, batch: rows.count, seqLen: rows[0].count, observer: recorder)
        return (logits, recorder)
    }

    /// bf16 rounds each product's activations to 8 significant bits (relative 2⁻⁹), so over a few layers the logits
    /// move by a few 10⁻³ of their norm; the bound leaves ~3× room over the worst fixture measured (docs/MODEL.md).
    static let logitErrorBound = 2e-2

    @Test(arguments: FamilyFixtures.bf16Stored)
    func bf16ComputeStaysCloseToFP32(fixture: String) throws {
        let bf16 = try FamilyFixtures.load(fixture, compute: .bf16)
        #expect(bf16.compute == .bf16)
        let fp32 = try FamilyFixtures.load(fixture)
        #expect(fp32.compute == .fp32)
        let reference = try FamilyFixtures.expected(fixture)
        let (logits, recorder) = try Self.run(bf16, fixture)
        let (exactLogits, exactRecorder) = try Self.run(fp32, fixture)
        let vsTorchTitan = Self.figures(logits, recorder, against: reference)
        let exact = Self.figures(exactLogits, exactRecorder, against: reference)
        print(
            "\(fixture): bf16 compute vs TorchTitan fp32 forward: relative logit error \(vsTorchTitan.relativeLogitError), experts \(vsTorchTitan.agreeingSlots)/\(vsTorchTitan.slots); fp32 compute: \(exact.relativeLogitError), \(exact.agreeingSlots)/\(exact.slots)"
        )
        #expect(exact.relativeLogitError < 1e-5 && exact.agreeingSlots == exact.slots, "fp32 compute moved: \(exact)")
        // The precision reached the products: bf16 compute is measurably not fp32 compute …
        #expect(vsTorchTitan.relativeLogitError > 10 * exact.relativeLogitError, "\(fixture): bf16 compute equals fp32 compute")
        // … and stays within the bound, choosing the same experts.
        #expect(vsTorchTitan.relativeLogitError < Self.logitErrorBound)
        #expect(vsTorchTitan.agreement >= 0.999, "\(fixture): \(vsTorchTitan.agreeingSlots) of \(vsTorchTitan.slots) token-slots agree")
    }

    @Test func bf16ComputeOnFP32WeightsIsRefused() throws {
        do {
            _ = try FamilyFixtures.load("qwen3/v030_qwen3_fp32", compute: .bf16)
            Issue.record("--compute bf16 loaded fp32 weights")
        } catch {
            let message = String(describing: error)
            #expect(message.contains("--compute bf16") && message.contains("float32") && message.contains("v030_qwen3_fp32"), "\(message)")
        }
    }

    @Test func autoPicksBF16OnlyForBF16WeightsOnABF16CPU() throws {
        let bf16 = ["w": TensorInfo(dtype: .bfloat16, shape: [4, 4]), "norm": TensorInfo(dtype: .float32, shape: [4])]
        let fp32 = ["w": TensorInfo(dtype: .float32, shape: [4, 4]), "norm": TensorInfo(dtype: .bfloat16, shape: [4])]
        #expect(try ComputeChoice.auto.resolve(weights: bf16, checkpoint: "c", cpuHasBF16: true).precision == .bf16)
        #expect(try ComputeChoice.auto.resolve(weights: bf16, checkpoint: "c", cpuHasBF16: false).precision == .fp32)
        #expect(try ComputeChoice.auto.resolve(weights: fp32, checkpoint: "c", cpuHasBF16: true).precision == .fp32)
        #expect(try ComputeChoice.fp32.resolve(weights: bf16, checkpoint: "c", cpuHasBF16: true).precision == .fp32)
        #expect(try ComputeChoice.bf16.resolve(weights: bf16, checkpoint: "c", cpuHasBF16: false).precision == .bf16)
        #expect(throws: ModelLoadError.self) { try ComputeChoice.bf16.resolve(weights: fp32, checkpoint: "c", cpuHasBF16: true) }
    }
}

/// Expert parallelism splits a batch by rows: each rank computes its rows' asked positions and the gather puts
/// them back in batch order.
@Suite struct LogitsSelectionExpertParallelTests {
    @Test func twoRanksGatherTheAskedPositions() throws {
        let variant = "v030_gptoss_fp32"
        let rows = try GptOssFixtures.tokens(variant)
        let batch = rows.count, seqLen = rows[0].count, tokens = rows.flatMap { $0 }
        let args = try GptOssFixtures.args(variant)
        let checkpoint = GptOssFixtures.root.appendingPathComponent("\(variant)/checkpoint")
        let single = try GptOss(args: args, checkpoint: checkpoint).forward(tokens: tokens, batch: batch, seqLen: seqLen)
        let selection = LogitsSelection.positions([1..<3, 5..<seqLen])
        let wanted = [1, 2] + Array((seqLen + 5)..<(2 * seqLen))
        let exchange = InProcessExchange(size: 2)
        let results = UnsafeMutablePointer<(Tensor?, String?)>.allocate(capacity: 2)
        results.initialize(repeating: (nil, nil), count: 2)
        defer { results.deinitialize(count: 2); results.deallocate() }
        let resultsP = SendablePointer(results)
        DispatchQueue.concurrentPerform(iterations: 2) { rank in
            do {
                let group = try ExpertParallelGroup(communicator: InProcessCommunicator(rank: rank, exchange: exchange), numExperts: 4)
                let model = try GptOss(args: args, checkpoint: checkpoint, expertParallel: group)
                resultsP.pointer[rank] = (try model.forward(tokens: tokens, batch: batch, seqLen: seqLen, logits: selection), nil)
            } catch {
                resultsP.pointer[rank] = (nil, "\(error)")
            }
        }
        for rank in 0..<2 {
            #expect(results[rank].1 == nil, "rank \(rank): \(results[rank].1 ?? "")")
            let logits = try #require(results[rank].0)
            #expect(logits.shape == [wanted.count, args.vocabSize])
            for (i, r) in wanted.enumerated() {
                let worst = (0..<args.vocabSize).map { abs(logits.row(i)[$0] - single.row(r)[$0]) }.max() ?? 0
                #expect(worst <= 1e-5, "rank \(rank): output row \(i) differs from row \(r) by \(worst)")
            }
        }
    }
}

/// Under bf16 compute the router gate still multiplies in fp32: its scores pick the experts.
@Suite struct RouterGatePrecisionTests {
    /// A bf16 weight of `values` truncated to bf16 (exactly representable, so the fp32 product is the reference).
    static func bf16Weight(_ values: [Float], shape: [Int]) throws -> Weight {
        let bits = values.map { UInt16(truncatingIfNeeded: $0.bitPattern >> 16) }
        return try bits.withUnsafeBytes { try Weight(dtype: .bfloat16, shape: shape, bytes: $0, owner: nil) }
    }

    @Test func gateLogitsAreFP32Products() throws {
        let d = 40, e = 8, f = 4, tokens = 6
        var state: UInt64 = 7
        func next() -> Float {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Int(state >> 40) % 2001 - 1000) / 997
        }
        let gateValues = (0..<(e * d)).map { _ in next() }
        let gate = try Self.bf16Weight(gateValues, shape: [e, d])
        let experts = ExpertWeights(
            w1: try Self.bf16Weight((0..<(e * f * d)).map { _ in next() }, shape: [e, f, d]),
            w2: try Self.bf16Weight((0..<(e * d * f)).map { _ in next() }, shape: [e, d, f]),
            w3: try Self.bf16Weight((0..<(e * f * d)).map { _ in next() }, shape: [e, f, d]))
        var block = try MoEBlock(
            router: RouterConfig(
                scoreFunction: .softmax, numExperts: e, topK: 2, routeNorm: true, routeScale: 1, scoreBeforeExperts: false),
            gate: gate, experts: experts, activation: .swiGLU, shared: nil, dim: d, expertHiddenDim: f)
        block.backend = CPUBackend(compute: .bf16)
        // Activations that bf16 cannot hold, so a bf16 gate product would show.
        let x = Tensor(shape: [tokens, d], values: (0..<(tokens * d)).map { _ in next() * 1.001 + 0.0001 })
        let routing = block.route(x)
        let fp32 = Linear.apply(x, gate)
        let bf16 = CPUBackend(compute: .bf16).linear(x, gate)
        let fromFP32 = (0..<(tokens * e)).map { abs(routing.gateLogits.data[$0] - fp32.data[$0]) }.max() ?? 0
        let fromBF16 = (0..<(tokens * e)).map { abs(routing.gateLogits.data[$0] - bf16.data[$0]) }.max() ?? 0
        #expect(fromFP32 == 0, "gate logits differ from the fp32 product by \(fromFP32)")
        #expect(fromBF16 > 1e-4, "the bf16 product would have been indistinguishable (\(fromBF16))")
    }
}

/// Expert stacks are repacked at load (`ExpertWeights.packedForProducts`): fp32 stacks whenever oneDNN's fp32 matmul
/// would pack them itself (AVX-512), bf16 stacks only under bf16 compute. The agreement tests above then run the
/// packed products; this says that they do, and that the packed stacks still hold the checkpoint's values.
@Suite struct PackedExpertFixtureTests {
    @Test(arguments: FamilyFixtures.all)
    func expertStacksArePackedWhereProductsUsePanels(fixture: String) throws {
        let stored = try FamilyFixtures.load(fixture).model
        for compute in [ComputeChoice.fp32, .bf16] {
            let bf16Stored = FamilyFixtures.bf16Stored.contains(fixture)
            if compute == .bf16 && !bf16Stored { continue }
            let model = compute == .fp32 ? stored : try FamilyFixtures.load(fixture, compute: compute).model
            let blocks = model.moeBlocks
            try #require(!blocks.isEmpty)
            #if canImport(CDNNL)
            let packs = bf16Stored
                ? (compute == .bf16 && moe_cpu_has_avx512_bf16() == 1) : moe_cpu_has_avx512() == 1
            #else
            let packs = false
            #endif
            for (layer, block) in blocks {
                let w1 = block.experts.w1
                #expect(
                    (w1.layout == .panels64) == packs,
                    "\(fixture) \(compute) layer \(layer): w1 \(w1.shape) \(w1.dtype) is \(w1.layout)")
            }
        }
    }
}

/// HF checkpoints store one tensor per expert; the loaders pack those straight into panels instead of stacking
/// them first (`Linear.packedForProducts(expertParts:)`). The result must be the packed stack the TorchTitan
/// checkpoint of the same weights gives, and `loadParts` must hand back exactly the experts asked for.
@Suite struct ExpertPartsPackingTests {
    static let pairs = [("dsv3/v022_softmax_basic", "hf"), ("qwen3/v030_qwen3_fp32", "hf")]

    @Test(arguments: pairs)
    func perExpertTensorsPackAsTheirStack(fixture: String, hfFolder: String) throws {
        let dir = FamilyFixtures.folder.appendingPathComponent(fixture)
        let args = dir.appendingPathComponent("model_args.json")
        let fromDCP = try ModelLoader.load(ModelSpec(checkpoint: dir.appendingPathComponent("checkpoint"), modelArgs: args)).model
        let fromHF = try ModelLoader.load(ModelSpec(checkpoint: dir.appendingPathComponent(hfFolder), modelArgs: args)).model
        try #require(fromDCP.moeBlocks.count == fromHF.moeBlocks.count && !fromHF.moeBlocks.isEmpty)
        for (dcp, hf) in zip(fromDCP.moeBlocks, fromHF.moeBlocks) {
            let pairs = [(dcp.block.experts.w1, hf.block.experts.w1), (dcp.block.experts.w2, hf.block.experts.w2)]
            for (a, b) in pairs {
                #expect(a.layout == b.layout, "\(fixture) layer \(hf.layer): DCP \(a.layout), HF \(b.layout)")
                #expect(a.shape == b.shape && a.toFloatArray() == b.toFloatArray(), "\(fixture) layer \(hf.layer)")
            }
            if moe_cpu_has_avx512() == 1 {
                #expect(hf.block.experts.w1.layout == .panels64, "\(fixture) layer \(hf.layer): HF experts not packed")
            }
        }
    }

    @Test func loadPartsReturnsTheWantedExperts() throws {
        let dir = FamilyFixtures.folder.appendingPathComponent("dsv3/v022_softmax_basic")
        let source = try openWeightSource(at: dir.appendingPathComponent("hf"))
        let name = try #require(source.tensorInfos.keys.first { $0.hasSuffix("moe.experts.w1") })
        let experts = try #require(source.tensorInfos[name]?.shape.first)
        try #require(experts >= 3)
        let parts = try #require(try source.loadParts(name, leading: 1..<3))
        let stacked = try source.load(name, leading: 1..<3)
        #expect(parts.count == 2)
        #expect(parts.flatMap { Array($0.bytes) } == Array(stacked.bytes))
        #expect(try source.loadParts(name, leading: nil)?.count == experts)
        #expect(throws: (any Error).self) { try source.loadParts(name, leading: 2..<(experts + 1)) }
        // A stack stored whole has no parts.
        let dcp = try openWeightSource(at: dir.appendingPathComponent("checkpoint"))
        #expect(try dcp.loadParts(name, leading: nil) == nil)
    }
}
