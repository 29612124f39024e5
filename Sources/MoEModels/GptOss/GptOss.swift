import Foundation
import MoECheckpoint
import MoETensor

/// gpt-oss as TorchTitan 0.3.0 computes it (`models/gpt_oss`): embedding → layers of
/// [RMSNorm → GQA attention (biased q/k/v/o, rotate-half RoPE with YaRN, per-head sinks, a causal sliding window
/// on the configured layers) → residual, RMSNorm → MoE (biased router gate, softmax, top-k with route norm, clamped
/// interleaved SwiGLU experts with biases) → residual] → final RMSNorm → untied output head.
/// fp32 compute; weights stay in their stored dtype.
public final class GptOss: @unchecked Sendable {
    public let args: GptOssArgs
    let embedding: Weight
    let layers: [Layer]
    let finalNorm: [Float]
    let lmHead: Weight
    public let softmaxScale: Float
    let ropeFrequencies: [Float]

    struct MoE {
        var gate: Weight
        var gateBias: [Float]?
        var expertBias: [Float]?
        /// `[E, 2F, D]` with gate/linear rows interleaved, and `[E, 2F]` biases.
        var mlp1: Weight
        var mlp1Bias: [Float]
        /// `[E, D, F]` and `[E, D]` biases.
        var mlp2: Weight
        var mlp2Bias: [Float]
    }

    struct Layer {
        var index: Int
        var attentionNorm: [Float]
        var ffnNorm: [Float]
        var attention: GroupedQueryAttention
        var moe: MoE
    }

    // MARK: - Loading

    /// Builds the model from checked weights (`GptOssWeightSet` compared every tensor's shape with the args).
    public init(weights w: GptOssWeightSet) throws {
        let args = w.args
        self.args = args
        embedding = try w.load("tok_embeddings.weight")
        var layers: [Layer] = []
        for i in 0..<args.nLayers {
            let p = "layers.\(i)."
            let q = p + "attention.qkv_linear."
            var attention = GroupedQueryAttention(
                dim: args.dim, nHeads: args.nHeads, nKVHeads: args.nKVHeads, headDim: args.headDim,
                wq: try w.load(q + "wq.weight"), wk: try w.load(q + "wk.weight"), wv: try w.load(q + "wv.weight"),
                wo: try w.load(p + "attention.wo.weight"), softmaxScale: Float(args.softmaxScale))
            if args.qkvBias {
                attention.qBias = try w.vector(q + "wq.bias")
                attention.kBias = try w.vector(q + "wk.bias")
                attention.vBias = try w.vector(q + "wv.bias")
            }
            if args.woBias { attention.oBias = try w.vector(p + "attention.wo.bias") }
            if args.attentionSinks { attention.sinks = try w.vector(p + "attention.sinks") }
            attention.slidingWindow = args.slidingWindow(layer: i)
            let e = p + GptOssWeights.expertPrefix
            var moe = MoE(
                gate: try w.load(p + "moe.router.gate.weight"),
                mlp1: try w.load(e + "mlp1_weight_EGD"), mlp1Bias: try w.vector(e + "mlp1_bias_EG"),
                mlp2: try w.load(e + "mlp2_weight_EDF"), mlp2Bias: try w.vector(e + "mlp2_bias_ED"))
            if args.moeArgs.gateBias { moe.gateBias = try w.vector(p + "moe.router.gate.bias") }
            if args.moeArgs.loadBalanceCoeff != nil { moe.expertBias = try w.vector(p + "moe.expert_bias_E") }
            layers.append(Layer(index: i, attentionNorm: try w.vector(p + "attention_norm.weight"),
                                ffnNorm: try w.vector(p + "ffn_norm.weight"), attention: attention, moe: moe))
        }
        self.layers = layers
        finalNorm = try w.vector("norm.weight")
        lmHead = args.enableWeightTying ? embedding : try w.load("lm_head.weight")
        softmaxScale = Float(args.softmaxScale)
        if let s = args.ropeScaling, args.yarnActive {
            ropeFrequencies = YaRNFrequencies.frequencies(rotatedDims: args.headDim, theta: args.ropeTheta, factor: s.ropeFactor,
                                                          betaFast: s.betaFast, betaSlow: s.betaSlow,
                                                          originalSeqLen: s.originalSeqLen, truncate: s.truncate)
        } else {
            ropeFrequencies = RotaryTable.frequencies(theta: args.ropeTheta, rotatedDims: args.headDim)
        }
    }

    /// Opens the checkpoint at `url` and builds the model.
    public convenience init(args: GptOssArgs, checkpoint url: URL) throws {
        try args.validate()
        try self.init(weights: GptOssWeightSet(store: GptOssWeights.openStore(at: url), args: args))
    }

    // MARK: - KV cache

    /// Post-RoPE keys and values of every layer for `batch` rows of up to `capacity` positions. Windowed layers
    /// keep every position too (a ring of `window` positions would save memory at long contexts, not time).
    public func makeCache(batch: Int, capacity: Int) throws -> GQACache {
        try GQACache(layers: args.nLayers, batch: batch, capacity: capacity, kvHeads: args.nKVHeads, headDim: args.headDim)
    }

    // MARK: - Forward

    public enum LogitsSelection: Sendable { case all, last }

    /// Logits for `tokens` (`batch` rows of `seqLen` ids, row-major), causal within each row. With a cache the
    /// tokens continue the cached rows at position `cache.length` and their keys and values are appended.
    /// Returns `[batch·seqLen, vocab]` for `.all`, `[batch, vocab]` for `.last`.
    public func forward(tokens: [Int32], batch: Int, seqLen: Int, cache: GQACache? = nil,
                        logits selection: LogitsSelection = .all, observer: RoutingObserver? = nil) throws -> Tensor {
        guard batch > 0, seqLen > 0, tokens.count == batch * seqLen else {
            throw ModelLoadError("forward: \(tokens.count) tokens do not form \(batch) rows of \(seqLen)")
        }
        if let bad = tokens.first(where: { $0 < 0 || Int($0) >= args.vocabSize }) {
            throw ModelLoadError("forward: token id \(bad) is outside the vocabulary (0..<\(args.vocabSize))")
        }
        if let cache {
            try cache.check(batch: batch, newTokens: seqLen)
            guard cache.layers.count == layers.count, cache.layers.first?.kvHeads == args.nKVHeads,
                  cache.layers.first?.headDim == args.headDim else {
                throw ModelLoadError("forward: the KV cache was made for another model")
            }
        }
        let past = cache?.length ?? 0
        let d = args.dim, rows = batch * seqLen, eps = Float(args.normEps)
        let hidden = Tensor(shape: [rows, d])
        for (r, token) in tokens.enumerated() { embedding.widen(from: Int(token) * d, count: d, into: hidden.row(r)) }
        let rope = RotaryTable(frequencies: ropeFrequencies, positions: past + seqLen, pairing: .rotateHalf)
        let normed = Tensor(shape: [rows, d])
        let scratch = cache == nil
            ? try GQAKeyValues(batch: batch, capacity: seqLen, kvHeads: args.nKVHeads, headDim: args.headDim) : nil
        for layer in layers {
            Ops.rmsNorm(hidden.data, rows: rows, dim: d, weight: layer.attentionNorm, eps: eps, into: normed.data)
            layer.attention.forward(normed, batch: batch, newTokens: seqLen, past: past, rope: rope,
                                    store: cache?.layers[layer.index] ?? scratch!, addInto: hidden)
            Ops.rmsNorm(hidden.data, rows: rows, dim: d, weight: layer.ffnNorm, eps: eps, into: normed.data)
            moeLayer(layer.moe, layer: layer.index, normed, addInto: hidden, observer: observer)
        }
        cache?.advance(by: seqLen)
        switch selection {
        case .all:
            Ops.rmsNorm(hidden.data, rows: rows, dim: d, weight: finalNorm, eps: eps, into: normed.data)
            return Linear.apply(normed, lmHead)
        case .last:
            let last = Tensor(shape: [batch, d])
            for b in 0..<batch {
                Ops.rmsNorm(hidden.row(b * seqLen + seqLen - 1), rows: 1, dim: d, weight: finalNorm, eps: eps, into: last.row(b))
            }
            return Linear.apply(last, lmHead)
        }
    }

    // MARK: - MoE: route → dispatch → compute → combine

    func moeLayer(_ moe: MoE, layer: Int, _ x: Tensor, addInto hidden: Tensor, observer: RoutingObserver?) {
        let routing = route(moe, x)
        if let observer { routing.withDecision(layer: layer, expertBias: moe.expertBias) { observer.observe($0) } }
        let batches = dispatch(x, routing)
        let outputs = computeExperts(moe, batches)
        combine(routing, batches, outputs, addInto: hidden)
    }

    /// Per-token routing: selected experts, their combine weights, and the scores behind them.
    final class Routing {
        let tokens: Int, topK: Int, experts: Int
        let gateLogits: Tensor      // [T, E], gate bias included
        let scores: Tensor          // [T, E], before the expert bias
        let selected: UnsafeMutablePointer<Int32>   // [T, K]
        let weights: UnsafeMutablePointer<Float>    // [T, K]

        init(tokens: Int, topK: Int, experts: Int) {
            self.tokens = tokens; self.topK = topK; self.experts = experts
            gateLogits = Tensor(shape: [tokens, experts])
            scores = Tensor(shape: [tokens, experts])
            selected = .allocate(capacity: max(tokens * topK, 1))
            weights = .allocate(capacity: max(tokens * topK, 1))
        }
        deinit { selected.deallocate(); weights.deallocate() }

        func withDecision(layer: Int, expertBias: [Float]?, _ body: (RoutingDecision) -> Void) {
            func decide(_ bias: UnsafeBufferPointer<Float>?) {
                body(RoutingDecision(
                    layer: layer, tokenCount: tokens, topK: topK, numExperts: experts,
                    experts: .init(start: selected, count: tokens * topK),
                    weights: .init(start: weights, count: tokens * topK),
                    scores: .init(start: scores.data, count: scores.count),
                    gateLogits: .init(start: gateLogits.data, count: gateLogits.count),
                    expertBias: bias))
            }
            if let expertBias { expertBias.withUnsafeBufferPointer { decide($0) } } else { decide(nil) }
        }
    }

    /// TorchTitan's `TokenChoiceTopKRouter`: fp32 gate with bias → softmax (or sigmoid); the expert bias shifts the
    /// scores for selection only; top-k; weights from the unbiased scores, normalised by their sum + 1e-20.
    func route(_ moe: MoE, _ x: Tensor) -> Routing {
        let m = args.moeArgs, e = m.numExperts, k = m.topK, tokens = x.rows
        let routing = Routing(tokens: tokens, topK: k, experts: e)
        Linear.apply(x.data, rows: tokens, weight: moe.gate, into: routing.gateLogits.data)
        let sigmoid = m.scoreFunc == "sigmoid", routeNorm = m.routeNorm, routeScale = Float(m.routeScale)
        let gateBias = moe.gateBias, expertBias = moe.expertBias
        let logitsP = SendablePointer(routing.gateLogits.data), scoresP = SendablePointer(routing.scores.data)
        let selP = SendablePointer(routing.selected), wP = SendablePointer(routing.weights)
        Compute.parallelRanges(tokens) { _, range in
            let choice = UnsafeMutablePointer<Float>.allocate(capacity: e)
            defer { choice.deallocate() }
            for t in range {
                let logits = logitsP.pointer + t * e, scores = scoresP.pointer + t * e
                if let gateBias { for j in 0..<e { logits[j] += gateBias[j] } }
                if sigmoid {
                    for j in 0..<e { scores[j] = Ops.sigmoid(logits[j]) }
                } else {
                    scores.update(from: logits, count: e)
                    Ops.softmaxRow(scores, e)
                }
                for j in 0..<e { choice[j] = scores[j] + (expertBias?[j] ?? 0) }
                let sel = selP.pointer + t * k, w = wP.pointer + t * k
                Ops.topK(choice, e, k, into: sel)
                var sum: Float = 0
                for j in 0..<k { w[j] = scores[Int(sel[j])]; sum += w[j] }
                if routeNorm {
                    let denominator = sum + 1e-20
                    for j in 0..<k { w[j] /= denominator }
                }
                for j in 0..<k { w[j] *= routeScale }
            }
        }
        return routing
    }

    /// Token rows grouped by expert: rows `offsets[e]..<offsets[e+1]` of `input` go to expert `e`.
    struct ExpertBatches {
        let offsets: [Int]
        /// For each bucketed row, the assignment `token·K + slot` it came from.
        let assignment: [Int]
        let input: Tensor
    }

    /// A counting sort of (token, slot) by expert, stable in token order (TorchTitan's stable argsort).
    func dispatch(_ x: Tensor, _ routing: Routing) -> ExpertBatches {
        let e = routing.experts, d = args.dim, k = routing.topK, assignments = routing.tokens * k
        var offsets = [Int](repeating: 0, count: e + 1)
        for i in 0..<assignments { offsets[Int(routing.selected[i]) + 1] += 1 }
        for j in 0..<e { offsets[j + 1] += offsets[j] }
        var order = [Int](repeating: 0, count: assignments)
        var next = offsets
        for i in 0..<assignments {
            let expert = Int(routing.selected[i])
            order[next[expert]] = i
            next[expert] += 1
        }
        let input = Tensor(uninitializedShape: [assignments, d])
        for (row, a) in order.enumerated() { input.row(row).update(from: x.row(a / k), count: d) }
        return ExpertBatches(offsets: offsets, assignment: order, input: input)
    }

    /// Every active expert's clamped SwiGLU over its bucket, experts spread over the workers.
    func computeExperts(_ moe: MoE, _ batches: ExpertBatches) -> Tensor {
        let d = args.dim, f = args.moeInterDim
        let outputs = Tensor(uninitializedShape: [batches.input.rows, d])
        let active = (0..<(batches.offsets.count - 1)).filter { batches.offsets[$0 + 1] > batches.offsets[$0] }
        let alpha = Float(args.swigluAlpha), limit = Float(args.swigluLimit)
        let inputP = SendablePointer(batches.input.data), outP = SendablePointer(outputs.data)
        let offsets = batches.offsets
        moe.mlp1Bias.withUnsafeBufferPointer { b1 in
            moe.mlp2Bias.withUnsafeBufferPointer { b2 in
                let b1P = SendableConstPointer(b1.baseAddress!), b2P = SendableConstPointer(b2.baseAddress!)
                Compute.parallelChunks(active.count) { items in
                    for item in items {
                        let expert = active[item], first = offsets[expert], n = offsets[expert + 1] - first
                        guard let scratch = Compute.threadScratch(1, n * 3 * f) else {
                            fatalError("out of memory for expert scratch (\(n) rows)")
                        }
                        ClampedSwiGLU.expert(inputP.pointer + first * d, rows: n, dim: d, hidden: f,
                                             w1: moe.mlp1.matrix(expert), b1: b1P.pointer + expert * 2 * f,
                                             w2: moe.mlp2.matrix(expert), b2: b2P.pointer + expert * d,
                                             alpha: alpha, limit: limit, scratch: scratch, into: outP.pointer + first * d)
                    }
                }
            }
        }
        return outputs
    }

    /// `hidden += Σ_k w_k · expert_k(x)`, slots summed in slot order.
    func combine(_ routing: Routing, _ batches: ExpertBatches, _ outputs: Tensor, addInto hidden: Tensor) {
        let d = args.dim, k = routing.topK
        var rowOfAssignment = [Int](repeating: 0, count: batches.assignment.count)
        for (row, a) in batches.assignment.enumerated() { rowOfAssignment[a] = row }
        let expP = SendablePointer(outputs.data), wP = SendablePointer(routing.weights), hP = SendablePointer(hidden.data)
        rowOfAssignment.withUnsafeBufferPointer { rowsOf in
            let rowP = SendableConstPointer(rowsOf.baseAddress!)
            Compute.parallelRanges(routing.tokens) { _, range in
                let routed = UnsafeMutablePointer<Float>.allocate(capacity: d)
                defer { routed.deallocate() }
                for t in range {
                    routed.update(repeating: 0, count: d)
                    for slot in 0..<k {
                        let y = expP.pointer + rowP.pointer[t * k + slot] * d, w = wP.pointer[t * k + slot]
                        for c in 0..<d { routed[c] += w * y[c] }
                    }
                    let h = hP.pointer + t * d
                    for c in 0..<d { h[c] += routed[c] }
                }
            }
        }
    }
}
