import Foundation
import MoECheckpoint
import MoEModels
import MoETensor

/// DeepSeek-V3 on one NVIDIA GPU, step for step as `DeepSeekV3.forward` (TorchTitan's order): embedding → layers
/// of [RMSNorm → MLA → residual, RMSNorm → dense SwiGLU or MoE → residual] → final RMSNorm → output head.
/// Weights are uploaded once as bf16 (norms, router gate and biases in fp32); GEMMs run in cuBLAS with bf16 inputs
/// and fp32 accumulation; the residual stream stays fp32 on the device; the KV cache lives on the device; only
/// the selected positions' logits come back, in fp32. Routing decisions come back per MoE layer only when an
/// observer asks for them.
public final class DeepSeekV3CUDA: CausalLanguageModel, @unchecked Sendable {
    public let args: ModelArgs
    public let numerics: Numerics
    public let shape: ModelShape
    public let kvCacheLayout: KVCacheLayout
    /// The CPU model the weights were checked by; accounting and byte counts are its.
    let reference: DeepSeekV3
    let runtime: CUDAForwardRuntime
    let embedding: DeviceBuffer
    let layers: [Layer]
    let finalNorm: DeviceBuffer
    let output: DeviceBuffer
    let scratch: ScratchBuffers
    /// RoPE cos/sin tables `[positions, pairs]` on the device, grown when a forward reaches further.
    var ropeTables: (positions: Int, cos: DeviceBuffer, sin: DeviceBuffer)?
    /// The device's copy of each live host `KVCache` (the host object only counts positions).
    var deviceCaches: [ObjectIdentifier: DeviceKVCache] = [:]
    /// One forward at a time: scratch buffers and caches are shared.
    let lock = NSLock()

    struct Attention {
        var wq: DeviceBuffer?
        var wqA: DeviceBuffer?
        var qNorm: DeviceBuffer?
        var wqB: DeviceBuffer?
        var wkvA: DeviceBuffer
        var kvNorm: DeviceBuffer
        var wkvB: DeviceBuffer
        var wo: DeviceBuffer
    }

    /// w1 and w3 stacked as one `[2F, D]` matrix (`[E, 2F, D]` for routed experts), and w2.
    struct GatedFeedForward {
        var w13: DeviceBuffer
        var w2: DeviceBuffer
        var hidden: Int
    }

    struct MoE {
        var gate: DeviceBuffer // fp32 [E, D]
        var gateBias: DeviceBuffer?
        var expertBias: DeviceBuffer?
        var expertBiasValues: [Float]?
        var experts: GatedFeedForward
        var shared: GatedFeedForward?
    }

    struct Layer {
        var index: Int
        var attentionNorm: DeviceBuffer
        var ffnNorm: DeviceBuffer
        var attention: Attention
        var feedForward: GatedFeedForward?
        var moe: MoE?
    }

    /// The compressed MLA cache of one host `KVCache`: per layer, `[batch, capacity, kv_lora_rank]` latents and
    /// `[batch, capacity, qk_rope_head_dim]` RoPE'd keys, bf16.
    final class DeviceKVCache {
        weak var owner: KVCache?
        let latent: [DeviceBuffer]
        let ropeKeys: [DeviceBuffer]
        init(owner: KVCache, latent: [DeviceBuffer], ropeKeys: [DeviceBuffer]) {
            self.owner = owner; self.latent = latent; self.ropeKeys = ropeKeys
        }
    }

    /// Uploads the weights of `model` (read again from `source`, which `model` was loaded and checked from).
    public init(uploading model: DeepSeekV3, weights source: WeightSource, runtime: CUDAForwardRuntime) throws {
        guard model.expertParallel == nil else {
            throw ModelLoadError("--device cuda runs the whole model on one GPU; expert parallelism across processes is CPU-only")
        }
        let args = model.args
        self.args = args
        numerics = model.numerics
        shape = model.shape
        kvCacheLayout = model.kvCacheLayout
        reference = model
        self.runtime = runtime
        scratch = ScratchBuffers(runtime)
        let qk = args.qkHeadDim
        let flashBytes = CUDAKernelSource.flashSharedBytes(qkDims: qk, valueDims: args.vHeadDim)
        guard flashBytes <= runtime.defaultSharedMemoryPerBlock else {
            throw ModelLoadError(
                "--device cuda: attention heads of \(qk) query/key and \(args.vHeadDim) value dims need \(flashBytes) bytes of shared memory per block; the device allows \(runtime.defaultSharedMemoryPerBlock)"
            )
        }
        let upload = DeviceWeightUploader(runtime: runtime, source: source)
        let d = args.dim, h = args.nHeads
        embedding = try upload.matrix("tok_embeddings.weight", [args.vocabSize, d])
        var layers: [Layer] = []
        for i in 0..<args.nLayers {
            let p = "layers.\(i)."
            var attention = Attention(
                wkvA: try upload.matrix(p + "attention.wkv_a.weight", [args.kvLoraRank + args.qkRopeHeadDim, d]),
                kvNorm: try upload.float32(p + "attention.kv_norm.weight", [args.kvLoraRank]),
                wkvB: try upload.matrix(p + "attention.wkv_b.weight", [h * (args.qkNopeHeadDim + args.vHeadDim), args.kvLoraRank]),
                wo: try upload.matrix(p + "attention.wo.weight", [d, h * args.vHeadDim]))
            if args.qLoraRank == 0 {
                attention.wq = try upload.matrix(p + "attention.wq.weight", [h * qk, d])
            } else {
                attention.wqA = try upload.matrix(p + "attention.wq_a.weight", [args.qLoraRank, d])
                attention.qNorm = try upload.float32(p + "attention.q_norm.weight", [args.qLoraRank])
                attention.wqB = try upload.matrix(p + "attention.wq_b.weight", [h * qk, args.qLoraRank])
            }
            var layer = Layer(
                index: i, attentionNorm: try upload.float32(p + "attention_norm.weight", [d]),
                ffnNorm: try upload.float32(p + "ffn_norm.weight", [d]), attention: attention)
            if args.isMoELayer(i) {
                let m = args.moeArgs, e = m.numExperts, f = args.moeInterDim
                let expertBias = m.loadBalanceCoeff != nil ? try upload.stored(p + "moe.expert_bias", [e]).toFloatArray() : nil
                var moe = MoE(
                    gate: try upload.float32(p + "moe.router.gate.weight", [e, d]),
                    gateBias: m.gateBias ? try upload.float32(p + "moe.router.gate.bias", [e]) : nil,
                    expertBias: try expertBias.map { try DeviceBuffer(runtime, floats: $0) }, expertBiasValues: expertBias,
                    experts: GatedFeedForward(
                        w13: try upload.stacked(p + "moe.experts.w1", p + "moe.experts.w3", experts: e, rows: f, columns: d),
                        w2: try upload.matrix(p + "moe.experts.w2", [e, d, f]), hidden: f))
                if m.numSharedExperts > 0 {
                    let sf = f * m.numSharedExperts
                    moe.shared = GatedFeedForward(
                        w13: try upload.stacked(
                            p + "moe.shared_experts.w1.weight", p + "moe.shared_experts.w3.weight", experts: 0, rows: sf, columns: d),
                        w2: try upload.matrix(p + "moe.shared_experts.w2.weight", [d, sf]), hidden: sf)
                }
                layer.moe = moe
            } else {
                layer.feedForward = GatedFeedForward(
                    w13: try upload.stacked(
                        p + "feed_forward.w1.weight", p + "feed_forward.w3.weight", experts: 0, rows: args.interDim, columns: d),
                    w2: try upload.matrix(p + "feed_forward.w2.weight", [d, args.interDim]), hidden: args.interDim)
            }
            layers.append(layer)
        }
        self.layers = layers
        finalNorm = try upload.float32("norm.weight", [d])
        output = try upload.matrix("output.weight", [args.vocabSize, d])
    }

    // MARK: - What the seam asks besides the forward (the CPU model's answers: same weights, same formulas)

    public var expertParallel: ExpertParallelGroup? { nil }
    public var moeBlocks: [(layer: Int, block: MoEBlock)] { reference.moeBlocks }
    public var footprint: ModelFootprint { reference.footprint }
    public func parameterCounts() -> ParameterCounts { reference.parameterCounts() }
    public func trainingFlopsPerToken(seqLen: Int) -> Int { reference.trainingFlopsPerToken(seqLen: seqLen) }
    public func forwardFlopsPerToken(seqLen: Int) -> Double { reference.forwardFlopsPerToken(seqLen: seqLen) }

    // MARK: - Forward

    public func forward(
        tokens: [Int32], batch: Int, seqLen: Int, cache: KVCache?, logits selection: LogitsSelection,
        observer: RoutingObserver?
    ) throws -> Tensor {
        try checkForwardInput(tokens: tokens, batch: batch, seqLen: seqLen, cache: cache)
        lock.lock()
        defer { lock.unlock() }
        let past = cache?.length ?? 0
        let rows = batch * seqLen, d = args.dim
        let caches = try deviceCache(for: cache, batch: batch, newTokens: seqLen)
        let (cosTable, sinTable) = try rope(positions: past + seqLen)

        let tokenBuffer = try scratch.buffer("tokens", bytes: try deviceBytes(rows, 4))
        try tokens.withUnsafeBytes { try runtime.context.upload($0, to: tokenBuffer.storage) }
        let tokenIDs = tokenBuffer.pointer
        let hidden = try scratch.pointer("hidden", bytes: try deviceBytes(rows, d, 4))
        try runtime.launch(
            "embedding_gather_bf16", .elements(rows * d),
            [.pointer(tokenIDs), .pointer(embedding.pointer), .pointer(hidden), .int64(Int64(rows)), .int32(Int32(d))])
        let normed = try scratch.pointer("normed", bytes: try deviceBytes(rows, d, 2))
        let normedF32 = try scratch.pointer("normed_f32", bytes: try deviceBytes(rows, d, 4))
        let delta = try scratch.pointer("delta", bytes: try deviceBytes(rows, d, 4))
        let eps = Float(args.normEps)
        for layer in layers {
            try rmsNorm(hidden, rows: rows, weight: layer.attentionNorm, eps: eps, into: normed)
            let step = AttentionStep(
                batch: batch, newTokens: seqLen, past: past, capacity: cache?.capacity ?? seqLen,
                latentCache: caches.latent[layer.index], ropeCache: caches.ropeKeys[layer.index], cos: cosTable, sin: sinTable)
            try attention(layer.attention, normed, step, into: delta)
            try add(delta, into: hidden, count: rows * d)
            try rmsNorm(hidden, rows: rows, weight: layer.ffnNorm, eps: eps, into: normed, fp32Copy: layer.moe == nil ? nil : normedF32)
            if let moe = layer.moe {
                try moeLayer(moe, layer: layer.index, normed: normed, normedF32: normedF32, tokens: rows, addInto: hidden, observer: observer)
            } else if let ffn = layer.feedForward {
                try gatedFeedForward(ffn, normed, rows: rows, role: "ffn", into: delta)
                try add(delta, into: hidden, count: rows * d)
            }
        }
        try cache?.advance(by: seqLen)

        let selected: [Int32]? = selection == .last ? (0..<batch).map { Int32($0 * seqLen + seqLen - 1) } : nil
        let outputRows = selected?.count ?? rows
        var rowIndex: DevicePointer = 0
        if let selected {
            let rowBuffer = try scratch.buffer("logit_rows", bytes: try deviceBytes(selected.count, 4))
            try selected.withUnsafeBytes { try runtime.context.upload($0, to: rowBuffer.storage) }
            rowIndex = rowBuffer.pointer
        }
        try runtime.launch(
            "rmsnorm_rows", .rows(outputRows),
            [.pointer(hidden), .pointer(rowIndex), .pointer(finalNorm.pointer), .pointer(normed), .pointer(0), .int32(Int32(d)),
             .float32(numerics.finalNormEps)])
        let logitsBytes = try deviceBytes(outputRows, args.vocabSize, 4)
        let logitsBuffer = try scratch.buffer("logits", bytes: logitsBytes), logits = logitsBuffer.pointer
        try runtime.gemmBF16(
            m: outputRows, n: args.vocabSize, k: d, x: normed, w: output.pointer, y: logits, fp32Output: true)
        let result = Tensor(uninitializedShape: [outputRows, args.vocabSize])
        try runtime.context.download(from: logitsBuffer.storage, into: UnsafeMutableRawBufferPointer(start: result.data, count: logitsBytes))
        return result
    }

    // MARK: - Pieces

    /// `out = RMSNorm(x)·w` per row in bf16 (and fp32 into `fp32Copy` when given).
    func rmsNorm(
        _ x: DevicePointer, rows: Int, weight: DeviceBuffer, eps: Float, into out: DevicePointer, fp32Copy: DevicePointer? = nil,
        dim: Int? = nil
    ) throws {
        try runtime.launch(
            "rmsnorm_rows", .rows(rows),
            [.pointer(x), .pointer(0), .pointer(weight.pointer), .pointer(out), .pointer(fp32Copy ?? 0), .int32(Int32(dim ?? args.dim)),
             .float32(eps)])
    }

    func add(_ delta: DevicePointer, into hidden: DevicePointer, count: Int) throws {
        try runtime.launch("add_f32", .elements(count), [.pointer(hidden), .pointer(delta), .int64(Int64(count))])
    }

    /// `out = w2(silu(w1·x) ⊙ w3·x)` in fp32, with w1 and w3 as one GEMM.
    func gatedFeedForward(_ ffn: GatedFeedForward, _ x: DevicePointer, rows: Int, role: String, into out: DevicePointer) throws {
        let d = args.dim, f = ffn.hidden
        let gateUp = try scratch.pointer(role + "_gate_up", bytes: try deviceBytes(rows, 2 * f, 4))
        let activated = try scratch.pointer(role + "_activated", bytes: try deviceBytes(rows, f, 2))
        try runtime.gemmBF16(m: rows, n: 2 * f, k: d, x: x, w: ffn.w13.pointer, y: gateUp, fp32Output: true)
        try runtime.launch(
            "swiglu_fused_bf16", .elements(rows * f), [.pointer(gateUp), .pointer(activated), .int64(Int64(rows)), .int32(Int32(f))])
        try runtime.gemmBF16(m: rows, n: d, k: f, x: activated, w: ffn.w2.pointer, y: out, fp32Output: true)
    }

    /// The device cache for `cache` (made when first seen, the stale ones dropped), or forward-local scratch.
    func deviceCache(for cache: KVCache?, batch: Int, newTokens: Int) throws -> (latent: [DevicePointer], ropeKeys: [DevicePointer]) {
        let r = args.kvLoraRank, dr = args.qkRopeHeadDim
        guard let cache else {
            let latent = try scratch.pointer("scratch_latent", bytes: try deviceBytes(batch, newTokens, r, 2))
            let ropeKeys = try scratch.pointer("scratch_rope_keys", bytes: try deviceBytes(batch, newTokens, dr, 2))
            return (Array(repeating: latent, count: layers.count), Array(repeating: ropeKeys, count: layers.count))
        }
        deviceCaches = deviceCaches.filter { $0.value.owner != nil }
        let key = ObjectIdentifier(cache)
        if let existing = deviceCaches[key], existing.owner === cache {
            return (existing.latent.map(\.pointer), existing.ropeKeys.map(\.pointer))
        }
        let latentBytes = try deviceBytes(cache.batch, cache.capacity, r, 2), ropeBytes = try deviceBytes(cache.batch, cache.capacity, dr, 2)
        let made = DeviceKVCache(
            owner: cache, latent: try layers.map { _ in try DeviceBuffer(runtime, bytes: latentBytes) },
            ropeKeys: try layers.map { _ in try DeviceBuffer(runtime, bytes: ropeBytes) })
        deviceCaches[key] = made
        return (made.latent.map(\.pointer), made.ropeKeys.map(\.pointer))
    }

    /// Device cos/sin tables covering `positions` positions (DeepSeek's interleaved pairs, YaRN as the CPU has it).
    func rope(positions: Int) throws -> (DevicePointer, DevicePointer) {
        if let tables = ropeTables, tables.positions >= positions { return (tables.cos.pointer, tables.sin.pointer) }
        let count = max(positions, args.maxSeqLen)
        let table = RotaryTable(frequencies: reference.ropeFrequencies, positions: count, pairing: .interleaved)
        let made = (
            positions: count, cos: try DeviceBuffer(runtime, floats: table.cos), sin: try DeviceBuffer(runtime, floats: table.sin)
        )
        ropeTables = made
        return (made.cos.pointer, made.sin.pointer)
    }
}
