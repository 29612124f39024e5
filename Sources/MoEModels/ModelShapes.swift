import Foundation
import MoETensor

/// What the model args imply about the checkpoint: tensor names (TorchTitan v0.2.x names) and shapes,
/// and parameter counts bucketed as TorchTitan's `get_moe_model_nparams_and_flops` buckets them.
/// Everything here assumes args that passed `validate()`, which proves these sizes fit in an Int.
extension ModelArgs {
    /// How a checkpoint's tensors (`actual`: canonical name → shape) differ from `expectedShapes()`, one line per
    /// tensor, names in natural order ("layers.2" before "layers.10"); empty when they match.
    public func shapeMismatches(actual: [String: [Int]]) -> [String] {
        let expected = expectedShapes()
        func naturalOrder(_ a: String, _ b: String) -> Bool { a.compare(b, options: .numeric) == .orderedAscending }
        var problems: [String] = []
        for name in expected.keys.sorted(by: naturalOrder) {
            guard let shape = actual[name] else { problems.append("\(name): missing (expected \(expected[name]!))"); continue }
            if shape != expected[name]! { problems.append("\(name): shape \(shape), expected \(expected[name]!)") }
        }
        for name in actual.keys.sorted(by: naturalOrder) where expected[name] == nil {
            problems.append("\(name): in the checkpoint but not in the model args")
        }
        return problems
    }

    /// Every persistent tensor the model owns, by canonical name.
    public func expectedShapes() -> [String: [Int]] {
        var shapes: [String: [Int]] = [:]
        shapes["tok_embeddings.weight"] = [vocabSize, dim]
        for i in 0..<nLayers {
            for (name, shape) in layerShapes(i) { shapes[name] = shape }
        }
        shapes["norm.weight"] = [dim]
        shapes["output.weight"] = [vocabSize, dim]
        return shapes
    }

    /// The tensors of layer `i`, by canonical name.
    func layerShapes(_ i: Int) -> [(name: String, shape: [Int])] {
        var shapes: [(name: String, shape: [Int])] = []
        let d = dim, h = nHeads, m = moeArgs
        let p = "layers.\(i)."
        func add(_ name: String, _ shape: [Int]) { shapes.append((p + name, shape)) }
        if qLoraRank == 0 {
            add("attention.wq.weight", [h * qkHeadDim, d])
        } else {
            add("attention.wq_a.weight", [qLoraRank, d])
            add("attention.q_norm.weight", [qLoraRank])
            add("attention.wq_b.weight", [h * qkHeadDim, qLoraRank])
        }
        add("attention.wkv_a.weight", [kvLoraRank + qkRopeHeadDim, d])
        add("attention.kv_norm.weight", [kvLoraRank])
        add("attention.wkv_b.weight", [h * (qkNopeHeadDim + vHeadDim), kvLoraRank])
        add("attention.wo.weight", [d, h * vHeadDim])
        add("attention_norm.weight", [d])
        add("ffn_norm.weight", [d])
        if isMoELayer(i) {
            let e = m.numExperts, f = moeInterDim
            add("moe.router.gate.weight", [e, d])
            if m.gateBias { add("moe.router.gate.bias", [e]) }
            add("moe.experts.w1", [e, f, d])
            add("moe.experts.w2", [e, d, f])
            add("moe.experts.w3", [e, f, d])
            if m.loadBalanceCoeff != nil { add("moe.expert_bias", [e]) }
            if m.numSharedExperts > 0 {
                let sf = f * m.numSharedExperts
                add("moe.shared_experts.w1.weight", [sf, d])
                add("moe.shared_experts.w2.weight", [d, sf])
                add("moe.shared_experts.w3.weight", [sf, d])
            }
        } else {
            add("feed_forward.w1.weight", [interDim, d])
            add("feed_forward.w2.weight", [d, interDim])
            add("feed_forward.w3.weight", [interDim, d])
        }
        return shapes
    }

    /// `validate()`'s size check: the dimensions `layerShapes` multiplies, then every tensor's element
    /// count, the parameter total and TorchTitan's FLOPs per token at `max_seq_len`, all checked.
    func checkDerivedSizes() throws {
        let qkHead = try Checked.add(qkNopeHeadDim, qkRopeHeadDim, what: "qk_nope_head_dim + qk_rope_head_dim")
        _ = try Checked.multiply(nHeads, qkHead, what: "n_heads × (qk_nope_head_dim + qk_rope_head_dim)")
        let kvHead = try Checked.add(qkNopeHeadDim, vHeadDim, what: "qk_nope_head_dim + v_head_dim")
        _ = try Checked.multiply(nHeads, kvHead, what: "n_heads × (qk_nope_head_dim + v_head_dim)")
        _ = try Checked.multiply(nHeads, vHeadDim, what: "n_heads × v_head_dim")
        _ = try Checked.add(kvLoraRank, qkRopeHeadDim, what: "kv_lora_rank + qk_rope_head_dim")
        _ = try Checked.multiply(moeInterDim, moeArgs.numSharedExperts, what: "moe_inter_dim × moe_args.num_shared_experts")
        // Every shape can now be formed; one layer of each kind stands for all layers of that kind.
        func elements(_ shapes: [(name: String, shape: [Int])]) throws -> Int {
            try Checked.sum(
                shapes.map { try Checked.product($0.shape, what: "tensor \($0.name) \($0.shape)") },
                what: "the parameters of \(shapes.first?.name.split(separator: ".").prefix(2).joined(separator: ".") ?? "a layer")")
        }
        let embedding = try Checked.product([vocabSize, dim], what: "tok_embeddings.weight [vocab_size, dim]")
        var total = try Checked.add(
            Checked.multiply(embedding, 2, what: "the embedding and output parameters"), dim,
            what: "the parameter count")
        for (layer, count) in [(0, nDenseLayers), (nDenseLayers, numMoELayers)] where count > 0 {
            let perLayer = try elements(layerShapes(layer))
            total = try Checked.add(
                total, Checked.multiply(perLayer, count, what: "the parameters of \(count) layers"),
                what: "the parameter count")
        }
        // The active count scales the routed experts by top_k before dividing by num_experts.
        if numMoELayers > 0 {
            _ = try Checked.product(
                [3, moeArgs.numExperts, moeInterDim, dim, numMoELayers, moeArgs.topK],
                what: "the routed expert parameters × top_k")
        }
        let headDims = try Checked.add(qkHead, vHeadDim, what: "the attention head dims")
        let attention = try Checked.product(
            [6, nLayers, nHeads, headDims, maxSeqLen],
            what: "the attention FLOPs per token (6 × n_layers × n_heads × head dims × max_seq_len)")
        _ = try Checked.add(
            Checked.multiply(total, 6, what: "the FLOPs per token (6 × parameters)"), attention,
            what: "the FLOPs per token")
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

        /// TorchTitan's buckets by parameter name: "embedding" (counted as dense too), `moe.shared_experts`,
        /// `moe.router`, names containing `routedExperts`, everything else dense.
        public init(bucketing shapes: some Sequence<(name: String, shape: [Int])>, routedExperts: String) {
            for (name, shape) in shapes {
                let n = shape.reduce(1, *)
                if name.contains("embedding") {
                    embedding += n; dense += n
                } else if name.contains("moe.shared_experts") {
                    shared += n
                } else if name.contains("moe.router") {
                    router += n
                } else if name.contains(routedExperts) {
                    experts += n
                } else {
                    dense += n
                }
            }
        }

        public init() {}
    }

    public func parameterCounts() -> ParameterCounts {
        ParameterCounts(
            bucketing: expectedShapes().lazy.filter { !$0.key.hasSuffix("moe.expert_bias") }.map { (name: $0.key, shape: $0.value) },
            routedExperts: "moe.experts")
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
    /// (128/64/128 head dims when they fit) and are listed in `guessed`. Tensors of an unexpected rank
    /// leave the flavor's value in place; the result still needs `validate()`.
    public static func inferred(from shapes: [String: [Int]]) -> (args: ModelArgs, guessed: [String]) {
        var a = Flavors.args(for: "16B")!
        var guessed = [
            "moe_args.top_k", "moe_args.score_func", "moe_args.route_norm", "moe_args.route_scale",
            "moe_args.num_expert_groups", "moe_args.num_limited_groups", "max_seq_len", "rope_theta",
            "rope_factor", "mscale", "norm_eps",
        ]
        /// The dimensions of a tensor, when it exists with the rank the model gives it.
        func dims(_ name: String, rank: Int) -> [Int]? {
            guard let shape = shapes[name], shape.count == rank else { return nil }
            return shape
        }
        if let e = dims("tok_embeddings.weight", rank: 2) { a.vocabSize = e[0]; a.dim = e[1] }
        // Layers are numbered 0, 1, 2…: count those present from 0, so that one stray index (say
        // layers.2000000000) cannot make the model two billion layers deep.
        let layerIndices = Set(
            shapes.keys.compactMap { name -> Int? in
                guard name.hasPrefix("layers.") else { return nil }
                return Int(name.dropFirst(7).prefix { $0.isNumber })
            })
        var layers = 0
        while layerIndices.contains(layers) { layers += 1 }
        if layers != layerIndices.count { guessed.append("n_layers") }
        a.nLayers = layers
        a.nDenseLayers = (0..<a.nLayers).first { shapes["layers.\($0).moe.router.gate.weight"] != nil } ?? a.nLayers
        if let w1 = shapes.first(where: { $0.key.hasSuffix("moe.experts.w1") && $0.value.count == 3 })?.value {
            a.moeArgs.numExperts = w1[0]; a.moeInterDim = w1[1]
            a.moeArgs.topK = min(a.moeArgs.topK, w1[0])
        }
        if let s = shapes.first(where: { $0.key.hasSuffix("moe.shared_experts.w1.weight") && $0.value.count == 2 })?.value {
            a.moeArgs.numSharedExperts = a.moeInterDim > 0 ? s[0] / a.moeInterDim : 0
        } else {
            a.moeArgs.numSharedExperts = 0
        }
        a.moeArgs.loadBalanceCoeff = shapes.keys.contains { $0.hasSuffix("moe.expert_bias") } ? 1e-3 : nil
        a.moeArgs.gateBias = shapes.keys.contains { $0.hasSuffix("moe.router.gate.bias") }
        if let f = dims("layers.0.feed_forward.w1.weight", rank: 2) { a.interDim = f[0] }
        if let kv = dims("layers.0.attention.kv_norm.weight", rank: 1) { a.kvLoraRank = kv[0] }
        a.qLoraRank = dims("layers.0.attention.q_norm.weight", rank: 1)?[0] ?? 0
        if let kva = dims("layers.0.attention.wkv_a.weight", rank: 2) { a.qkRopeHeadDim = kva[0] &- a.kvLoraRank }
        // Heads: wkv_b rows = H·(dn+dv), wo cols = H·dv, wq rows = H·(dn+dr). Keep dn = dv = 128 when that fits.
        if let kvb = dims("layers.0.attention.wkv_b.weight", rank: 2), let wo = dims("layers.0.attention.wo.weight", rank: 2) {
            let perHead = a.qkNopeHeadDim + a.vHeadDim
            let (rowsForV, overflow) = (kvb[0] / perHead).multipliedReportingOverflow(by: a.vHeadDim)
            if kvb[0] % perHead == 0, !overflow, wo[1] == rowsForV {
                a.nHeads = kvb[0] / perHead
            } else {
                guessed += ["n_heads", "qk_nope_head_dim", "v_head_dim"]
            }
        }
        return (a, guessed)
    }
}
