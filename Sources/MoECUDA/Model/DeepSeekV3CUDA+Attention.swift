import MoEModels

/// Multi-head latent attention on the device, as `MultiHeadLatentAttention.apply`: projections, RoPE, the
/// compressed cache, then the expanded order (prefill) or the absorbed order (decode), chosen by the same FLOP
/// count, and `wo`.
extension DeepSeekV3CUDA {
    /// Where one layer's attention reads and writes for this forward.
    struct AttentionStep {
        var batch: Int
        var newTokens: Int
        var past: Int
        /// Positions per batch row of the cache (the forward's own length without a KV cache).
        var capacity: Int
        var latentCache: DevicePointer
        var ropeCache: DevicePointer
        var cos: DevicePointer
        var sin: DevicePointer
        var total: Int { past + newTokens }
    }

    /// `out = wo(MLA(x))` in fp32 `[rows, D]`; `x` is the normed input, bf16 `[rows, D]`.
    func attention(_ weights: Attention, _ x: DevicePointer, _ step: AttentionStep, into out: DevicePointer) throws {
        let d = args.dim, h = args.nHeads, dn = args.qkNopeHeadDim, dr = args.qkRopeHeadDim, dv = args.vHeadDim
        let dqk = dn + dr, rank = args.kvLoraRank, n = step.newTokens
        let rows = step.batch * n
        let q = try scratch.pointer("q", bytes: try deviceBytes(rows, h, dqk, 4))
        if let wq = weights.wq {
            try runtime.gemmBF16(m: rows, n: h * dqk, k: d, x: x, w: wq.pointer, y: q, fp32Output: true)
        } else if let wqA = weights.wqA, let qNorm = weights.qNorm, let wqB = weights.wqB {
            let ql = args.qLoraRank
            let qa = try scratch.pointer("q_a", bytes: try deviceBytes(rows, ql, 4))
            let qaNormed = try scratch.pointer("q_a_normed", bytes: try deviceBytes(rows, ql, 2))
            try runtime.gemmBF16(m: rows, n: ql, k: d, x: x, w: wqA.pointer, y: qa, fp32Output: true)
            try rmsNorm(qa, rows: rows, weight: qNorm, eps: Float(args.normEps), into: qaNormed, dim: ql)
            try runtime.gemmBF16(
                m: rows, n: h * dqk, k: ql, x: qaNormed, w: wqB.pointer, y: q, fp32Output: true)
        }
        // c_kv | k_pe of the new tokens.
        let kv = try scratch.pointer("kv", bytes: try deviceBytes(rows, rank + dr, 4))
        try runtime.gemmBF16(
            m: rows, n: rank + dr, k: d, x: x, w: weights.wkvA.pointer, y: kv, fp32Output: true)
        try runtime.launch(
            "rope_interleaved_f32", .elements(rows * h * dr / 2),
            [.pointer(q), .int64(Int64(rows)), .int32(Int32(h * dqk)), .int32(Int32(h)), .int32(Int32(dqk)), .int32(Int32(dn)),
             .int32(Int32(dr / 2)), .pointer(step.cos), .pointer(step.sin), .int32(Int32(step.past)), .int32(Int32(n))])
        try runtime.launch(
            "mla_store_latent", .rows(rows),
            [.pointer(kv), .pointer(weights.kvNorm.pointer), .float32(Float(args.normEps)), .pointer(step.cos), .pointer(step.sin),
             .pointer(step.latentCache), .pointer(step.ropeCache), .int32(Int32(rank)), .int32(Int32(dr)), .int32(Int32(step.past)),
             .int32(Int32(n)), .int32(Int32(step.capacity))])

        let context = try scratch.pointer("context", bytes: try deviceBytes(rows, h, dv, 2))
        // Multiply-adds per batch row of each order, as the CPU decides.
        let total = step.total, past = step.past
        let expandedCost = total * rank * h * (dn + dv) + h * n * (total + past + 1) / 2 * (dqk + dv)
        let absorbedCost = n * h * (dn * rank + rank * dv) + h * n * (total + past + 1) / 2 * (2 * rank + dr)
        if absorbedCost < expandedCost {
            try attentionAbsorbed(weights, q: q, step, into: context)
        } else {
            try attentionExpanded(weights, q: q, step, into: context)
        }
        try runtime.gemmBF16(
            m: rows, n: d, k: h * dv, x: context, w: weights.wo.pointer, y: out, fp32Output: true)
    }

    /// wkv_b expands every visible latent to per-head `k_nope | v` (one GEMM per batch row), then the tiled causal
    /// kernel attends with keys `[k_nope | k_pe]`.
    func attentionExpanded(_ weights: Attention, q: DevicePointer, _ step: AttentionStep, into context: DevicePointer) throws {
        let h = args.nHeads, dn = args.qkNopeHeadDim, dr = args.qkRopeHeadDim, dv = args.vHeadDim, rank = args.kvLoraRank
        let total = step.total, width = h * (dn + dv)
        let kvHeads = try scratch.pointer("kv_heads", bytes: try deviceBytes(step.batch, total, width, 2))
        for b in 0..<step.batch {
            try runtime.gemmBF16(
                m: total, n: width, k: rank, x: step.latentCache + DevicePointer(b * step.capacity * rank * 2),
                w: weights.wkvB.pointer, y: kvHeads + DevicePointer(b * total * width * 2), fp32Output: false)
        }
        let tiles = (step.newTokens + CUDAKernelSource.flashQueryTile - 1) / CUDAKernelSource.flashQueryTile
        try runtime.launch(
            "mla_flash_prefill",
            LaunchShape(
                grid: (tiles, h, step.batch), block: (128, 1, 1),
                sharedBytes: CUDAKernelSource.flashSharedBytes(qkDims: dn + dr, valueDims: dv)),
            [.pointer(q), .pointer(kvHeads), .pointer(step.ropeCache), .pointer(context), .int32(Int32(step.newTokens)),
             .int32(Int32(step.past)), .int32(Int32(total)), .int32(Int32(step.capacity)), .int32(Int32(h)), .int32(Int32(dn)),
             .int32(Int32(dr)), .int32(Int32(dv)), .float32(reference.softmaxScale)])
    }

    /// `q_nope·W_kb` moves each query into the latent space; scores and the weighted sum run over the cached
    /// latents directly; `W_vb` maps the result back to `v_head_dim`.
    func attentionAbsorbed(_ weights: Attention, q: DevicePointer, _ step: AttentionStep, into context: DevicePointer) throws {
        let h = args.nHeads, dn = args.qkNopeHeadDim, dr = args.qkRopeHeadDim, dv = args.vHeadDim, rank = args.kvLoraRank
        let rows = step.batch * step.newTokens, total = step.total
        let qLatent = try scratch.pointer("q_latent", bytes: try deviceBytes(rows, h, rank, 4))
        let scores = try scratch.pointer("scores", bytes: try deviceBytes(rows, h, total, 4))
        let contextLatent = try scratch.pointer("context_latent", bytes: try deviceBytes(rows, h, rank, 4))
        try runtime.launch(
            "mla_absorb_query", .rows(rows * h, threads: 128),
            [.pointer(q), .pointer(weights.wkvB.pointer), .pointer(qLatent), .int32(Int32(h)), .int32(Int32(dn)), .int32(Int32(dr)),
             .int32(Int32(dv)), .int32(Int32(rank))])
        try runtime.launch(
            "mla_absorbed_scores", .elements(rows * h * total),
            [.pointer(qLatent), .pointer(q), .pointer(step.latentCache), .pointer(step.ropeCache), .pointer(scores),
             .int64(Int64(rows)), .int32(Int32(step.newTokens)), .int32(Int32(step.past)), .int32(Int32(total)),
             .int32(Int32(step.capacity)), .int32(Int32(h)), .int32(Int32(dn)), .int32(Int32(dr)), .int32(Int32(rank)),
             .float32(reference.softmaxScale)])
        try runtime.launch("softmax_rows", .rows(rows * h, threads: 128), [.pointer(scores), .int32(Int32(total))])
        try runtime.launch(
            "mla_absorbed_context", .rows(rows * h, threads: 128),
            [.pointer(scores), .pointer(step.latentCache), .pointer(contextLatent), .int32(Int32(step.newTokens)),
             .int32(Int32(step.past)), .int32(Int32(total)), .int32(Int32(step.capacity)), .int32(Int32(h)), .int32(Int32(rank))])
        try runtime.launch(
            "mla_absorb_value", .rows(rows * h, threads: 128),
            [.pointer(contextLatent), .pointer(weights.wkvB.pointer), .pointer(context), .int32(Int32(h)), .int32(Int32(dn)),
             .int32(Int32(dv)), .int32(Int32(rank))])
    }
}
