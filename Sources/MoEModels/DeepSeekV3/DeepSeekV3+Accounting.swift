import MoETensor

/// What DeepSeek-V3 weighs and costs: bytes for the benchmarks, TorchTitan's parameter and FLOP formulas.
extension DeepSeekV3 {
    public var moeBlocks: [(layer: Int, block: MoEBlock)] {
        layers.compactMap { layer in layer.moe.map { (layer.index, $0) } }
    }

    public var footprint: ModelFootprint {
        let embeddingAndHead = embedding.byteCount + output.byteCount + finalNorm.count * 4
        var weightBytes = embeddingAndHead
        var active = embedding.byteCount / max(args.vocabSize, 1) + output.byteCount
        var dense = embeddingAndHead, experts = 0
        let topK = args.moeArgs.topK, expertCount = max(args.moeArgs.numExperts, 1)
        for layer in layers {
            let attention = layer.attention.byteCount
            let norms = (layer.attentionNorm.count + layer.ffnNorm.count) * 4
            weightBytes += attention + norms
            active += attention
            dense += attention + norms
            if let ffn = layer.feedForward {
                weightBytes += ffn.byteCount; active += ffn.byteCount; dense += ffn.byteCount
            }
            if let moe = layer.moe {
                weightBytes += moe.gateBytes + moe.expertBytes + moe.sharedBytes
                active += moe.gateBytes + moe.expertBytes / expertCount * topK + moe.sharedBytes
                dense += moe.gateBytes + moe.routerVectorBytes + moe.sharedBytes
                experts += moe.expertBytes
            }
        }
        return ModelFootprint(
            weightBytes: weightBytes, activeWeightBytesPerToken: active,
            heldDenseBytes: dense, heldExpertBytes: experts)
    }

    /// Bytes of every weight in its stored dtype (embedding and output head included).
    public var weightBytes: Int { footprint.weightBytes }
    /// Bytes of weights one token's forward reads (the decode roofline's numerator).
    public var activeWeightBytesPerToken: Int { footprint.activeWeightBytesPerToken }
    /// Bytes of weights this process holds: the routed experts (only the local ones under expert parallelism)
    /// and everything else (replicated on every rank).
    public var heldWeightBytes: (dense: Int, experts: Int) { (footprint.heldDenseBytes, footprint.heldExpertBytes) }

    public func parameterCounts() -> ParameterCounts { args.parameterCounts() }

    public func trainingFlopsPerToken(seqLen: Int) -> Int { args.trainingFlopsPerToken(seqLen: seqLen) }

    /// `2 × active matmul params` plus causal attention, `2 · L · H · (d_qk + d_v) · (seqLen + 1)/2` (each token
    /// attends to (seqLen+1)/2 positions on average).
    public func forwardFlopsPerToken(seqLen: Int) -> Double { args.forwardFlopsPerToken(seqLen: seqLen) }
}

extension ModelArgs {
    /// Matrix-multiply parameters a token passes through, excluding the embedding lookup (not a matmul) and
    /// the norm weights (elementwise).
    public func activeMatmulParameters() -> Int {
        let counts = parameterCounts()
        var norms = 0
        for (name, shape) in expectedShapes() where name.hasSuffix("norm.weight") { norms += shape.reduce(1, *) }
        return counts.active(topK: moeArgs.topK, numExperts: moeArgs.numExperts) - counts.embedding - norms
    }

    /// DeepSeek-V3's forward FLOPs per token at sequence length `seqLen` (see `DeepSeekV3.forwardFlopsPerToken`).
    public func forwardFlopsPerToken(seqLen: Int) -> Double {
        let attention = 2.0 * Double(nLayers * nHeads * (qkHeadDim + vHeadDim)) * Double(seqLen + 1) / 2
        return 2.0 * Double(activeMatmulParameters()) + attention
    }
}
