import Foundation
import MoECheckpoint
import MoETensor

/// Which TorchTitan code the numbers must follow. The eras differ in two places that the weights
/// cannot tell apart: when YaRN applies, and the final norm's eps (../docs/MODEL.md).
public enum CodeEra: String, Sendable, CaseIterable {
    case v0_2 = "0.2"
    case v0_3 = "0.3"
}

/// Numerical switches that depend on the code that trained the model, not on the weights.
public struct Numerics: Sendable, Equatable {
    /// YaRN frequency correction and the mscale² softmax adjustment.
    public var yarn: Bool
    /// eps of the final RMSNorm: v0.2.x builds it as `nn.RMSNorm(dim)` (float32 machine epsilon).
    public var finalNormEps: Float
    /// How the two were decided, for messages and results files.
    public var origin: String

    public init(yarn: Bool, finalNormEps: Float, origin: String) {
        self.yarn = yarn
        self.finalNormEps = finalNormEps
        self.origin = origin
    }

    /// The rules of the era the checkpoint's key names point to, each overridable.
    /// Mixed key names come from TorchTitan main between 0.2.2 and 0.3.0: Python-config code (final eps
    /// = norm_eps) that still applied YaRN only when max_seq_len > original_seq_len.
    public static func resolve(
        args: ModelArgs, namingEra: NamingEra, era: CodeEra? = nil, yarn: Bool? = nil, finalNormEps: Float? = nil
    ) -> Numerics {
        let seqLenRule = args.maxSeqLen > args.originalSeqLen
        var result: Numerics
        switch era {
        case .v0_2?:
            result = Numerics(yarn: seqLenRule, finalNormEps: Float.ulpOfOne, origin: "era 0.2 (--era)")
        case .v0_3?:
            result = Numerics(yarn: args.ropeFactor > 1, finalNormEps: Float(args.normEps), origin: "era 0.3 (--era)")
        case nil:
            switch namingEra {
            case .v0_2, .huggingface:
                result = Numerics(yarn: seqLenRule, finalNormEps: Float.ulpOfOne, origin: "era 0.2 (from \(namingEra.rawValue) key names)")
            case .mixed:
                result = Numerics(yarn: seqLenRule, finalNormEps: Float(args.normEps), origin: "main between 0.2.2 and 0.3.0 (mixed key names)")
            case .v0_3:
                result = Numerics(yarn: args.ropeFactor > 1, finalNormEps: Float(args.normEps), origin: "era 0.3 (from key names)")
            }
        }
        if let yarn { result.yarn = yarn; result.origin += ", yarn overridden" }
        if let finalNormEps { result.finalNormEps = finalNormEps; result.origin += ", final norm eps overridden" }
        return result
    }
}

/// An error loading a model from a checkpoint; the message names the checkpoint and the tensor.
public struct ModelLoadError: Error, CustomStringConvertible, LocalizedError {
    public let description: String
    public init(_ description: String) { self.description = description }
    public var errorDescription: String? { description }
}

/// DeepSeek-V3 as TorchTitan computes it (v0.2.2 `deepseek_v3/model/model.py`, 0.3.0 `deepseek_v3/model.py`):
/// embedding → layers of [RMSNorm → MLA attention → residual, RMSNorm → dense SwiGLU or MoE → residual]
/// → final RMSNorm → output head. fp32 compute; weights stay in their stored dtype.
public final class DeepSeekV3: @unchecked Sendable {
    public let args: ModelArgs
    public let numerics: Numerics
    let embedding: Weight
    let layers: [Layer]
    let finalNorm: [Float]
    let output: Weight
    let softmaxScale: Float
    /// RoPE angle frequencies per rotated pair, after YaRN when active.
    let ropeFrequencies: [Float]
    /// Set when the routed experts are spread over the processes of a group: `moe.w1/w2/w3` then hold only
    /// this rank's experts (ExpertParallel.swift).
    public let expertParallel: ExpertParallelGroup?

    struct Attention {
        var wq: Weight?
        var wqA: Weight?
        var qNorm: [Float]?
        var wqB: Weight?
        var wkvA: Weight
        var kvNorm: [Float]
        var wkvB: Weight
        var wo: Weight
    }

    struct FeedForward {
        var w1: Weight
        var w2: Weight
        var w3: Weight
    }

    struct MoE {
        var gate: Weight
        var gateBias: [Float]?
        var expertBias: [Float]?
        /// Grouped expert weights `[E, F, D]`, `[E, D, F]`, `[E, F, D]`.
        var w1: Weight
        var w2: Weight
        var w3: Weight
        var shared: FeedForward?
    }

    struct Layer {
        var index: Int
        var attentionNorm: [Float]
        var ffnNorm: [Float]
        var attention: Attention
        var feedForward: FeedForward?
        var moe: MoE?
    }

    // MARK: - Loading

    /// Builds the model from a checkpoint, checking every tensor's shape against `args` and refusing
    /// tensors the arguments do not account for (usually a wrong flavor or config).
    public init(args: ModelArgs, weights source: WeightSource, numerics: Numerics,
                expertParallel: ExpertParallelGroup? = nil) throws {
        try args.validate()
        guard numerics.finalNormEps.isFinite, numerics.finalNormEps > 0 else {
            throw ModelLoadError("final norm eps \(numerics.finalNormEps) (\(numerics.origin)) must be a finite number > 0")
        }
        if let expertParallel {
            guard expertParallel.numExperts == args.moeArgs.numExperts else {
                throw ModelLoadError("expert-parallel group made for \(expertParallel.numExperts) experts, but the model args have \(args.moeArgs.numExperts)")
            }
        }
        self.args = args
        self.numerics = numerics
        self.expertParallel = expertParallel
        var used = Set<String>()

        // Every tensor is checked against the args before any is read, so a mismatch costs no allocation.
        let expected = args.expectedShapes()
        for name in expected.keys.sorted(by: { $0.compare($1, options: .numeric) == .orderedAscending }) {
            let shape = expected[name]!
            guard let info = source.tensorInfos[name] else {
                throw ModelLoadError("\(source.description): tensor \(name) is missing (model args need shape \(shape))")
            }
            guard info.shape == shape else {
                throw ModelLoadError("\(source.description): tensor \(name) has shape \(info.shape) but the model args imply \(shape)")
            }
        }
        // TorchTitan 0.3.0 builds a zero-width shared-expert FFN when num_shared_experts is 0 and saves it;
        // an empty tensor carries nothing, so it is not a sign of a mismatched config.
        let unused = Set(source.tensorInfos.filter { $0.value.elementCount > 0 }.keys).subtracting(expected.keys).sorted()
        if !unused.isEmpty {
            let shown = unused.prefix(5).joined(separator: ", ")
            throw ModelLoadError("\(source.description): \(unused.count) tensor(s) not used by the model args (e.g. \(shown)); the config or flavor does not match this checkpoint")
        }
        func load(_ name: String, _ shape: [Int]) throws -> Weight {
            assert(expected[name] == shape, "expectedShapes() and the loader disagree on \(name)")
            guard let info = source.tensorInfos[name] else {
                throw ModelLoadError("\(source.description): tensor \(name) is missing (model args need shape \(shape))")
            }
            guard info.shape == shape else {
                throw ModelLoadError("\(source.description): tensor \(name) has shape \(info.shape) but the model args imply \(shape)")
            }
            let stored = try source.load(name)
            used.insert(name)
            do {
                return try Weight(dtype: stored.dtype, shape: stored.shape, bytes: stored.bytes, owner: stored)
            } catch {
                throw ModelLoadError("\(source.description): tensor \(name): \(error)")
            }
        }
        func vector(_ name: String, _ n: Int) throws -> [Float] { try load(name, [n]).toFloatArray() }
        /// A grouped expert weight `[E, …]`, or only this rank's experts under expert parallelism (the other
        /// experts' bytes are never read).
        func experts(_ name: String, _ shape: [Int]) throws -> Weight {
            guard let expertParallel else { return try load(name, shape) }
            guard let info = source.tensorInfos[name] else {
                throw ModelLoadError("\(source.description): tensor \(name) is missing (model args need shape \(shape))")
            }
            guard info.shape == shape else {
                throw ModelLoadError("\(source.description): tensor \(name) has shape \(info.shape) but the model args imply \(shape)")
            }
            let stored = try source.load(name, leading: expertParallel.localExperts)
            used.insert(name)
            do {
                return try Weight(dtype: stored.dtype, shape: stored.shape, bytes: stored.bytes, owner: stored)
            } catch {
                throw ModelLoadError("\(source.description): tensor \(name): \(error)")
            }
        }

        let d = args.dim, h = args.nHeads
        embedding = try load("tok_embeddings.weight", [args.vocabSize, d])
        var layers: [Layer] = []
        for i in 0..<args.nLayers {
            let p = "layers.\(i)."
            var attention = Attention(
                wkvA: try load(p + "attention.wkv_a.weight", [args.kvLoraRank + args.qkRopeHeadDim, d]),
                kvNorm: try vector(p + "attention.kv_norm.weight", args.kvLoraRank),
                wkvB: try load(p + "attention.wkv_b.weight", [h * (args.qkNopeHeadDim + args.vHeadDim), args.kvLoraRank]),
                wo: try load(p + "attention.wo.weight", [d, h * args.vHeadDim]))
            if args.qLoraRank == 0 {
                attention.wq = try load(p + "attention.wq.weight", [h * args.qkHeadDim, d])
            } else {
                attention.wqA = try load(p + "attention.wq_a.weight", [args.qLoraRank, d])
                attention.qNorm = try vector(p + "attention.q_norm.weight", args.qLoraRank)
                attention.wqB = try load(p + "attention.wq_b.weight", [h * args.qkHeadDim, args.qLoraRank])
            }
            var layer = Layer(index: i,
                              attentionNorm: try vector(p + "attention_norm.weight", d),
                              ffnNorm: try vector(p + "ffn_norm.weight", d),
                              attention: attention)
            if args.isMoELayer(i) {
                let m = args.moeArgs, e = m.numExperts, f = args.moeInterDim
                var moe = MoE(
                    gate: try load(p + "moe.router.gate.weight", [e, d]),
                    w1: try experts(p + "moe.experts.w1", [e, f, d]),
                    w2: try experts(p + "moe.experts.w2", [e, d, f]),
                    w3: try experts(p + "moe.experts.w3", [e, f, d]))
                if m.gateBias { moe.gateBias = try vector(p + "moe.router.gate.bias", e) }
                if m.loadBalanceCoeff != nil {
                    moe.expertBias = try vector(p + "moe.expert_bias", e)
                }
                if m.numSharedExperts > 0 {
                    let sf = f * m.numSharedExperts
                    moe.shared = FeedForward(
                        w1: try load(p + "moe.shared_experts.w1.weight", [sf, d]),
                        w2: try load(p + "moe.shared_experts.w2.weight", [d, sf]),
                        w3: try load(p + "moe.shared_experts.w3.weight", [sf, d]))
                }
                layer.moe = moe
            } else {
                layer.feedForward = FeedForward(
                    w1: try load(p + "feed_forward.w1.weight", [args.interDim, d]),
                    w2: try load(p + "feed_forward.w2.weight", [d, args.interDim]),
                    w3: try load(p + "feed_forward.w3.weight", [args.interDim, d]))
            }
            layers.append(layer)
        }
        self.layers = layers
        finalNorm = try vector("norm.weight", d)
        output = try load("output.weight", [args.vocabSize, d])

        assert(used == Set(expected.keys), "expectedShapes() and the loader disagree on the tensors")

        var scale = 1 / Double(args.qkHeadDim).squareRoot()
        if numerics.yarn {
            let mscale = 0.1 * args.mscale * log(args.ropeFactor) + 1.0
            scale *= mscale * mscale
        }
        softmaxScale = Float(scale)
        ropeFrequencies = DeepSeekV3.ropeFrequencies(args: args, yarn: numerics.yarn)
    }

    /// Base frequencies `1/θ^(2i/d)` per rotated pair, blended towards `1/(factor·θ^(2i/d))` by YaRN's
    /// linear ramp between the correction dims of `beta_fast` and `beta_slow` rotations (fp32, as torch).
    static func ropeFrequencies(args: ModelArgs, yarn: Bool) -> [Float] {
        let dim = args.qkRopeHeadDim
        var freqs = (0..<(dim / 2)).map { i -> Float in
            1 / Float(pow(args.ropeTheta, Double(Float(2 * i) / Float(dim))))
        }
        guard yarn else { return freqs }
        func correctionDim(_ rotations: Double) -> Double {
            Double(dim) * log(Double(args.originalSeqLen) / (rotations * 2 * Double.pi)) / (2 * log(args.ropeTheta))
        }
        // Validated args keep these finite; the clamp keeps the Int conversion from trapping regardless.
        func integer(_ value: Double) -> Int { value.isNaN ? 0 : Int(min(max(value, -1e15), 1e15)) }
        let low = max(integer(floor(correctionDim(args.betaFast))), 0)
        var high = Double(min(integer(ceil(correctionDim(args.betaSlow))), dim - 1))
        if Double(low) == high { high += 0.001 }
        let factor = Float(args.ropeFactor)
        for i in 0..<freqs.count {
            let ramp = min(max((Float(i) - Float(low)) / Float(high - Double(low)), 0), 1)
            let smooth = 1 - ramp
            freqs[i] = freqs[i] / factor * (1 - smooth) + freqs[i] * smooth
        }
        return freqs
    }

    // MARK: - Forward

    /// Which positions' logits a forward returns.
    public enum LogitsSelection: Sendable { case all, last }

    /// Logits for `tokens` (`batch` rows of `seqLen` new ids, row-major), causal within each row.
    /// Without a cache each row is a sequence starting at position 0. With a cache the new tokens continue the
    /// cached rows at position `cache.length`, and their keys and values are appended to it.
    /// Returns `[batch·seqLen, vocab]` for `.all`, `[batch, vocab]` for `.last`.
    public func forward(tokens: [Int32], batch: Int, seqLen: Int, cache: KVCache? = nil,
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
        if let group = expertParallel, !group.runningLocalShare {
            return try forwardExpertParallel(group, tokens: tokens, batch: batch, seqLen: seqLen, cache: cache,
                                             logits: selection, observer: observer)
        }
        let past = cache?.length ?? 0
        let rows = batch * seqLen
        let hidden = Tensor(shape: [rows, args.dim])
        embed(tokens, into: hidden)
        let rope = RopeTable(frequencies: ropeFrequencies, positions: past + seqLen)
        let normed = Tensor(shape: [rows, args.dim])
        let scratchStore = cache == nil ? KVCache.Layer(batch: batch, capacity: seqLen, args: args) : nil
        for layer in layers {
            let store = cache?.layers[layer.index] ?? scratchStore!
            Ops.rmsNorm(hidden.data, rows: rows, dim: args.dim, weight: layer.attentionNorm, eps: Float(args.normEps), into: normed.data)
            attention(layer.attention, normed, batch: batch, newTokens: seqLen, past: past, rope: rope, store: store, addInto: hidden)
            Ops.rmsNorm(hidden.data, rows: rows, dim: args.dim, weight: layer.ffnNorm, eps: Float(args.normEps), into: normed.data)
            if let moe = layer.moe {
                try moeLayer(moe, layer: layer.index, normed, addInto: hidden, observer: observer)
            } else if let ffn = layer.feedForward {
                feedForward(ffn, normed, addInto: hidden)
            }
        }
        cache?.length += seqLen
        switch selection {
        case .all:
            Ops.rmsNorm(hidden.data, rows: rows, dim: args.dim, weight: finalNorm, eps: numerics.finalNormEps, into: normed.data)
            return Linear.apply(normed, output)
        case .last:
            let last = Tensor(shape: [batch, args.dim])
            for b in 0..<batch {
                Ops.rmsNorm(hidden.row(b * seqLen + seqLen - 1), rows: 1, dim: args.dim, weight: finalNorm,
                            eps: numerics.finalNormEps, into: last.row(b))
            }
            return Linear.apply(last, output)
        }
    }

    func embed(_ tokens: [Int32], into hidden: Tensor) {
        let d = args.dim
        for (r, token) in tokens.enumerated() {
            embedding.widen(from: Int(token) * d, count: d, into: hidden.row(r))
        }
    }

    /// Multi-head latent attention over the compressed cache (`KVCache`: normalised latent `c_kv` and RoPE'd
    /// `k_pe` per position). The new tokens' latents go into `store` at positions `past..<past+newTokens` first.
    /// Two equivalent evaluation orders, chosen by FLOP count:
    /// - expanded (prefill): `wkv_b` expands every visible latent to per-head `k_nope | v`, then causal attention
    ///   with keys `[k_nope | k_pe]` in 64-query blocks that only touch the keys they can see;
    /// - absorbed (decode): `q_nope·W_kbᵀ` moves the query into the latent space, scores and the weighted sum
    ///   run over the cached latents directly, and `W_vb` maps the per-head result back to `v_head_dim`.
    func attention(_ a: Attention, _ x: Tensor, batch: Int, newTokens n: Int, past: Int, rope: RopeTable,
                   store: KVCache.Layer, addInto hidden: Tensor) {
        let rows = x.rows, h = args.nHeads
        let dn = args.qkNopeHeadDim, dr = args.qkRopeHeadDim, dv = args.vHeadDim, dqk = args.qkHeadDim
        let kvRank = args.kvLoraRank

        let q: Tensor
        if let wq = a.wq {
            q = Linear.apply(x, wq)
        } else {
            let qa = Linear.apply(x, a.wqA!)
            Ops.rmsNorm(qa.data, rows: rows, dim: args.qLoraRank, weight: a.qNorm!, eps: Float(args.normEps), into: qa.data)
            q = Linear.apply(qa, a.wqB!)
        }
        let kv = Linear.apply(x, a.wkvA)                        // [rows, kvRank + dr]: c_kv | k_pe
        let qp = SendablePointer(q.data), kvp = SendablePointer(kv.data)
        let latentP = SendablePointer(store.latent), pep = SendablePointer(store.ropeKeys)
        let normEps = Float(args.normEps), capacity = store.capacity
        a.kvNorm.withUnsafeBufferPointer { kvNorm in
            let normP = SendableConstPointer(kvNorm.baseAddress!)
            Compute.parallelFor(rows, minChunk: 16) { r in
                let pos = past + r % n
                for head in 0..<h { rope.apply(qp.pointer + r * h * dqk + head * dqk + dn, position: pos) }
                let row = kvp.pointer + r * (kvRank + dr)
                rope.apply(row + kvRank, position: pos)
                let slot = (r / n) * capacity + pos
                Ops.rmsNormRow(row, weight: normP.pointer, eps: normEps, into: latentP.pointer + slot * kvRank, dim: kvRank)
                (pep.pointer + slot * dr).update(from: row + kvRank, count: dr)
            }
        }

        let total = past + n
        let context = Tensor(uninitializedShape: [rows, h * dv])
        // Multiply-adds per batch row of each order (the projections of the new tokens are common to both).
        let expandedCost = total * kvRank * h * (dn + dv) + h * n * (total + past + 1) / 2 * (dqk + dv)
        let absorbedCost = n * h * (dn * kvRank + kvRank * dv) + h * n * (total + past + 1) / 2 * (2 * kvRank + dr)
        if absorbedCost < expandedCost {
            attentionAbsorbed(a, q: q, batch: batch, newTokens: n, past: past, store: store, into: context)
        } else {
            attentionExpanded(a, q: q, batch: batch, newTokens: n, past: past, store: store, into: context)
        }
        Linear.apply(context.data, rows: rows, weight: a.wo, into: hidden.data, accumulate: true)
    }

    /// Query rows per block of expanded attention: small enough that causal blocks skip most masked keys,
    /// large enough for efficient GEMMs.
    static let attentionQueryBlock = 64

    func attentionExpanded(_ a: Attention, q: Tensor, batch: Int, newTokens n: Int, past: Int,
                           store: KVCache.Layer, into context: Tensor) {
        let h = args.nHeads, dn = args.qkNopeHeadDim, dr = args.qkRopeHeadDim, dv = args.vHeadDim
        let dqk = args.qkHeadDim, kvRank = args.kvLoraRank
        let total = past + n, ldkv = h * (dn + dv), ldq = h * dqk
        // Per-head k_nope | v of every visible position, for each batch row.
        let kvHeads = Tensor(uninitializedShape: [batch * total, ldkv])
        for b in 0..<batch {
            Linear.apply(store.latent + store.row(batch: b, position: 0) * kvRank, rows: total, weight: a.wkvB,
                         into: kvHeads.row(b * total))
        }
        let scale = softmaxScale
        let qp = SendablePointer(q.data), ctxp = SendablePointer(context.data)
        let kvp = SendablePointer(kvHeads.data), pep = SendablePointer(store.ropeKeys)
        let capacity = store.capacity
        let block = DeepSeekV3.attentionQueryBlock
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
                    Linear.sgemmSerial(transA: false, transB: true, m: m, n: visible, k: dqk, alpha: scale,
                                       qBlock, lda: ldq, keys, ldb: dqk, beta: 0, scores, ldc: visible)
                    for i in 0..<m {
                        let row = scores + i * visible, sees = past + i0 + i + 1
                        Ops.softmaxRow(row, sees)
                        (row + sees).update(repeating: 0, count: visible - sees)
                    }
                    Linear.sgemmSerial(transA: false, transB: false, m: m, n: dv, k: visible, alpha: 1,
                                       scores, lda: visible, kvBase + dn, ldb: ldkv,
                                       beta: 0, ctxp.pointer + (b * n + i0) * h * dv + head * dv, ldc: h * dv)
                }
            }
        }
    }

    func attentionAbsorbed(_ a: Attention, q: Tensor, batch: Int, newTokens n: Int, past: Int,
                           store: KVCache.Layer, into context: Tensor) {
        let h = args.nHeads, dn = args.qkNopeHeadDim, dr = args.qkRopeHeadDim, dv = args.vHeadDim
        let dqk = args.qkHeadDim, kvRank = args.kvLoraRank
        let total = past + n, ldq = h * dqk
        let scale = softmaxScale
        let wkvB = a.wkvB
        let qp = SendablePointer(q.data), ctxp = SendablePointer(context.data)
        let latentP = SendablePointer(store.latent), pep = SendablePointer(store.ropeKeys)
        let capacity = store.capacity
        // Head-major so one head's W_kb | W_vb is widened once for all batch rows.
        Compute.parallelChunks(h) { heads in
            let perHead = (dn + dv) * kvRank
            guard let qLatent = Compute.threadScratch(1, n * kvRank), let scores = Compute.threadScratch(2, n * total),
                  let ctxLatent = Compute.threadScratch(3, n * kvRank + (wkvB.float32Pointer == nil ? perHead : 0)) else {
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
                    Linear.sgemmSerial(transA: false, transB: false, m: n, n: kvRank, k: dn, alpha: 1,
                                       qHead, lda: ldq, headWeights, ldb: kvRank, beta: 0, qLatent, ldc: kvRank)
                    Linear.sgemmSerial(transA: false, transB: true, m: n, n: total, k: kvRank, alpha: scale,
                                       qLatent, lda: kvRank, latent, ldb: kvRank, beta: 0, scores, ldc: total)
                    Linear.sgemmSerial(transA: false, transB: true, m: n, n: total, k: dr, alpha: scale,
                                       qHead + dn, lda: ldq, pep.pointer + b * capacity * dr, ldb: dr,
                                       beta: 1, scores, ldc: total)
                    for i in 0..<n {
                        let row = scores + i * total, sees = past + i + 1
                        Ops.softmaxRow(row, sees)
                        (row + sees).update(repeating: 0, count: total - sees)
                    }
                    Linear.sgemmSerial(transA: false, transB: false, m: n, n: kvRank, k: total, alpha: 1,
                                       scores, lda: total, latent, ldb: kvRank, beta: 0, ctxLatent, ldc: kvRank)
                    Linear.sgemmSerial(transA: false, transB: true, m: n, n: dv, k: kvRank, alpha: 1,
                                       ctxLatent, lda: kvRank, headWeights + dn * kvRank, ldb: kvRank,
                                       beta: 0, ctxp.pointer + b * n * h * dv + head * dv, ldc: h * dv)
                }
            }
        }
    }

    /// SwiGLU `w2(silu(w1·x) ⊙ w3·x)`, added into `hidden` (or written to it when `accumulate` is false).
    func feedForward(_ f: FeedForward, _ x: Tensor, addInto hidden: Tensor, accumulate: Bool = true) {
        let gate = Linear.apply(x, f.w1)
        let up = Linear.apply(x, f.w3)
        Ops.siluMul(gate.data, up.data, count: gate.count)
        Linear.apply(gate.data, rows: x.rows, weight: f.w2, into: hidden.data, accumulate: accumulate)
    }

    // MARK: - MoE: route → dispatch → compute → combine

    func moeLayer(_ moe: MoE, layer: Int, _ x: Tensor, addInto hidden: Tensor, observer: RoutingObserver?) throws {
        let routing = route(moe, x)
        if let observer {
            routing.withDecision(layer: layer, expertBias: moe.expertBias) { observer.observe($0) }
        }
        let batches = dispatch(x, routing)
        let expertOutputs = try expertParallel?.runExperts(batches, layer: layer) { computeExperts(moe, $0) }
            ?? computeExperts(moe, batches)
        combine(moe, x, routing, batches, expertOutputs, addInto: hidden)
    }

    /// Per-token routing: selected experts, their combine weights, and the scores behind them.
    final class Routing {
        let tokens: Int, topK: Int, experts: Int
        let gateLogits: Tensor      // [T, E]
        let scores: Tensor          // [T, E], before the bias
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
                    layer: layer, tokenCount: self.tokens, topK: self.topK, numExperts: self.experts,
                    experts: .init(start: self.selected, count: self.tokens * self.topK),
                    weights: .init(start: self.weights, count: self.tokens * self.topK),
                    scores: .init(start: self.scores.data, count: self.scores.count),
                    gateLogits: .init(start: self.gateLogits.data, count: self.gateLogits.count),
                    expertBias: bias))
            }
            if let expertBias { expertBias.withUnsafeBufferPointer { decide($0) } } else { decide(nil) }
        }
    }

    /// Router (TorchTitan `TokenChoiceTopKRouter`): fp32 gate → softmax/sigmoid scores; the expert bias
    /// shifts scores for *selection only*; optional node-limited groups; top-k; weights from unbiased scores.
    func route(_ moe: MoE, _ x: Tensor) -> Routing {
        let m = args.moeArgs, e = m.numExperts, k = m.topK, tokens = x.rows
        let routing = Routing(tokens: tokens, topK: k, experts: e)
        Linear.apply(x.data, rows: tokens, weight: moe.gate, into: routing.gateLogits.data)
        let sigmoid = m.scoreFunc == "sigmoid"
        let groups = m.numExpertGroups, limited = m.numLimitedGroups ?? (m.numExpertGroups ?? 1)
        let gateBias = moe.gateBias, expertBias = moe.expertBias
        let routeNorm = m.routeNorm, routeScale = Float(m.routeScale)
        let logitsP = SendablePointer(routing.gateLogits.data), scoresP = SendablePointer(routing.scores.data)
        let selP = SendablePointer(routing.selected), wP = SendablePointer(routing.weights)
        Compute.parallelRanges(tokens) { _, range in
            let choice = UnsafeMutablePointer<Float>.allocate(capacity: e)
            let groupScores = UnsafeMutablePointer<Float>.allocate(capacity: max(groups ?? 1, 1))
            let groupPick = UnsafeMutablePointer<Int32>.allocate(capacity: max(groups ?? 1, 1))
            let pair = UnsafeMutablePointer<Int32>.allocate(capacity: 2)
            defer { choice.deallocate(); groupScores.deallocate(); groupPick.deallocate(); pair.deallocate() }
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
                if let groups {
                    let perGroup = e / groups
                    for g in 0..<groups {
                        Ops.topK(choice + g * perGroup, perGroup, 2, into: pair)
                        groupScores[g] = choice[g * perGroup + Int(pair[0])] + choice[g * perGroup + Int(pair[1])]
                    }
                    Ops.topK(groupScores, groups, limited, into: groupPick)
                    for g in 0..<groups where !(0..<limited).contains(where: { groupPick[$0] == Int32(g) }) {
                        (choice + g * perGroup).update(repeating: -.infinity, count: perGroup)
                    }
                }
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

    /// The (token, slot) assignments of one MoE layer grouped by expert: rows `offsets[e]..<offsets[e+1]`
    /// of `input` go to expert `e`. This is the unit that crosses process boundaries under expert parallelism.
    final class ExpertBatches {
        let experts: Int, width: Int
        /// `experts + 1` row offsets into `input`, one bucket per expert.
        let offsets: [Int]
        /// For each bucketed row, the assignment `token·K + slot` it came from.
        let assignment: [Int]
        /// Gathered token rows `[assignments, D]`, pre-scaled by the routing weight when the model scores before the experts.
        let input: Tensor

        init(experts: Int, width: Int, offsets: [Int], assignment: [Int], input: Tensor) {
            self.experts = experts; self.width = width
            self.offsets = offsets; self.assignment = assignment; self.input = input
        }

        func rows(of expert: Int) -> Range<Int> { offsets[expert]..<offsets[expert + 1] }
    }

    /// Dispatch: a counting sort of (token, slot) by expert, stable in token order — TorchTitan's
    /// argsort(stable=True) — then the tokens gathered into per-expert buckets.
    func dispatch(_ x: Tensor, _ routing: Routing) -> ExpertBatches {
        let e = routing.experts, k = routing.topK, d = args.dim
        let assignments = routing.tokens * k
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
        let input = Tensor(shape: [assignments, d])
        let scoreBefore = args.moeArgs.scoreBeforeExperts
        for (row, a) in order.enumerated() {
            let src = x.row(a / k), dst = input.row(row)
            if scoreBefore {
                let w = routing.weights[a]
                for c in 0..<d { dst[c] = src[c] * w }
            } else {
                dst.update(from: src, count: d)
            }
        }
        return ExpertBatches(experts: e, width: d, offsets: offsets, assignment: order, input: input)
    }

    /// Compute: each active expert's SwiGLU over its bucket as one GEMM per weight. Returns `[assignments, D]`
    /// in the same bucketed order as `batches.input`.
    func computeExperts(_ moe: MoE, _ batches: ExpertBatches) -> Tensor {
        let d = args.dim, f = args.moeInterDim
        let outputs = Tensor(uninitializedShape: [batches.input.rows, d])
        let active = (0..<batches.experts).filter { !batches.rows(of: $0).isEmpty }
        // Enough experts to keep every worker busy: one expert per task, each with single-threaded GEMMs
        // (no synchronisation inside an expert, and small buckets do not split into tiny GEMMs).
        if active.count >= 2 * Compute.threads {
            let inputP = SendablePointer(batches.input.data), outP = SendablePointer(outputs.data)
            let offsets = batches.offsets
            Compute.parallelChunks(active.count) { items in
                for item in items {
                    let expert = active[item]
                    let first = offsets[expert], n = offsets[expert + 1] - first
                    guard let gate = Compute.threadScratch(1, n * f), let up = Compute.threadScratch(2, n * f) else {
                        fatalError("out of memory for expert scratch (\(n) rows)")
                    }
                    let input = inputP.pointer + first * d
                    Linear.applyColumns(input, m: n, lda: d, moe.w1.matrix(expert), columns: 0..<f, gate, ldy: f, accumulate: false)
                    Linear.applyColumns(input, m: n, lda: d, moe.w3.matrix(expert), columns: 0..<f, up, ldy: f, accumulate: false)
                    Ops.siluMul(gate, up, count: n * f)
                    Linear.applyColumns(gate, m: n, lda: f, moe.w2.matrix(expert), columns: 0..<d, outP.pointer + first * d,
                                        ldy: d, accumulate: false)
                }
            }
            return outputs
        }
        let maxBucket = active.map { batches.rows(of: $0).count }.max() ?? 0
        let gate = Tensor(shape: [maxBucket, f]), up = Tensor(shape: [maxBucket, f])
        for expert in active {
            let rows = batches.rows(of: expert)
            let input = batches.input.row(rows.lowerBound), n = rows.count
            Linear.apply(input, rows: n, weight: moe.w1.matrix(expert), into: gate.data)
            Linear.apply(input, rows: n, weight: moe.w3.matrix(expert), into: up.data)
            Ops.siluMul(gate.data, up.data, count: n * f)
            Linear.apply(gate.data, rows: n, weight: moe.w2.matrix(expert), into: outputs.row(rows.lowerBound))
        }
        return outputs
    }

    /// Combine: `hidden += shared(x) + Σ_k w_k·expert_k(x)` (without the weights when they were applied before
    /// the experts). Slots are summed in slot order so the result does not depend on how experts were bucketed.
    func combine(_ moe: MoE, _ x: Tensor, _ routing: Routing, _ batches: ExpertBatches, _ outputs: Tensor,
                 addInto hidden: Tensor) {
        let d = args.dim, k = routing.topK
        let moeOut = Tensor(shape: [routing.tokens, d])
        if let shared = moe.shared {
            feedForward(shared, x, addInto: moeOut, accumulate: false)
        }
        var rowOfAssignment = [Int](repeating: 0, count: batches.assignment.count)
        for (row, a) in batches.assignment.enumerated() { rowOfAssignment[a] = row }
        let scoreBefore = args.moeArgs.scoreBeforeExperts
        let outP = SendablePointer(moeOut.data), expP = SendablePointer(outputs.data)
        let wP = SendablePointer(routing.weights), hP = SendablePointer(hidden.data)
        rowOfAssignment.withUnsafeBufferPointer { rowsOf in
            let rowP = SendableConstPointer(rowsOf.baseAddress!)
            Compute.parallelRanges(routing.tokens) { _, range in
                let routed = UnsafeMutablePointer<Float>.allocate(capacity: d)
                defer { routed.deallocate() }
                for t in range {
                    let out = outP.pointer + t * d
                    routed.update(repeating: 0, count: d)
                    for slot in 0..<k {
                        let y = expP.pointer + rowP.pointer[t * k + slot] * d
                        let w: Float = scoreBefore ? 1 : wP.pointer[t * k + slot]
                        for c in 0..<d { routed[c] += w * y[c] }
                    }
                    let h = hP.pointer + t * d
                    for c in 0..<d { h[c] += out[c] + routed[c] }
                }
            }
        }
    }
}

/// cos/sin of `position · frequency` for every position and rotated pair (torch.polar in fp32).
struct RopeTable {
    let pairs: Int
    let cos: [Float]
    let sin: [Float]

    init(frequencies: [Float], positions: Int) {
        pairs = frequencies.count
        var c = [Float](repeating: 0, count: positions * pairs), s = c
        for p in 0..<positions {
            for i in 0..<pairs {
                let angle = Float(p) * frequencies[i]
                c[p * pairs + i] = Foundation.cos(angle)
                s[p * pairs + i] = Foundation.sin(angle)
            }
        }
        cos = c
        sin = s
    }

    func apply(_ x: UnsafeMutablePointer<Float>, position: Int) {
        cos.withUnsafeBufferPointer { c in
            sin.withUnsafeBufferPointer { s in
                Ops.ropeInterleaved(x, pairs: pairs, cos: c.baseAddress! + position * pairs, sin: s.baseAddress! + position * pairs)
            }
        }
    }
}
