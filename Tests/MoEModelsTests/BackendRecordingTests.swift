import Foundation
import MoECheckpoint
import MoETensor
import Testing

@testable import MoEModels

/// A test double that runs every operation on `CPUBackend` and counts the calls by operation, so a test can
/// see which operations a forward sent through its backend.
final class RecordingBackend: TensorBackend, @unchecked Sendable {
    private let cpu = CPUBackend()
    private let lock = NSLock()
    private var counts: [String: Int] = [:]

    var calls: [String: Int] { lock.withLock { counts } }
    func reset() { lock.withLock { counts = [:] } }
    private func record(_ operation: String) { lock.withLock { counts[operation, default: 0] += 1 } }

    func linear(_ x: UnsafePointer<Float>, rows: Int, weight: Weight, into y: UnsafeMutablePointer<Float>, accumulate: Bool) {
        record("linear")
        cpu.linear(x, rows: rows, weight: weight, into: y, accumulate: accumulate)
    }
    func linearSerial(
        _ x: UnsafePointer<Float>, rows: Int, lda: Int, weight: Weight, into y: UnsafeMutablePointer<Float>, ldy: Int
    ) {
        record("linearSerial")
        cpu.linearSerial(x, rows: rows, lda: lda, weight: weight, into: y, ldy: ldy)
    }
    func rmsNorm(
        _ x: UnsafePointer<Float>, rows: Int, dim: Int, weight: UnsafePointer<Float>, eps: Float,
        into out: UnsafeMutablePointer<Float>
    ) {
        record("rmsNorm")
        cpu.rmsNorm(x, rows: rows, dim: dim, weight: weight, eps: eps, into: out)
    }
    func siluMul(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
        record("siluMul")
        cpu.siluMul(gate, up, count: count)
    }
    func softmaxRow(_ row: UnsafeMutablePointer<Float>, _ n: Int) {
        record("softmaxRow")
        cpu.softmaxRow(row, n)
    }
    func embed(_ tokens: [Int32], table: Weight, into out: UnsafeMutablePointer<Float>) {
        record("embed")
        cpu.embed(tokens, table: table, into: out)
    }
    func sgemmSerial(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float, _ a: UnsafePointer<Float>, lda: Int,
        _ b: UnsafePointer<Float>, ldb: Int, beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        record("sgemmSerial")
        cpu.sgemmSerial(
            transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a, lda: lda, b, ldb: ldb, beta: beta, c, ldc: ldc)
    }
    func rmsNormRow(
        _ x: UnsafePointer<Float>, dim: Int, weight: UnsafePointer<Float>, eps: Float, into out: UnsafeMutablePointer<Float>
    ) {
        record("rmsNormRow")
        cpu.rmsNormRow(x, dim: dim, weight: weight, eps: eps, into: out)
    }
    func causalSoftmax(
        _ scores: UnsafeMutablePointer<Float>, rows: Int, width: Int, firstQueryPosition: Int, firstKeyPosition: Int,
        window: Int?, sink: Float?
    ) {
        record(sink == nil ? "causalSoftmax" : "causalSoftmax+sink")
        cpu.causalSoftmax(
            scores, rows: rows, width: width, firstQueryPosition: firstQueryPosition, firstKeyPosition: firstKeyPosition,
            window: window, sink: sink)
    }
    func rope(
        _ x: UnsafeMutablePointer<Float>, vectors: Int, stride: Int, pairs: Int, pairing: RotaryPairing,
        cos: UnsafePointer<Float>, sin: UnsafePointer<Float>
    ) {
        record("rope")
        cpu.rope(x, vectors: vectors, stride: stride, pairs: pairs, pairing: pairing, cos: cos, sin: sin)
    }
    func sigmoid(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
        record("sigmoid")
        cpu.sigmoid(x, into: y, count: count)
    }
    func topK(_ values: UnsafePointer<Float>, _ n: Int, _ k: Int, into indices: UnsafeMutablePointer<Int32>) {
        record("topK")
        cpu.topK(values, n, k, into: indices)
    }
    func addBias(_ bias: UnsafePointer<Float>, to x: UnsafeMutablePointer<Float>, rows: Int, width: Int) {
        record("addBias")
        cpu.addBias(bias, to: x, rows: rows, width: width)
    }
    func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
        record("add")
        cpu.add(x, into: y, count: count)
    }
    func clampedSwiGLU(
        _ h: UnsafePointer<Float>, rows: Int, hidden: Int, alpha: Float, limit: Float, into y: UnsafeMutablePointer<Float>
    ) {
        record("clampedSwiGLU")
        cpu.clampedSwiGLU(h, rows: rows, hidden: hidden, alpha: alpha, limit: limit, into: y)
    }
}

/// Each family's forward, prefill and cached decode, sends its attention (and the rest of its tensor operations)
/// through the backend it was built with: the recording backend sees one causal softmax per (batch row, head,
/// layer), RoPE for every new row's queries and keys, and the logits equal the plain CPU backend's bit for bit.
@Suite struct BackendRecordingTests {
    /// Prefill of `tokens`, then one decode step through a cache, on `model`; the logits of both.
    static func prefillAndDecode(
        _ model: any CausalLanguageModel, tokens: [[Int32]]
    ) throws -> (prefill: [Float], decode: [Float]) {
        let batch = tokens.count, seqLen = tokens[0].count - 1
        let prompt = tokens.flatMap { $0.prefix(seqLen) }
        let prefill = try model.forward(tokens: prompt, batch: batch, seqLen: seqLen, cache: nil, logits: .all, observer: nil)
        let cache = KVCache(model: model, batch: batch, capacity: seqLen + 1)
        _ = try model.forward(tokens: prompt, batch: batch, seqLen: seqLen, cache: cache, logits: .last, observer: nil)
        let decode = try model.forward(
            tokens: tokens.map { $0[seqLen] }, batch: batch, seqLen: 1, cache: cache, logits: .last, observer: nil)
        return (
            Array(UnsafeBufferPointer(start: prefill.data, count: prefill.count)),
            Array(UnsafeBufferPointer(start: decode.data, count: decode.count))
        )
    }

    /// What the recorder saw in the decode step alone, and the logits against the CPU backend's.
    static func check(
        family: String, plain: any CausalLanguageModel, recorded: any CausalLanguageModel, recorder: RecordingBackend,
        tokens: [[Int32]], heads: Int, expected: Set<String>
    ) throws {
        let reference = try prefillAndDecode(plain, tokens: tokens)
        recorder.reset()
        let batch = tokens.count, seqLen = tokens[0].count - 1, layers = plain.shape.layers
        precondition(seqLen <= 64, "one query block per (batch row, head)")
        let prompt = tokens.flatMap { $0.prefix(seqLen) }
        _ = try recorded.forward(tokens: prompt, batch: batch, seqLen: seqLen, cache: nil, logits: .all, observer: nil)
        let prefillCalls = recorder.calls
        let seen = try prefillAndDecode(recorded, tokens: tokens)
        #expect(seen.prefill == reference.prefill, "\(family): prefill logits differ from CPUBackend's")
        #expect(seen.decode == reference.decode, "\(family): decode logits differ from CPUBackend's")

        let softmaxes = (prefillCalls["causalSoftmax"] ?? 0) + (prefillCalls["causalSoftmax+sink"] ?? 0)
        #expect(softmaxes == layers * batch * heads, "\(family): causal softmax calls \(prefillCalls)")
        #expect(prefillCalls["rope"] == layers * batch * seqLen * 2, "\(family): RoPE calls \(prefillCalls)")
        #expect((prefillCalls["sgemmSerial"] ?? 0) >= 2 * layers * batch * heads, "\(family): attention GEMMs \(prefillCalls)")
        let missing = expected.subtracting(recorder.calls.keys)
        #expect(missing.isEmpty, "\(family): operations never sent to the backend: \(missing.sorted()); saw \(recorder.calls)")
    }

    @Test func deepSeekV3SendsAttentionThroughItsBackend() throws {
        let dir = DSV3Fixtures.root.appendingPathComponent("v030_sigmoid_groups_qlora")
        let loaded = try ModelLoader.load(
            ModelSpec(checkpoint: dir.appendingPathComponent("checkpoint"), modelArgs: dir.appendingPathComponent("model_args.json")))
        let plain = try #require(loaded.model as? DeepSeekV3)
        let recorder = RecordingBackend()
        let recorded = try DeepSeekV3(args: plain.args, weights: loaded.source, numerics: plain.numerics, backend: recorder)
        try Self.check(
            family: "deepseek_v3", plain: plain, recorded: recorded, recorder: recorder,
            tokens: [[1, 5, 9, 2, 7, 3], [4, 4, 8, 6, 1, 2]], heads: plain.args.nHeads,
            expected: ["embed", "linear", "rmsNorm", "rmsNormRow", "rope", "sgemmSerial", "causalSoftmax", "sigmoid", "topK", "siluMul"])
    }

    @Test func qwen3SendsAttentionThroughItsBackend() throws {
        let variant = "v030_qwen3_fp32"
        let plain = try Qwen3Fixtures.model(variant)
        let recorder = RecordingBackend()
        let source = try Qwen3WeightSource.open(at: Qwen3Fixtures.root.appendingPathComponent("\(variant)/checkpoint"), args: plain.args)
        let recorded = try Qwen3MoE(args: plain.args, weights: source, backend: recorder)
        try Self.check(
            family: "qwen3", plain: plain, recorded: recorded, recorder: recorder,
            tokens: [[1, 5, 9, 2, 7, 3], [4, 4, 8, 6, 1, 2]], heads: plain.args.nHeads,
            expected: ["embed", "linear", "rmsNorm", "rope", "sgemmSerial", "causalSoftmax", "softmaxRow", "topK", "siluMul"])
    }

    @Test func gptOssSendsAttentionThroughItsBackend() throws {
        let variant = "v030_gptoss_fp32"
        let args = try GptOssFixtures.args(variant)
        let checkpoint = GptOssFixtures.root.appendingPathComponent("\(variant)/checkpoint")
        let plain = try GptOss(args: args, checkpoint: checkpoint)
        let recorder = RecordingBackend()
        let recorded = try GptOss(args: args, checkpoint: checkpoint, backend: recorder)
        try Self.check(
            family: "gpt_oss", plain: plain, recorded: recorded, recorder: recorder,
            tokens: [[1, 5, 9, 2, 7, 3], [4, 4, 8, 6, 1, 2]], heads: args.nHeads,
            expected: [
                "embed", "linear", "rmsNorm", "rope", "sgemmSerial", "causalSoftmax+sink", "softmaxRow", "topK", "addBias",
                "add", "clampedSwiGLU",
            ])
    }
}
