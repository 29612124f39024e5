/// What the model args imply about the checkpoint: tensor names (TorchTitan v0.2.x names) and shapes,
/// and parameter counts bucketed as TorchTitan's `get_moe_model_nparams_and_flops` buckets them.
extension ModelArgs {
    /// Every persistent tensor the model owns, by canonical name.
    public func expectedShapes() -> [String: [Int]] {
        var shapes: [String: [Int]] = [:]
        let d = dim, h = nHeads, m = moeArgs
        shapes["tok_embeddings.weight"] = [vocabSize, d]
        for i in 0..<nLayers {
            let p = "layers.\(i)."
            if qLoraRank == 0 {
                shapes[p + "attention.wq.weight"] = [h * qkHeadDim, d]
            } else {
                shapes[p + "attention.wq_a.weight"] = [qLoraRank, d]
                shapes[p + "attention.q_norm.weight"] = [qLoraRank]
                shapes[p + "attention.wq_b.weight"] = [h * qkHeadDim, qLoraRank]
            }
            shapes[p + "attention.wkv_a.weight"] = [kvLoraRank + qkRopeHeadDim, d]
            shapes[p + "attention.kv_norm.weight"] = [kvLoraRank]
            shapes[p + "attention.wkv_b.weight"] = [h * (qkNopeHeadDim + vHeadDim), kvLoraRank]
            shapes[p + "attention.wo.weight"] = [d, h * vHeadDim]
            shapes[p + "attention_norm.weight"] = [d]
            shapes[p + "ffn_norm.weight"] = [d]
            if isMoELayer(i) {
                let e = m.numExperts, f = moeInterDim
                shapes[p + "moe.router.gate.weight"] = [e, d]
                if m.gateBias { shapes[p + "moe.router.gate.bias"] = [e] }
                shapes[p + "moe.experts.w1"] = [e, f, d]
                shapes[p + "moe.experts.w2"] = [e, d, f]
                shapes[p + "moe.experts.w3"] = [e, f, d]
                if m.loadBalanceCoeff != nil { shapes[p + "moe.expert_bias"] = [e] }
                if m.numSharedExperts > 0 {
                    let sf = f * m.numSharedExperts
                    shapes[p + "moe.shared_experts.w1.weight"] = [sf, d]
                    shapes[p + "moe.shared_experts.w2.weight"] = [d, sf]
                    shapes[p + "moe.shared_experts.w3.weight"] = [sf, d]
                }
            } else {
                shapes[p + "feed_forward.w1.weight"] = [interDim, d]
                shapes[p + "feed_forward.w2.weight"] = [d, interDim]
                shapes[p + "feed_forward.w3.weight"] = [interDim, d]
            }
        }
        shapes["norm.weight"] = [d]
        shapes["output.weight"] = [vocabSize, d]
        return shapes
    }

    /// Parameter counts in TorchTitan's buckets (buffers such as expert_bias are not parameters).
    public struct ParameterCounts: Sendable, Equatable {
        public var embedding = 0, dense = 0, router = 0, shared = 0, experts = 0
        /// All parameters (TorchTitan's `nparams`; embeddings counted once).
        public var total: Int { dense + router + shared + experts }
        /// Parameters one token passes through: routed experts scaled by top_k / num_experts
        /// (integer division, as TorchTitan computes it).
        public func active(topK: Int, numExperts: Int) -> Int {
            dense + router + shared + (numExperts > 0 ? experts * topK / numExperts : 0)
        }
    }

    public func parameterCounts() -> ParameterCounts {
        var c = ParameterCounts()
        for (name, shape) in expectedShapes() where !name.hasSuffix("moe.expert_bias") {
            let n = shape.reduce(1, *)
            if name.contains("embedding") { c.embedding += n; c.dense += n }
            else if name.contains("moe.shared_experts") { c.shared += n }
            else if name.contains("moe.router") { c.router += n }
            else if name.contains("moe.experts") { c.experts += n }
            else { c.dense += n }
        }
        return c
    }

    public var totalParameters: Int { parameterCounts().total }
    public var activeParameters: Int { parameterCounts().active(topK: moeArgs.topK, numExperts: moeArgs.numExperts) }

    /// TorchTitan's training FLOPs per token (`6·(dense − embedding + sparse_active) + 6·L·H·(dn+dr+dv)·seq`),
    /// kept for comparability with its MFU numbers; forward-only cost is a third of the matmul part.
    public func trainingFlopsPerToken(seqLen: Int) -> Int {
        let c = parameterCounts()
        let active = c.active(topK: moeArgs.topK, numExperts: moeArgs.numExperts)
        let headDims = qkNopeHeadDim + qkRopeHeadDim + vHeadDim
        return 6 * (active - c.embedding) + 6 * nLayers * nHeads * headDims * seqLen
    }

    /// Model args read off tensor shapes. Shapes cannot tell top_k, scoring, route norm/scale, groups,
    /// YaRN, or the split of a head into nope/rope/v dims: those keep TorchTitan's flavor values
    /// (128/64/128 head dims when they fit) and are listed in `guessed`.
    public static func inferred(from shapes: [String: [Int]]) -> (args: ModelArgs, guessed: [String]) {
        var a = Flavors.args(for: "16B")!
        var guessed = ["moe_args.top_k", "moe_args.score_func", "moe_args.route_norm", "moe_args.route_scale",
                       "moe_args.num_expert_groups", "moe_args.num_limited_groups", "max_seq_len", "rope_theta",
                       "rope_factor", "mscale", "norm_eps"]
        if let e = shapes["tok_embeddings.weight"], e.count == 2 { a.vocabSize = e[0]; a.dim = e[1] }
        let layerIndices = Set(shapes.keys.compactMap { name -> Int? in
            guard name.hasPrefix("layers.") else { return nil }
            return Int(name.dropFirst(7).prefix { $0.isNumber })
        })
        a.nLayers = (layerIndices.max() ?? -1) + 1
        a.nDenseLayers = (0..<a.nLayers).first { shapes["layers.\($0).moe.router.gate.weight"] != nil } ?? a.nLayers
        if let w1 = shapes.first(where: { $0.key.hasSuffix("moe.experts.w1") })?.value, w1.count == 3 {
            a.moeArgs.numExperts = w1[0]; a.moeInterDim = w1[1]
            a.moeArgs.topK = min(a.moeArgs.topK, w1[0])
        }
        if let s = shapes.first(where: { $0.key.hasSuffix("moe.shared_experts.w1.weight") })?.value {
            a.moeArgs.numSharedExperts = a.moeInterDim > 0 ? s[0] / a.moeInterDim : 0
        } else { a.moeArgs.numSharedExperts = 0 }
        a.moeArgs.loadBalanceCoeff = shapes.keys.contains { $0.hasSuffix("moe.expert_bias") } ? 1e-3 : nil
        a.moeArgs.gateBias = shapes.keys.contains { $0.hasSuffix("moe.router.gate.bias") }
        if let f = shapes["layers.0.feed_forward.w1.weight"] { a.interDim = f[0] }
        if let kv = shapes["layers.0.attention.kv_norm.weight"] { a.kvLoraRank = kv[0] }
        a.qLoraRank = shapes["layers.0.attention.q_norm.weight"]?[0] ?? 0
        if let kva = shapes["layers.0.attention.wkv_a.weight"] { a.qkRopeHeadDim = kva[0] - a.kvLoraRank }
        // Heads: wkv_b rows = H·(dn+dv), wo cols = H·dv, wq rows = H·(dn+dr). Keep dn = dv = 128 when that fits.
        if let kvb = shapes["layers.0.attention.wkv_b.weight"], let wo = shapes["layers.0.attention.wo.weight"] {
            let perHead = a.qkNopeHeadDim + a.vHeadDim
            if kvb[0] % perHead == 0, wo[1] == (kvb[0] / perHead) * a.vHeadDim {
                a.nHeads = kvb[0] / perHead
            } else {
                guessed += ["n_heads", "qk_nope_head_dim", "v_head_dim"]
            }
        }
        return (a, guessed)
    }
}
