import Foundation
import MoETensor

/// Grouped-query attention as TorchTitan 0.3.0's `GQAttention` computes it: q/k/v projections (biases optional),
/// optional per-head RMSNorm of q and k over `head_dim` *before* RoPE (Qwen3), RoPE from an injected table,
/// causal softmax attention where query head `i` reads kv head `i / (n_heads / n_kv_heads)`, then `wo`.
/// gpt-oss adds a causal sliding window (a query at position p sees keys `p − window + 1 … p`) and per-head
/// attention sinks: one more logit `sinks[h]` in each softmax's normaliser that weights no value (TorchTitan:
/// output · σ(lse − sink)). Serves prefill (many new tokens) and cached decode (new tokens continue `past` cached positions).
public struct GroupedQueryAttention: Sendable {
    public let dim: Int
    public let nHeads: Int
    public let nKVHeads: Int
    public let headDim: Int
    /// `[nHeads·headDim, dim]`, `[nKVHeads·headDim, dim]` ×2, `[dim, nHeads·headDim]`.
    public let wq: Weight, wk: Weight, wv: Weight, wo: Weight
    public var qBias: [Float]? = nil, kBias: [Float]? = nil, vBias: [Float]? = nil, oBias: [Float]? = nil
    /// Per-head RMSNorm weights `[headDim]` for q and k (both or neither).
    public var qNorm: [Float]? = nil, kNorm: [Float]? = nil
    public var normEps: Float = 1e-6
    public var softmaxScale: Float
    /// Per-head sink logits `[nHeads]` (gpt-oss).
    public var sinks: [Float]? = nil
    /// Keys a query sees, itself included; nil for full causal attention.
    public var slidingWindow: Int? = nil
    /// Where every tensor operation of the block runs (scores and values stay fp32 products in every compute
    /// precision; only the projections follow the backend's precision).
    public var backend: any TensorBackend = CPUBackend()

    public init(
        dim: Int, nHeads: Int, nKVHeads: Int, headDim: Int, wq: Weight, wk: Weight, wv: Weight, wo: Weight,
        softmaxScale: Float
    ) {
        precondition(nKVHeads > 0 && nHeads % nKVHeads == 0, "n_heads must be a multiple of n_kv_heads (validated by the args)")
        self.dim = dim; self.nHeads = nHeads; self.nKVHeads = nKVHeads; self.headDim = headDim
        self.wq = wq; self.wk = wk; self.wv = wv; self.wo = wo
        self.softmaxScale = softmaxScale
    }

    /// What a GQA layer caches per position: the keys (after the k norm and RoPE) and the values of every
    /// kv head, `n_kv_heads · head_dim` floats each.
    public static func cacheStreams(kvHeads: Int, headDim: Int) -> [KVStream] {
        [KVStream(name: "keys", width: kvHeads * headDim), KVStream(name: "values", width: kvHeads * headDim)]
    }

    /// Bytes of the projection weights, biases and norm weights.
    public var byteCount: Int {
        wq.byteCount + wk.byteCount + wv.byteCount + wo.byteCount
            + [qBias, kBias, vBias, oBias, qNorm, kNorm].reduce(0) { $0 + ($1?.count ?? 0) } * MemoryLayout<Float>.size
    }

    /// Query rows per block: small enough that causal blocks skip most masked keys, large enough for GEMMs.
    static let queryBlock = 64

    /// `hidden += wo(attention(x))` for `batch` rows of `newTokens` tokens each (`x` is `[batch·newTokens, dim]`,
    /// already normed). Their keys and values are written to `store` (a cache layer with `cacheStreams`) at
    /// positions `past..<past+newTokens`, which the caller has checked fit its capacity; `rope` covers at least
    /// `past + newTokens` positions.
    func apply(
        _ x: Tensor, batch: Int, newTokens n: Int, past: Int, rope: RotaryTable,
        store: KVCache.Layer, addInto hidden: Tensor
    ) {
        let rows = x.rows, h = nHeads, kvh = nKVHeads, hd = headDim, backend = backend
        let q = backend.linear(x, wq), k = backend.linear(x, wk), v = backend.linear(x, wv)
        addBias(qBias, to: q); addBias(kBias, to: k); addBias(vBias, to: v)
        // Per-head RMSNorm before RoPE: every head of every row is one row of `head_dim` values.
        if let qNorm, let kNorm {
            backend.rmsNorm(q.data, rows: rows * h, dim: hd, weight: qNorm, eps: normEps, into: q.data)
            backend.rmsNorm(k.data, rows: rows * kvh, dim: hd, weight: kNorm, eps: normEps, into: k.data)
        }

        let qp = SendablePointer(q.data), kp = SendablePointer(k.data), vp = SendablePointer(v.data)
        let keysP = SendablePointer(store.values[0]), valuesP = SendablePointer(store.values[1])
        let capacity = store.capacity
        Compute.parallelFor(rows, minChunk: 16) { r in
            let pos = past + r % n
            rope.apply(qp.pointer + r * h * hd, vectors: h, stride: hd, position: pos, backend: backend)
            rope.apply(kp.pointer + r * kvh * hd, vectors: kvh, stride: hd, position: pos, backend: backend)
            let slot = ((r / n) * capacity + pos) * kvh * hd
            (keysP.pointer + slot).update(from: kp.pointer + r * kvh * hd, count: kvh * hd)
            (valuesP.pointer + slot).update(from: vp.pointer + r * kvh * hd, count: kvh * hd)
        }

        let context = Tensor(uninitializedShape: [rows, h * hd])
        let ctxP = SendablePointer(context.data)
        let scale = softmaxScale, group = h / kvh, ldq = h * hd, ldkv = kvh * hd
        let block = Self.queryBlock, blocks = (n + block - 1) / block
        let total = past + n, window = slidingWindow, sinks = self.sinks
        Compute.parallelChunks(batch * h) { items in
            guard let scores = Compute.threadScratch(1, min(block, n) * total) else {
                fatalError("out of memory for attention scratch (\(total) positions)")
            }
            for item in items {
                let b = item / h, head = item % h, kvHead = head / group
                let keys = keysP.pointer + b * capacity * ldkv + kvHead * hd
                let values = valuesP.pointer + b * capacity * ldkv + kvHead * hd
                let sink = sinks?[head]
                for blockIndex in 0..<blocks {
                    let i0 = blockIndex * block, i1 = min(n, i0 + block), m = i1 - i0
                    // Keys first..<past+i1 cover every query of the block; a window skips the ones none of them sees.
                    let first = window.map { max(0, past + i0 - $0 + 1) } ?? 0
                    let visible = past + i1 - first
                    backend.sgemmSerial(
                        transA: false, transB: true, m: m, n: visible, k: hd, alpha: scale,
                        qp.pointer + (b * n + i0) * ldq + head * hd, lda: ldq, keys + first * ldkv, ldb: ldkv,
                        beta: 0, scores, ldc: visible)
                    backend.causalSoftmax(
                        scores, rows: m, width: visible, firstQueryPosition: past + i0, firstKeyPosition: first,
                        window: window, sink: sink)
                    backend.sgemmSerial(
                        transA: false, transB: false, m: m, n: hd, k: visible, alpha: 1,
                        scores, lda: visible, values + first * ldkv, ldb: ldkv,
                        beta: 0, ctxP.pointer + (b * n + i0) * ldq + head * hd, ldc: ldq)
                }
            }
        }
        if oBias != nil {
            let projected = backend.linear(context, wo)
            addBias(oBias, to: projected)
            backend.add(projected.data, into: hidden.data, count: hidden.count)
        } else {
            backend.linear(context.data, rows: rows, weight: wo, into: hidden.data, accumulate: true)
        }
    }

    func addBias(_ bias: [Float]?, to t: Tensor) {
        guard let bias else { return }
        backend.addBias(bias, to: t.data, rows: t.rows, width: bias.count)
    }
}
