import MoETensor

/// DeepSeek-V3's multi-head latent attention (TorchTitan `deepseek_v3` `Attention`): queries directly (`wq`) or
/// through a low-rank bottleneck (`wq_a` → RMSNorm → `wq_b`); keys and values from one compressed latent
/// `c_kv` (`wkv_a` → `kv_norm`) expanded per head by `wkv_b`, plus a RoPE'd key part shared by all heads.
public struct MultiHeadLatentAttention: @unchecked Sendable {
    var wq: Weight?
    var wqA: Weight?
    var qNorm: [Float]?
    var wqB: Weight?
    var wkvA: Weight
    var kvNorm: [Float]
    var wkvB: Weight
    var wo: Weight

    let heads: Int
    let qkNopeHeadDim: Int
    let qkRopeHeadDim: Int
    let vHeadDim: Int
    let kvLoraRank: Int
    /// 0 when queries are projected directly by `wq`.
    let qLoraRank: Int
    let normEps: Float
    /// `1/√qk_head_dim`, times YaRN's mscale² when YaRN applies.
    let softmaxScale: Float
    var qkHeadDim: Int { qkNopeHeadDim + qkRopeHeadDim }
    /// Where every tensor operation of the block runs.
    var backend: any TensorBackend = CPUBackend()

    /// What it caches per position: the normalised latent `c_kv` and the RoPE'd shared key `k_pe`, about 7×
    /// smaller than per-head keys and values for the TorchTitan flavors.
    static func cacheStreams(kvLoraRank: Int, qkRopeHeadDim: Int) -> [KVStream] {
        [KVStream(name: "latent", width: kvLoraRank), KVStream(name: "rope_keys", width: qkRopeHeadDim)]
    }
    static let latentStream = 0
    static let ropeKeyStream = 1

    /// Byte count of the weights (matrices in their stored dtype, norm vectors in fp32).
    var byteCount: Int {
        [wq, wqA, wqB, wkvA, wkvB, wo].reduce(0) { $0 + ($1?.byteCount ?? 0) }
            + ((qNorm?.count ?? 0) + kvNorm.count) * MemoryLayout<Float>.size
    }

    /// Multi-head latent attention over the compressed cache (`KVCache`: normalised latent `c_kv` and RoPE'd
    /// `k_pe` per position). The new tokens' latents go into `store` at positions `past..<past+newTokens` first.
    /// Two equivalent evaluation orders, chosen by FLOP count:
    /// - expanded (prefill): `wkv_b` expands every visible latent to per-head `k_nope | v`, then causal attention
    ///   with keys `[k_nope | k_pe]` in 64-query blocks that only touch the keys they can see;
    /// - absorbed (decode): `q_nope·W_kbᵀ` moves the query into the latent space, scores and the weighted sum
    ///   run over the cached latents directly, and `W_vb` maps the per-head result back to `v_head_dim`.
    func apply(
        _ x: Tensor, batch: Int, newTokens n: Int, past: Int, rope: RotaryTable,
        store: KVCache.Layer, addInto hidden: Tensor
    ) {
        let rows = x.rows, h = heads
        let dn = qkNopeHeadDim, dr = qkRopeHeadDim, dv = vHeadDim, dqk = qkHeadDim
        let kvRank = kvLoraRank

        let q: Tensor
        if let wq = wq {
            q = backend.linear(x, wq)
        } else {
            let qa = backend.linear(x, wqA!)
            backend.rmsNorm(qa.data, rows: rows, dim: qLoraRank, weight: qNorm!, eps: normEps, into: qa.data)
            q = backend.linear(qa, wqB!)
        }
        let kv = backend.linear(x, wkvA) // [rows, kvRank + dr]: c_kv | k_pe
        let qp = SendablePointer(q.data), kvp = SendablePointer(kv.data)
        let latentP = SendablePointer(store.values[Self.latentStream]), pep = SendablePointer(store.values[Self.ropeKeyStream])
        let normEps = normEps, capacity = store.capacity, backend = backend
        kvNorm.withUnsafeBufferPointer { kvNorm in
            let normP = SendableConstPointer(kvNorm.baseAddress!)
            Compute.parallelFor(rows, minChunk: 16) { r in
                let pos = past + r % n
                rope.apply(qp.pointer + r * h * dqk + dn, vectors: h, stride: dqk, position: pos, backend: backend)
                let row = kvp.pointer + r * (kvRank + dr)
                rope.apply(row + kvRank, position: pos, backend: backend)
                let slot = (r / n) * capacity + pos
                backend.rmsNormRow(row, dim: kvRank, weight: normP.pointer, eps: normEps, into: latentP.pointer + slot * kvRank)
                (pep.pointer + slot * dr).update(from: row + kvRank, count: dr)
            }
        }

        let total = past + n
        let context = Tensor(uninitializedShape: [rows, h * dv])
        // Multiply-adds per batch row of each order (the projections of the new tokens are common to both).
        let expandedCost = total * kvRank * h * (dn + dv) + h * n * (total + past + 1) / 2 * (dqk + dv)
        let absorbedCost = n * h * (dn * kvRank + kvRank * dv) + h * n * (total + past + 1) / 2 * (2 * kvRank + dr)
        if absorbedCost < expandedCost {
            attentionAbsorbed(q: q, batch: batch, newTokens: n, past: past, store: store, into: context)
        } else {
            attentionExpanded(q: q, batch: batch, newTokens: n, past: past, store: store, into: context)
        }
        backend.linear(context.data, rows: rows, weight: wo, into: hidden.data, accumulate: true)
    }

    /// Query rows per block of expanded attention: small enough that causal blocks skip most masked keys,
    /// large enough for efficient GEMMs.
    static let queryBlock = 64

    func attentionExpanded(
        q: Tensor, batch: Int, newTokens n: Int, past: Int,
        store: KVCache.Layer, into context: Tensor
    ) {
        let h = heads, dn = qkNopeHeadDim, dr = qkRopeHeadDim, dv = vHeadDim
        let dqk = qkHeadDim, kvRank = kvLoraRank
        let total = past + n, ldkv = h * (dn + dv), ldq = h * dqk
        // Per-head k_nope | v of every visible position, for each batch row.
        let kvHeads = Tensor(uninitializedShape: [batch * total, ldkv])
        for b in 0..<batch {
            backend.linear(
                store.values[Self.latentStream] + store.row(batch: b, position: 0) * kvRank, rows: total,
                weight: wkvB, into: kvHeads.row(b * total), accumulate: false)
        }
        let scale = softmaxScale, backend = backend
        let qp = SendablePointer(q.data), ctxp = SendablePointer(context.data)
        let kvp = SendablePointer(kvHeads.data), pep = SendablePointer(store.values[Self.ropeKeyStream])
        let capacity = store.capacity
        let block = MultiHeadLatentAttention.queryBlock
        let blocks = (n + block - 1) / block
        Compute.parallelChunks(batch * h) { items in
            // [total, dqk] keys of one head; [block, total] scores.
            guard let keys = Compute.threadScratch(1, total * dqk), let scores = Compute.threadScratch(2, block * total) else {
                fatalError("out of memory for attention scratch (\(total) positions)")
            }
            for item in items {
                let b = item / h, head = item % h
                let kvBase = kvp.pointer + b * total * ldkv + head * (dn + dv)
                let peBase = pep.pointer + b * capacity * dr
                for t in 0..<total {
                    (keys + t * dqk).update(from: kvBase + t * ldkv, count: dn)
                    (keys + t * dqk + dn).update(from: peBase + t * dr, count: dr)
                }
                for blockIndex in 0..<blocks {
                    let i0 = blockIndex * block, i1 = min(n, i0 + block), m = i1 - i0
                    let visible = past + i1
                    let qBlock = qp.pointer + (b * n + i0) * ldq + head * dqk
                    backend.sgemmSerial(
                        transA: false, transB: true, m: m, n: visible, k: dqk, alpha: scale,
                        qBlock, lda: ldq, keys, ldb: dqk, beta: 0, scores, ldc: visible)
                    backend.causalSoftmax(
                        scores, rows: m, width: visible, firstQueryPosition: past + i0, firstKeyPosition: 0,
                        window: nil, sink: nil)
                    backend.sgemmSerial(
                        transA: false, transB: false, m: m, n: dv, k: visible, alpha: 1,
                        scores, lda: visible, kvBase + dn, ldb: ldkv,
                        beta: 0, ctxp.pointer + (b * n + i0) * h * dv + head * dv, ldc: h * dv)
                }
            }
        }
    }

    func attentionAbsorbed(
        q: Tensor, batch: Int, newTokens n: Int, past: Int,
        store: KVCache.Layer, into context: Tensor
    ) {
        let h = heads, dn = qkNopeHeadDim, dr = qkRopeHeadDim, dv = vHeadDim
        let dqk = qkHeadDim, kvRank = kvLoraRank
        let total = past + n, ldq = h * dqk
        let scale = softmaxScale, backend = backend
        let wkvB = wkvB
        let qp = SendablePointer(q.data), ctxp = SendablePointer(context.data)
        let latentP = SendablePointer(store.values[Self.latentStream]), pep = SendablePointer(store.values[Self.ropeKeyStream])
        let capacity = store.capacity
        // Head-major so one head's W_kb | W_vb is widened once for all batch rows.
        Compute.parallelChunks(h) { heads in
            let perHead = (dn + dv) * kvRank
            guard let qLatent = Compute.threadScratch(1, n * kvRank), let scores = Compute.threadScratch(2, n * total),
                let ctxLatent = Compute.threadScratch(3, n * kvRank + (wkvB.float32Pointer == nil ? perHead : 0))
            else {
                fatalError("out of memory for attention scratch (\(total) positions)")
            }
            for head in heads {
                // Rows head·(dn+dv) ..< (head+1)·(dn+dv) of wkv_b: W_kb [dn, R] then W_vb [dv, R].
                let headWeights: UnsafePointer<Float>
                if let w = wkvB.float32Pointer {
                    headWeights = w + head * perHead
                } else {
                    let widened = ctxLatent + n * kvRank
                    wkvB.widen(from: head * perHead, count: perHead, into: widened)
                    headWeights = UnsafePointer(widened)
                }
                for b in 0..<batch {
                    let qHead = qp.pointer + b * n * ldq + head * dqk
                    let latent = latentP.pointer + b * capacity * kvRank
                    backend.sgemmSerial(
                        transA: false, transB: false, m: n, n: kvRank, k: dn, alpha: 1,
                        qHead, lda: ldq, headWeights, ldb: kvRank, beta: 0, qLatent, ldc: kvRank)
                    backend.sgemmSerial(
                        transA: false, transB: true, m: n, n: total, k: kvRank, alpha: scale,
                        qLatent, lda: kvRank, latent, ldb: kvRank, beta: 0, scores, ldc: total)
                    backend.sgemmSerial(
                        transA: false, transB: true, m: n, n: total, k: dr, alpha: scale,
                        qHead + dn, lda: ldq, pep.pointer + b * capacity * dr, ldb: dr,
                        beta: 1, scores, ldc: total)
                    backend.causalSoftmax(
                        scores, rows: n, width: total, firstQueryPosition: past, firstKeyPosition: 0, window: nil, sink: nil)
                    backend.sgemmSerial(
                        transA: false, transB: false, m: n, n: kvRank, k: total, alpha: 1,
                        scores, lda: total, latent, ldb: kvRank, beta: 0, ctxLatent, ldc: kvRank)
                    backend.sgemmSerial(
                        transA: false, transB: true, m: n, n: dv, k: kvRank, alpha: 1,
                        ctxLatent, lda: kvRank, headWeights + dn * kvRank, ldb: kvRank,
                        beta: 0, ctxp.pointer + b * n * h * dv + head * dv, ldc: h * dv)
                }
            }
        }
    }
}
