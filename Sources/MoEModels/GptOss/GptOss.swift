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

    struct Attention {
        var wq: Weight, wk: Weight, wv: Weight, wo: Weight
        var bq: [Float]?, bk: [Float]?, bv: [Float]?, bo: [Float]?
        var sinks: [Float]?
        /// The causal window of this layer; nil for full causal attention.
        var window: Int?
    }

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
        var attention: Attention
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
            var attention = Attention(
                wq: try w.load(q + "wq.weight"), wk: try w.load(q + "wk.weight"), wv: try w.load(q + "wv.weight"),
                wo: try w.load(p + "attention.wo.weight"), window: args.slidingWindow(layer: i))
            if args.qkvBias {
                attention.bq = try w.vector(q + "wq.bias")
                attention.bk = try w.vector(q + "wk.bias")
                attention.bv = try w.vector(q + "wv.bias")
            }
            if args.woBias { attention.bo = try w.vector(p + "attention.wo.bias") }
            if args.attentionSinks { attention.sinks = try w.vector(p + "attention.sinks") }
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
            ropeFrequencies = RoPEFrequencies.yarn(dim: args.headDim, theta: args.ropeTheta, factor: s.ropeFactor,
                                                   betaFast: s.betaFast, betaSlow: s.betaSlow,
                                                   originalSeqLen: s.originalSeqLen, truncate: s.truncate)
        } else {
            ropeFrequencies = RoPEFrequencies.plain(dim: args.headDim, theta: args.ropeTheta)
        }
    }

    /// Opens the checkpoint at `url` and builds the model.
    public convenience init(args: GptOssArgs, checkpoint url: URL) throws {
        try args.validate()
        try self.init(weights: GptOssWeightSet(store: GptOssWeights.openStore(at: url), args: args))
    }

    // MARK: - KV cache

    /// Post-RoPE keys and values of the positions processed so far, per layer and batch row
    /// (`[batch, capacity, n_kv_heads · head_dim]` each).
    public final class Cache: @unchecked Sendable {
        public let batch: Int
        public let capacity: Int
        public internal(set) var length = 0
        let layers: [Layer]

        public init(model: GptOss, batch: Int, capacity: Int) {
            self.batch = batch
            self.capacity = capacity
            layers = (0..<model.args.nLayers).map { _ in Layer(batch: batch, capacity: capacity, width: model.args.keyValueWidth) }
        }

        public var byteCount: Int { layers.reduce(0) { $0 + $1.byteCount } }
        public func reset() { length = 0 }

        final class Layer: @unchecked Sendable {
            let capacity: Int, width: Int
            let keys: UnsafeMutablePointer<Float>
            let values: UnsafeMutablePointer<Float>
            let byteCount: Int

            init(batch: Int, capacity: Int, width: Int) {
                self.capacity = capacity
                self.width = width
                let count = batch * capacity * width
                keys = .allocate(capacity: max(count, 1))
                values = .allocate(capacity: max(count, 1))
                byteCount = 2 * count * MemoryLayout<Float>.size
            }

            deinit { keys.deallocate(); values.deallocate() }
        }
    }

    // MARK: - Forward

    public enum LogitsSelection: Sendable { case all, last }

    /// Logits for `tokens` (`batch` rows of `seqLen` ids, row-major), causal within each row. With a cache the
    /// tokens continue the cached rows at position `cache.length` and their keys and values are appended.
    /// Returns `[batch·seqLen, vocab]` for `.all`, `[batch, vocab]` for `.last`.
    public func forward(tokens: [Int32], batch: Int, seqLen: Int, cache: Cache? = nil,
                        logits selection: LogitsSelection = .all, observer: RoutingObserver? = nil) throws -> Tensor {
        guard batch > 0, seqLen > 0, tokens.count == batch * seqLen else {
            throw ModelLoadError("forward: \(tokens.count) tokens do not form \(batch) rows of \(seqLen)")
        }
        if let bad = tokens.first(where: { $0 < 0 || Int($0) >= args.vocabSize }) {
            throw ModelLoadError("forward: token id \(bad) is outside the vocabulary (0..<\(args.vocabSize))")
        }
        if let cache {
            guard cache.batch == batch, cache.layers.count == layers.count else {
                throw ModelLoadError("forward: KV cache was made for batch \(cache.batch), not \(batch)")
            }
            guard cache.length + seqLen <= cache.capacity else {
                throw ModelLoadError("forward: \(cache.length + seqLen) positions exceed the KV cache capacity \(cache.capacity)")
            }
        }
        let past = cache?.length ?? 0
        let d = args.dim, rows = batch * seqLen, eps = Float(args.normEps)
        let hidden = Tensor(shape: [rows, d])
        for (r, token) in tokens.enumerated() { embedding.widen(from: Int(token) * d, count: d, into: hidden.row(r)) }
        let rope = RotateHalfRoPETable(frequencies: ropeFrequencies, positions: past..<(past + seqLen))
        let normed = Tensor(shape: [rows, d])
        let scratch = cache == nil ? Cache.Layer(batch: batch, capacity: seqLen, width: args.keyValueWidth) : nil
        for layer in layers {
            Ops.rmsNorm(hidden.data, rows: rows, dim: d, weight: layer.attentionNorm, eps: eps, into: normed.data)
            attention(layer.attention, normed, batch: batch, newTokens: seqLen, past: past, rope: rope,
                      store: cache?.layers[layer.index] ?? scratch!, addInto: hidden)
            Ops.rmsNorm(hidden.data, rows: rows, dim: d, weight: layer.ffnNorm, eps: eps, into: normed.data)
            moeLayer(layer.moe, layer: layer.index, normed, addInto: hidden, observer: observer)
        }
        cache?.length += seqLen
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

    /// Query rows per attention block: causal and windowed blocks then skip most keys they cannot see.
    static let attentionQueryBlock = 64

    /// Grouped-query attention; the new tokens' keys and values go into `store` at `past..<past+n` first.
    /// A query at position p sees keys `max(0, p − window + 1)...p`; with sinks each head's softmax has one more
    /// logit, `sinks[h]`, that adds to the normaliser and to nothing else (TorchTitan: output · σ(lse − sink)).
    func attention(_ a: Attention, _ x: Tensor, batch: Int, newTokens n: Int, past: Int, rope: RotateHalfRoPETable,
                   store: Cache.Layer, addInto hidden: Tensor) {
        let rows = x.rows, h = args.nHeads, kvHeads = args.nKVHeads, hd = args.headDim
        let qWidth = args.queryWidth, kvWidth = args.keyValueWidth, capacity = store.capacity
        let q = Linear.apply(x, a.wq), k = Linear.apply(x, a.wk), v = Linear.apply(x, a.wv)
        if let b = a.bq { b.withUnsafeBufferPointer { ClampedSwiGLU.addBias($0.baseAddress!, to: q.data, rows: rows, width: qWidth) } }
        if let b = a.bk { b.withUnsafeBufferPointer { ClampedSwiGLU.addBias($0.baseAddress!, to: k.data, rows: rows, width: kvWidth) } }
        if let b = a.bv { b.withUnsafeBufferPointer { ClampedSwiGLU.addBias($0.baseAddress!, to: v.data, rows: rows, width: kvWidth) } }
        let qp = SendablePointer(q.data), kp = SendablePointer(k.data), vp = SendablePointer(v.data)
        let keysP = SendablePointer(store.keys), valuesP = SendablePointer(store.values)
        Compute.parallelFor(rows, minChunk: 16) { r in
            let pos = past + r % n
            for head in 0..<h { rope.apply(qp.pointer + r * qWidth + head * hd, position: pos) }
            for head in 0..<kvHeads { rope.apply(kp.pointer + r * kvWidth + head * hd, position: pos) }
            let slot = (r / n) * capacity + pos
            (keysP.pointer + slot * kvWidth).update(from: kp.pointer + r * kvWidth, count: kvWidth)
            (valuesP.pointer + slot * kvWidth).update(from: vp.pointer + r * kvWidth, count: kvWidth)
        }

        let context = Tensor(uninitializedShape: [rows, qWidth])
        let ctxP = SendablePointer(context.data)
        let scale = softmaxScale, window = a.window, sinks = a.sinks
        let groupSize = h / kvHeads, block = GptOss.attentionQueryBlock, blocks = (n + block - 1) / block
        let total = past + n
        Compute.parallelChunks(batch * h) { items in
            guard let scores = Compute.threadScratch(1, block * total) else {
                fatalError("out of memory for attention scratch (\(total) positions)")
            }
            for item in items {
                let b = item / h, head = item % h, kvHead = head / groupSize
                let keys = keysP.pointer + b * capacity * kvWidth + kvHead * hd
                let values = valuesP.pointer + b * capacity * kvWidth + kvHead * hd
                let sink = sinks?[head]
                for blockIndex in 0..<blocks {
                    let i0 = blockIndex * block, i1 = min(n, i0 + block), m = i1 - i0
                    let first = window.map { max(0, past + i0 - $0 + 1) } ?? 0
                    let visible = past + i1 - first
                    Linear.sgemmSerial(transA: false, transB: true, m: m, n: visible, k: hd, alpha: scale,
                                       qp.pointer + (b * n + i0) * qWidth + head * hd, lda: qWidth,
                                       keys + first * kvWidth, ldb: kvWidth, beta: 0, scores, ldc: visible)
                    for i in 0..<m {
                        let row = scores + i * visible, position = past + i0 + i
                        let lo = (window.map { max(0, position - $0 + 1) } ?? 0) - first, hi = position + 1 - first
                        (row).update(repeating: 0, count: lo)
                        Self.softmaxWithSink(row + lo, hi - lo, sink: sink)
                        (row + hi).update(repeating: 0, count: visible - hi)
                    }
                    Linear.sgemmSerial(transA: false, transB: false, m: m, n: hd, k: visible, alpha: 1,
                                       scores, lda: visible, values + first * kvWidth, ldb: kvWidth,
                                       beta: 0, ctxP.pointer + (b * n + i0) * qWidth + head * hd, ldc: qWidth)
                }
            }
        }
        Linear.apply(context.data, rows: rows, weight: a.wo, into: hidden.data, accumulate: true)
        if let b = a.bo { b.withUnsafeBufferPointer { ClampedSwiGLU.addBias($0.baseAddress!, to: hidden.data, rows: rows, width: args.dim) } }
    }

    /// Softmax of `count` scores in place, with `sink` as one more logit in the normaliser when given.
    @inline(__always)
    static func softmaxWithSink(_ row: UnsafeMutablePointer<Float>, _ count: Int, sink: Float?) {
        guard let sink else { Ops.softmaxRow(row, count); return }
        var peak = sink
        for i in 0..<count { peak = max(peak, row[i]) }
        var sum = expf(sink - peak)
        for i in 0..<count {
            row[i] = expf(row[i] - peak)
            sum += row[i]
        }
        let inverse = 1 / sum
        for i in 0..<count { row[i] *= inverse }
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
