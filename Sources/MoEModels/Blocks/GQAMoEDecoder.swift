import MoETensor

/// One pre-norm decoder layer of the GQA MoE families (Qwen3-MoE, gpt-oss): RMSNorm → attention → residual,
/// RMSNorm → MoE → residual.
struct GQAMoELayer {
    var index: Int
    var attentionNorm: [Float]
    var ffnNorm: [Float]
    var attention: GroupedQueryAttention
    var moe: MoEBlock
}

/// The forward body the GQA MoE families share: embedding → `GQAMoELayer`s with rotate-half RoPE from
/// `ropeFrequencies` → final RMSNorm → output head. The families differ only in what their blocks hold
/// (biases, sinks, windows, q/k norms), so the order of operations lives once, here.
struct GQAMoEDecoder {
    let dim: Int
    let normEps: Float
    let embedding: Weight
    let layers: [GQAMoELayer]
    let finalNorm: [Float]
    let lmHead: Weight
    let ropeFrequencies: [Float]
    let cacheStreams: [KVStream]
    /// Where the decoder's own operations run (the layers' blocks hold the same backend).
    let backend: any TensorBackend

    /// Logits of already checked `tokens` on this process (the caller handles expert-parallel dispatch).
    func forward(
        tokens: [Int32], batch: Int, seqLen: Int, cache: KVCache?, logits selection: LogitsSelection,
        observer: RoutingObserver?, expertParallel: ExpertParallelGroup?
    ) throws -> Tensor {
        let logitsRows = try selection.hiddenRows(batch: batch, seqLen: seqLen)
        let past = cache?.length ?? 0
        let d = dim, rows = batch * seqLen, eps = normEps
        let hidden = Tensor(shape: [rows, d])
        backend.embed(tokens, table: embedding, into: hidden.data)
        let rope = RotaryTable(frequencies: ropeFrequencies, positions: past + seqLen, pairing: .rotateHalf)
        let normed = Tensor(shape: [rows, d])
        let scratch = cache == nil ? KVCache.Layer(batch: batch, capacity: seqLen, streams: cacheStreams) : nil
        for layer in layers {
            let store = cache?.layers[layer.index] ?? scratch!
            backend.rmsNorm(hidden.data, rows: rows, dim: d, weight: layer.attentionNorm, eps: eps, into: normed.data)
            layer.attention.apply(normed, batch: batch, newTokens: seqLen, past: past, rope: rope, store: store, addInto: hidden)
            backend.rmsNorm(hidden.data, rows: rows, dim: d, weight: layer.ffnNorm, eps: eps, into: normed.data)
            try layer.moe.apply(normed, layer: layer.index, addInto: hidden, observer: observer, expertParallel: expertParallel)
        }
        cache?.length += seqLen
        return OutputHead.logits(
            hidden: hidden, rows: logitsRows, norm: finalNorm, eps: eps,
            head: lmHead, backend: backend)
    }
}
