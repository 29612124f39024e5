import MoETensor

/// Parameters and FLOPs as TorchTitan 0.3.0 counts them for `qwen3` (`Qwen3Model.Config.get_nparams_and_flops`
/// → `get_moe_model_nparams_and_flops` with `head_dims = 2·head_dim`). Assumes args that passed `validate()`.
extension Qwen3Args {
    /// Parameter counts in TorchTitan's buckets: names containing "embedding" (counted as dense too),
    /// `moe.router`, `moe.routed_experts`, everything else dense (lm_head included). `expert_bias_E` is a buffer.
    public func parameterCounts() -> ModelArgs.ParameterCounts {
        ModelArgs.ParameterCounts(bucketing: (try? Qwen3Naming.shapes(self)) ?? [], routedExperts: "moe.routed_experts")
    }

    public var totalParameters: Int { parameterCounts().total }
    public var activeParameters: Int { parameterCounts().active(topK: moeArgs.topK, numExperts: moeArgs.numExperts) }

    /// TorchTitan's training FLOPs per token: `6·(dense − embedding + sparse_active) + 6·L·H·(2·head_dim)·seq_len`;
    /// with tied embeddings the shared matrix still does the lm_head matmul, so nothing is subtracted.
    public func trainingFlopsPerToken(seqLen: Int) -> Int {
        let c = parameterCounts()
        let active = c.active(topK: moeArgs.topK, numExperts: moeArgs.numExperts)
        let matmul = enableWeightTying ? active : active - c.embedding
        return 6 * matmul + 6 * nLayers * nHeads * (2 * headDim) * seqLen
    }

    /// Matrix-multiply parameters a token passes through: active parameters less the embedding lookup (not a
    /// matmul, unless tied, when the same matrix is the lm_head) and the norm weights (elementwise).
    public func activeMatmulParameters() -> Int {
        let counts = parameterCounts()
        let norms = ((try? Qwen3Naming.shapes(self)) ?? []).filter { $0.name.hasSuffix("norm.weight") }.reduce(0) {
            $0 + $1.shape.reduce(1, *)
        }
        return counts.active(topK: moeArgs.topK, numExperts: moeArgs.numExperts) - (enableWeightTying ? 0 : counts.embedding) - norms
    }

    /// Forward FLOPs per token at sequence length `seqLen`: `2 × activeMatmulParameters` plus causal attention
    /// (scores and weighted sum, `2 · L · H · 2·head_dim` per attended position, `(seqLen + 1)/2` on average).
    public func forwardFlopsPerToken(seqLen: Int) -> Double {
        let attention = 2.0 * Double(nLayers * nHeads * 2 * headDim) * Double(seqLen + 1) / 2
        return 2.0 * Double(activeMatmulParameters()) + attention
    }

    /// `validate()`'s check that the counts above cannot overflow at `max_seq_len`.
    func checkCostSizes() throws {
        let total = try parameterCount()
        _ = try Checked.product(
            [3, moeArgs.numExperts, moeInterDim, dim, nLayers, moeArgs.topK], what: "the routed expert parameters × top_k")
        let attention = try Checked.product([6, nLayers, nHeads, 2, headDim, maxSeqLen], what: "the attention FLOPs per token")
        _ = try Checked.add(
            Checked.multiply(total, 6, what: "the FLOPs per token (6 × parameters)"), attention, what: "the FLOPs per token")
    }
}
