import MoETensor

/// Weight bytes the benchmarks divide by: what the model holds, and what one decoded token must read.
extension DeepSeekV3 {
    /// Bytes of every weight in its stored dtype (embedding and output head included).
    public var weightBytes: Int {
        var total = embedding.byteCount + output.byteCount + finalNorm.count * 4
        for layer in layers {
            total += attentionBytes(layer.attention) + (layer.attentionNorm.count + layer.ffnNorm.count) * 4
            if let ffn = layer.feedForward { total += ffn.w1.byteCount + ffn.w2.byteCount + ffn.w3.byteCount }
            if let moe = layer.moe {
                total += moe.gate.byteCount + moe.w1.byteCount + moe.w2.byteCount + moe.w3.byteCount
                if let s = moe.shared { total += s.w1.byteCount + s.w2.byteCount + s.w3.byteCount }
            }
        }
        return total
    }

    /// Bytes of weights one token's forward reads: every dense weight, the router, `top_k` routed experts
    /// per MoE layer, the shared experts, one embedding row and the output head — the decode roofline's numerator.
    public var activeWeightBytesPerToken: Int {
        var total = embedding.byteCount / max(args.vocabSize, 1) + output.byteCount
        let topK = args.moeArgs.topK, experts = max(args.moeArgs.numExperts, 1)
        for layer in layers {
            total += attentionBytes(layer.attention)
            if let ffn = layer.feedForward { total += ffn.w1.byteCount + ffn.w2.byteCount + ffn.w3.byteCount }
            if let moe = layer.moe {
                total += moe.gate.byteCount + (moe.w1.byteCount + moe.w2.byteCount + moe.w3.byteCount) / experts * topK
                if let s = moe.shared { total += s.w1.byteCount + s.w2.byteCount + s.w3.byteCount }
            }
        }
        return total
    }

    private func attentionBytes(_ a: Attention) -> Int {
        [a.wq, a.wqA, a.wqB, a.wkvA, a.wkvB, a.wo].reduce(0) { $0 + ($1?.byteCount ?? 0) }
            + (a.qNorm?.count ?? 0) * 4 + a.kvNorm.count * 4
    }
}
