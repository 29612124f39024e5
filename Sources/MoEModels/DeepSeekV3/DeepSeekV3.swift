import Foundation
import MoECheckpoint
import MoETensor

/// Which TorchTitan code the numbers must follow. The eras differ in two places that the weights
/// cannot tell apart: when YaRN applies, and the final norm's eps (../docs/MODEL.md).
public enum CodeEra: String, Sendable, CaseIterable {
    case v0_2 = "0.2"
    case v0_3 = "0.3"
}

extension Numerics {
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
                result = Numerics(
                    yarn: seqLenRule, finalNormEps: Float(args.normEps), origin: "main between 0.2.2 and 0.3.0 (mixed key names)")
            case .v0_3:
                result = Numerics(yarn: args.ropeFactor > 1, finalNormEps: Float(args.normEps), origin: "era 0.3 (from key names)")
            }
        }
        if let yarn { result.yarn = yarn; result.origin += ", yarn overridden" }
        if let finalNormEps { result.finalNormEps = finalNormEps; result.origin += ", final norm eps overridden" }
        return result
    }
}

/// DeepSeek-V3 as TorchTitan computes it (v0.2.2 `deepseek_v3/model/model.py`, 0.3.0 `deepseek_v3/model.py`):
/// embedding → layers of [RMSNorm → MLA attention → residual, RMSNorm → dense SwiGLU or MoE → residual]
/// → final RMSNorm → output head. fp32 compute; weights stay in their stored dtype.
public final class DeepSeekV3: CausalLanguageModel, @unchecked Sendable {
    /// TorchTitan's module name for this family.
    public static let familyName = "deepseek_v3"
    public let args: ModelArgs
    public let numerics: Numerics
    let embedding: Weight
    let layers: [Layer]
    let finalNorm: [Float]
    let output: Weight
    /// Attention's `1/√qk_head_dim`, times YaRN's mscale² when YaRN applies.
    public let softmaxScale: Float
    /// RoPE angle frequencies per rotated pair, after YaRN when active.
    public let ropeFrequencies: [Float]
    /// Set when the routed experts are spread over the processes of a group: `moe.w1/w2/w3` then hold only
    /// this rank's experts (ExpertParallel.swift).
    public let expertParallel: ExpertParallelGroup?
    public let shape: ModelShape
    /// Where the forward's tensor operations run, in the precision of its matrix products.
    let backend: any TensorBackend
    public let compute: ComputePrecision
    public let kvCacheLayout: KVCacheLayout

    struct Layer {
        var index: Int
        var attentionNorm: [Float]
        var ffnNorm: [Float]
        var attention: MultiHeadLatentAttention
        var feedForward: FeedForward?
        var moe: MoEBlock?
    }

    // MARK: - Loading

    /// Builds the model from a checkpoint, checking every tensor's shape against `args` and refusing
    /// tensors the arguments do not account for (usually a wrong flavor or config).
    public init(
        args: ModelArgs, weights source: WeightSource, numerics: Numerics,
        expertParallel: ExpertParallelGroup? = nil, compute: ComputePrecision = .fp32,
        backend: (any TensorBackend)? = nil
    ) throws {
        try args.validate()
        guard numerics.finalNormEps.isFinite, numerics.finalNormEps > 0 else {
            throw ModelLoadError("final norm eps \(numerics.finalNormEps) (\(numerics.origin)) must be a finite number > 0")
        }
        if let expertParallel {
            guard expertParallel.numExperts == args.moeArgs.numExperts else {
                throw ModelLoadError(
                    "expert-parallel group made for \(expertParallel.numExperts) experts, but the model args have \(args.moeArgs.numExperts)"
                )
            }
        }
        self.args = args
        self.numerics = numerics
        self.expertParallel = expertParallel
        self.compute = compute
        let backend = backend ?? CPUBackend(compute: compute)
        self.backend = backend
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
            throw ModelLoadError(
                "\(source.description): \(unused.count) tensor(s) not used by the model args (e.g. \(shown)); the config or flavor does not match this checkpoint"
            )
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
        /// A projection whose products run on many rows in prefill, in the layout those run fastest from
        /// (`Linear.packedForProducts`; not wkv_b, whose rows absorbed decode reads directly).
        let packingCompute = (backend as? CPUBackend)?.compute ?? .fp32
        func projection(_ name: String, _ shape: [Int]) throws -> Weight {
            Linear.packedForProducts(try load(name, shape), compute: packingCompute)
        }
        /// A grouped expert weight `[E, …]`, or only this rank's experts under expert parallelism (the other
        /// experts' bytes are never read).
        func experts(_ name: String, _ shape: [Int]) throws -> Weight {
            if source.tensorInfos[name]?.shape == shape,
                let packed = try Linear.packedForProducts(
                    expertParts: source.loadParts(name, leading: expertParallel?.localExperts), compute: packingCompute)
            {
                used.insert(name)
                return packed
            }
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

        var scale = 1 / Double(args.qkHeadDim).squareRoot()
        if numerics.yarn {
            let mscale = 0.1 * args.mscale * log(args.ropeFactor) + 1.0
            scale *= mscale * mscale
        }
        let softmaxScale = Float(scale)
        self.softmaxScale = softmaxScale
        ropeFrequencies = DeepSeekV3.ropeFrequencies(args: args, yarn: numerics.yarn)

        let d = args.dim, h = args.nHeads
        embedding = try load("tok_embeddings.weight", [args.vocabSize, d])
        var layers: [Layer] = []
        for i in 0..<args.nLayers {
            let p = "layers.\(i)."
            var attention = MultiHeadLatentAttention(
                wkvA: try projection(p + "attention.wkv_a.weight", [args.kvLoraRank + args.qkRopeHeadDim, d]),
                kvNorm: try vector(p + "attention.kv_norm.weight", args.kvLoraRank),
                wkvB: try load(p + "attention.wkv_b.weight", [h * (args.qkNopeHeadDim + args.vHeadDim), args.kvLoraRank]),
                wo: try projection(p + "attention.wo.weight", [d, h * args.vHeadDim]),
                heads: h, qkNopeHeadDim: args.qkNopeHeadDim, qkRopeHeadDim: args.qkRopeHeadDim, vHeadDim: args.vHeadDim,
                kvLoraRank: args.kvLoraRank, qLoraRank: args.qLoraRank, normEps: Float(args.normEps),
                softmaxScale: softmaxScale, backend: backend)
            if args.qLoraRank == 0 {
                attention.wq = try projection(p + "attention.wq.weight", [h * args.qkHeadDim, d])
            } else {
                attention.wqA = try projection(p + "attention.wq_a.weight", [args.qLoraRank, d])
                attention.qNorm = try vector(p + "attention.q_norm.weight", args.qLoraRank)
                attention.wqB = try projection(p + "attention.wq_b.weight", [h * args.qkHeadDim, args.qLoraRank])
            }
            var layer = Layer(
                index: i,
                attentionNorm: try vector(p + "attention_norm.weight", d),
                ffnNorm: try vector(p + "ffn_norm.weight", d),
                attention: attention)
            if args.isMoELayer(i) {
                let m = args.moeArgs, e = m.numExperts, f = args.moeInterDim
                let gate = try load(p + "moe.router.gate.weight", [e, d])
                let routed = ExpertWeights(
                    w1: try experts(p + "moe.experts.w1", [e, f, d]),
                    w2: try experts(p + "moe.experts.w2", [e, d, f]),
                    w3: try experts(p + "moe.experts.w3", [e, f, d]))
                let gateBias = m.gateBias ? try vector(p + "moe.router.gate.bias", e) : nil
                let expertBias = m.loadBalanceCoeff != nil ? try vector(p + "moe.expert_bias", e) : nil
                var shared: SharedExperts?
                if m.numSharedExperts > 0 {
                    let sf = f * m.numSharedExperts
                    shared = .plain(
                        FeedForward(
                            w1: try projection(p + "moe.shared_experts.w1.weight", [sf, d]),
                            w2: try projection(p + "moe.shared_experts.w2.weight", [d, sf]),
                            w3: try projection(p + "moe.shared_experts.w3.weight", [sf, d])))
                }
                layer.moe = try MoEBlock(
                    router: DeepSeekV3.routerConfig(args), gate: gate, gateBias: gateBias,
                    expertBias: expertBias, experts: routed, activation: .swiGLU, shared: shared,
                    dim: d, expertHiddenDim: f, backend: backend)
            } else {
                layer.feedForward = FeedForward(
                    w1: try projection(p + "feed_forward.w1.weight", [args.interDim, d]),
                    w2: try projection(p + "feed_forward.w2.weight", [d, args.interDim]),
                    w3: try projection(p + "feed_forward.w3.weight", [args.interDim, d]))
            }
            layers.append(layer)
        }
        self.layers = layers
        finalNorm = try vector("norm.weight", d)
        output = try load("output.weight", [args.vocabSize, d])

        assert(used == Set(expected.keys), "expectedShapes() and the loader disagree on the tensors")
        shape = ModelShape(
            family: Self.familyName, vocabSize: args.vocabSize, dim: d, layers: args.nLayers,
            moeLayers: (0..<args.nLayers).filter(args.isMoELayer), numExperts: args.moeArgs.numExperts,
            topK: args.moeArgs.topK, numSharedExperts: args.moeArgs.numSharedExperts,
            hasExpertBias: args.moeArgs.loadBalanceCoeff != nil,
            scoreFunction: args.moeArgs.scoreFunc == "sigmoid" ? .sigmoid : .softmax,
            numExpertGroups: args.moeArgs.numExpertGroups, numLimitedGroups: args.moeArgs.numLimitedGroups,
            maxSeqLen: args.maxSeqLen, attentionHeads: h)
        kvCacheLayout = KVCacheLayout(
            repeating: MultiHeadLatentAttention.cacheStreams(kvLoraRank: args.kvLoraRank, qkRopeHeadDim: args.qkRopeHeadDim),
            count: args.nLayers)
    }

    /// TorchTitan's router settings for DeepSeek-V3 (`moe_args`).
    static func routerConfig(_ args: ModelArgs) -> RouterConfig {
        let m = args.moeArgs
        return RouterConfig(
            scoreFunction: m.scoreFunc == "sigmoid" ? .sigmoid : .softmax, numExperts: m.numExperts,
            topK: m.topK, numExpertGroups: m.numExpertGroups, numLimitedGroups: m.numLimitedGroups,
            routeNorm: m.routeNorm, routeScale: Float(m.routeScale), scoreBeforeExperts: m.scoreBeforeExperts)
    }

    /// RoPE frequencies of the rotated part of each head, YaRN-corrected with the correction range rounded
    /// outwards (TorchTitan's DeepSeek-V3 `precompute_freqs_cis`, both eras).
    static func ropeFrequencies(args: ModelArgs, yarn: Bool) -> [Float] {
        guard yarn else { return RotaryTable.frequencies(theta: args.ropeTheta, rotatedDims: args.qkRopeHeadDim) }
        return YaRNFrequencies.frequencies(
            rotatedDims: args.qkRopeHeadDim, theta: args.ropeTheta, factor: args.ropeFactor,
            betaFast: args.betaFast, betaSlow: args.betaSlow,
            originalSeqLen: args.originalSeqLen, truncate: true)
    }

    // MARK: - Forward

    public typealias LogitsSelection = MoEModels.LogitsSelection

    /// Logits for `tokens` (`batch` rows of `seqLen` new ids, row-major), causal within each row.
    /// Without a cache each row is a sequence starting at position 0. With a cache the new tokens continue the
    /// cached rows at position `cache.length`, and their keys and values are appended to it.
    /// Returns `[batch·seqLen, vocab]` for `.all`, `[batch, vocab]` for `.last`, the asked rows for `.positions`.
    public func forward(
        tokens: [Int32], batch: Int, seqLen: Int, cache: KVCache? = nil,
        logits selection: LogitsSelection = .all, observer: RoutingObserver? = nil
    ) throws -> Tensor {
        if let expertParallelLogits = try forwardPreamble(
            tokens: tokens, batch: batch, seqLen: seqLen, cache: cache, logits: selection, observer: observer)
        {
            return expertParallelLogits
        }
        let logitsRows = try selection.hiddenRows(batch: batch, seqLen: seqLen)
        let past = cache?.length ?? 0
        let rows = batch * seqLen
        let hidden = Tensor(shape: [rows, args.dim])
        backend.embed(tokens, table: embedding, into: hidden.data)
        let rope = RotaryTable(frequencies: ropeFrequencies, positions: past + seqLen, pairing: .interleaved)
        let normed = Tensor(shape: [rows, args.dim])
        let scratchStore = cache == nil ? KVCache.Layer(batch: batch, capacity: seqLen, streams: kvCacheLayout.layers.first ?? []) : nil
        for layer in layers {
            let store = cache?.layers[layer.index] ?? scratchStore!
            backend.rmsNorm(
                hidden.data, rows: rows, dim: args.dim, weight: layer.attentionNorm, eps: Float(args.normEps), into: normed.data)
            layer.attention.apply(normed, batch: batch, newTokens: seqLen, past: past, rope: rope, store: store, addInto: hidden)
            backend.rmsNorm(hidden.data, rows: rows, dim: args.dim, weight: layer.ffnNorm, eps: Float(args.normEps), into: normed.data)
            if let moe = layer.moe {
                try moe.apply(normed, layer: layer.index, addInto: hidden, observer: observer, expertParallel: expertParallel)
            } else if let ffn = layer.feedForward {
                ffn.apply(normed, addInto: hidden, backend: backend)
            }
        }
        cache?.length += seqLen
        return OutputHead.logits(
            hidden: hidden, rows: logitsRows, norm: finalNorm, eps: numerics.finalNormEps, head: output, backend: backend)
    }
}
