import MoETensor

/// What gpt-oss weighs and costs: bytes for the benchmarks, TorchTitan's parameter and FLOP formulas.
extension GptOss {
    public var moeBlocks: [(layer: Int, block: MoEBlock)] { layers.map { ($0.index, $0.moe) } }

    public var footprint: ModelFootprint {
        let head = args.enableWeightTying ? 0 : lmHead.byteCount
        let embeddingAndHead = embedding.byteCount + head + finalNorm.count * 4
        var weightBytes = embeddingAndHead, dense = embeddingAndHead, experts = 0
        var active = embedding.byteCount / max(args.vocabSize, 1) + lmHead.byteCount
        let topK = args.moeArgs.topK, expertCount = max(args.moeArgs.numExperts, 1)
        for layer in layers {
            let a = layer.attention
            var attention = a.wq.byteCount + a.wk.byteCount + a.wv.byteCount + a.wo.byteCount
            attention +=
                ((a.qBias?.count ?? 0) + (a.kBias?.count ?? 0) + (a.vBias?.count ?? 0) + (a.oBias?.count ?? 0)
                    + (a.sinks?.count ?? 0)) * 4
            let norms = (layer.attentionNorm.count + layer.ffnNorm.count) * 4
            let moe = layer.moe
            weightBytes += attention + norms + moe.gateBytes + moe.routerVectorBytes + moe.expertBytes
            active += attention + moe.gateBytes + moe.expertBytes / expertCount * topK
            dense += attention + norms + moe.gateBytes + moe.routerVectorBytes
            experts += moe.expertBytes
        }
        return ModelFootprint(
            weightBytes: weightBytes, activeWeightBytesPerToken: active,
            heldDenseBytes: dense, heldExpertBytes: experts)
    }

    /// Validated args cannot overflow here (`validate()` computed the same sums checked).
    public func parameterCounts() -> ParameterCounts { (try? args.parameterCounts()) ?? ParameterCounts() }

    /// TorchTitan 0.3.0's `GptOssModel.Config.get_nparams_and_flops` at training seq_len `seqLen`.
    public func trainingFlopsPerToken(seqLen: Int) -> Int { (try? args.torchTitanParamsAndFlops(seqLen: seqLen))?.flopsPerToken ?? 0 }

    /// `2 × active matmul params` plus attention `2 · H · 2·head_dim` per visible key, each token seeing on average
    /// `(seqLen + 1)/2` keys on a full-causal layer and `Σ_p min(p + 1, window)/seqLen` on a windowed one.
    public func forwardFlopsPerToken(seqLen: Int) -> Double {
        let counts = parameterCounts()
        let norms = (2 * args.nLayers + 1) * args.dim
        let matmul =
            counts.active(topK: args.moeArgs.topK, numExperts: args.moeArgs.numExperts) - counts.embedding - norms
            - args.nLayers * (args.attentionSinks ? args.nHeads : 0)
        let s = Double(max(seqLen, 1))
        var visibleKeys = 0.0
        for layer in 0..<args.nLayers {
            if let window = args.slidingWindow(layer: layer), window < seqLen {
                let w = Double(window)
                visibleKeys += (w * (w + 1) / 2 + (s - w) * w) / s
            } else {
                visibleKeys += (s + 1) / 2
            }
        }
        return 2 * Double(matmul) + 2 * Double(args.nHeads * 2 * args.headDim) * visibleKeys
    }
}
