import Foundation
import MoECheckpoint
import MoETensor

/// Qwen3-MoE as TorchTitan 0.3.0's `qwen3` module computes it (`Qwen3Model` with `_build_qwen3_moe_layers`):
/// embedding → layers of [RMSNorm → GQA with per-head q/k RMSNorm and rotate-half RoPE → residual,
/// RMSNorm → MoE (softmax router, route_norm, selection-only expert bias, SwiGLU experts) → residual]
/// → final RMSNorm → lm_head. fp32 compute; weights stay in their stored dtype.
public final class Qwen3MoE: CausalLanguageModel, @unchecked Sendable {
    public static let familyName = "qwen3"
    public let args: Qwen3Args
    public let expertParallel: ExpertParallelGroup?
    public let shape: ModelShape
    public let kvCacheLayout: KVCacheLayout
    /// Precision of the matrix products, and the backend that runs them in it.
    public let compute: ComputePrecision
    let embedding: Weight
    let layers: [Layer]
    let finalNorm: [Float]
    let lmHead: Weight
    /// Rotate-half RoPE frequencies `1/θ^(2i/head_dim)`.
    let ropeFrequencies: [Float]
    /// Where the forward's tensor operations run (every block holds the same backend).
    let backend: any TensorBackend

    /// TorchTitan 0.3.0's qwen3 has one set of rules: no YaRN, every RMSNorm (the final one included) at norm_eps.
    public var numerics: Numerics {
        Numerics(yarn: false, finalNormEps: Float(args.normEps), origin: "qwen3 (TorchTitan 0.3.0: no YaRN, final norm eps = norm_eps)")
    }

    typealias Layer = GQAMoELayer

    /// Builds the model, checking every tensor's shape against `args` before any is read and refusing tensors
    /// the args do not account for (usually a config that does not match the checkpoint). Under expert
    /// parallelism only this rank's experts are read.
    public init(
        args: Qwen3Args, weights source: WeightSource, expertParallel: ExpertParallelGroup? = nil,
        compute: ComputePrecision = .fp32, backend: (any TensorBackend)? = nil
    ) throws {
        try args.validate()
        if let expertParallel, expertParallel.numExperts != args.moeArgs.numExperts {
            throw ModelLoadError(
                "expert-parallel group made for \(expertParallel.numExperts) experts, but the qwen3 model args have \(args.moeArgs.numExperts)"
            )
        }
        self.args = args
        self.expertParallel = expertParallel
        self.compute = compute
        let backend = backend ?? CPUBackend(compute: compute)
        self.backend = backend
        let expected = try Qwen3Naming.shapes(args)
        var shapes = Dictionary(uniqueKeysWithValues: expected.map { ($0.name, $0.shape) })
        for (name, shape) in expected {
            guard let info = source.tensorInfos[name] else {
                throw ModelLoadError("\(source.description): tensor \(name) is missing (qwen3 model args need shape \(shape))")
            }
            guard info.shape == shape else {
                throw ModelLoadError(
                    "\(source.description): tensor \(name) has shape \(info.shape) but the qwen3 model args imply \(shape)")
            }
        }
        // The load-balancing bias is a buffer TorchTitan saves when trained with it; HF checkpoints have none.
        let e = args.moeArgs.numExperts
        for i in 0..<args.nLayers {
            let name = Qwen3Naming.Layer(i).expertBias
            guard let info = source.tensorInfos[name] else { continue }
            guard info.shape == [e] else {
                throw ModelLoadError("\(source.description): tensor \(name) has shape \(info.shape) but the qwen3 model args imply [\(e)]")
            }
            shapes[name] = [e]
        }
        // A tied model may still carry its lm_head copy.
        if args.enableWeightTying, source.tensorInfos[Qwen3Naming.lmHead]?.shape == [args.vocabSize, args.dim] {
            shapes[Qwen3Naming.lmHead] = [args.vocabSize, args.dim]
        }
        let unused = source.tensorInfos.filter { $0.value.elementCount > 0 && shapes[$0.key] == nil }.keys.sorted()
        if !unused.isEmpty {
            throw ModelLoadError(
                "\(source.description): \(unused.count) tensor(s) not used by the qwen3 model args (e.g. \(unused.prefix(5).joined(separator: ", "))); the config does not match this checkpoint"
            )
        }

        func weight(_ stored: StoredTensor) throws -> Weight {
            do {
                return try Weight(dtype: stored.dtype, shape: stored.shape, bytes: stored.bytes, owner: stored)
            } catch {
                throw ModelLoadError("\(source.description): tensor \(stored.name): \(error)")
            }
        }
        func load(_ name: String) throws -> Weight { try weight(source.load(name)) }
        func vector(_ name: String) throws -> [Float] { try load(name).toFloatArray() }
        /// A grouped expert weight, or only this rank's experts (the others' bytes are never read).
        let packingCompute = (backend as? CPUBackend)?.compute ?? .fp32
        func experts(_ name: String) throws -> Weight {
            if let packed = try Linear.packedForProducts(
                expertParts: source.loadParts(name, leading: expertParallel?.localExperts), compute: packingCompute)
            {
                return packed
            }
            guard let expertParallel else { return try load(name) }
            return try weight(source.load(name, leading: expertParallel.localExperts))
        }

        let d = args.dim
        embedding = try load(Qwen3Naming.embedding)
        let scale = Float(1 / Double(args.headDim).squareRoot())
        let router = RouterConfig(
            scoreFunction: args.moeArgs.scoreFunc == "sigmoid" ? .sigmoid : .softmax,
            numExperts: e, topK: args.moeArgs.topK, routeNorm: args.moeArgs.routeNorm,
            routeScale: Float(args.moeArgs.routeScale), scoreBeforeExperts: false)
        var layers: [Layer] = []
        for i in 0..<args.nLayers {
            let l = Qwen3Naming.Layer(i)
            var attention = GroupedQueryAttention(
                dim: d, nHeads: args.nHeads, nKVHeads: args.nKVHeads, headDim: args.headDim,
                wq: try load(l.wq), wk: try load(l.wk), wv: try load(l.wv), wo: try load(l.wo), softmaxScale: scale)
            if args.qkNorm {
                attention.qNorm = try vector(l.qNorm)
                attention.kNorm = try vector(l.kNorm)
            }
            attention.normEps = Float(args.normEps)
            attention.backend = backend
            let moe = try MoEBlock(
                router: router, gate: try load(l.gate),
                expertBias: shapes[l.expertBias] != nil ? try vector(l.expertBias) : nil,
                experts: ExpertWeights(w1: try experts(l.w1), w2: try experts(l.w2), w3: try experts(l.w3)),
                activation: .swiGLU, shared: nil, dim: d, expertHiddenDim: args.moeInterDim, backend: backend)
            layers.append(
                Layer(
                    index: i, attentionNorm: try vector(l.attentionNorm), ffnNorm: try vector(l.ffnNorm),
                    attention: attention, moe: moe))
        }
        self.layers = layers
        finalNorm = try vector(Qwen3Naming.finalNorm)
        lmHead = args.enableWeightTying && shapes[Qwen3Naming.lmHead] == nil ? embedding : try load(Qwen3Naming.lmHead)
        ropeFrequencies = RotaryTable.frequencies(theta: args.ropeTheta, rotatedDims: args.headDim)
        shape = ModelShape(
            family: Self.familyName, vocabSize: args.vocabSize, dim: d, layers: args.nLayers,
            moeLayers: Array(0..<args.nLayers), numExperts: e, topK: args.moeArgs.topK, numSharedExperts: 0,
            hasExpertBias: layers.contains { $0.moe.expertBias != nil }, scoreFunction: router.scoreFunction,
            maxSeqLen: args.maxSeqLen, attentionHeads: args.nHeads)
        kvCacheLayout = KVCacheLayout(
            repeating: GroupedQueryAttention.cacheStreams(kvHeads: args.nKVHeads, headDim: args.headDim),
            count: args.nLayers)
    }

    public func forward(
        tokens: [Int32], batch: Int, seqLen: Int, cache: KVCache? = nil,
        logits selection: LogitsSelection = .all, observer: RoutingObserver? = nil
    ) throws -> Tensor {
        if let expertParallelLogits = try forwardPreamble(
            tokens: tokens, batch: batch, seqLen: seqLen, cache: cache, logits: selection, observer: observer)
        {
            return expertParallelLogits
        }
        let decoder = GQAMoEDecoder(
            dim: args.dim, normEps: Float(args.normEps), embedding: embedding, layers: layers,
            finalNorm: finalNorm, lmHead: lmHead, ropeFrequencies: ropeFrequencies,
            cacheStreams: kvCacheLayout.layers.first ?? [], backend: backend)
        return try decoder.forward(
            tokens: tokens, batch: batch, seqLen: seqLen, cache: cache, logits: selection,
            observer: observer, expertParallel: expertParallel)
    }
}

/// What Qwen3-MoE weighs and costs: bytes for the benchmarks, TorchTitan's parameter and FLOP formulas.
extension Qwen3MoE {
    public var moeBlocks: [(layer: Int, block: MoEBlock)] { layers.map { ($0.index, $0.moe) } }

    public var footprint: ModelFootprint {
        let tied = lmHead === embedding
        let embeddingAndHead = embedding.byteCount + (tied ? 0 : lmHead.byteCount) + finalNorm.count * 4
        var weightBytes = embeddingAndHead, dense = embeddingAndHead, experts = 0
        var active = embedding.byteCount / max(args.vocabSize, 1) + lmHead.byteCount
        let topK = args.moeArgs.topK, expertCount = max(args.moeArgs.numExperts, 1)
        for layer in layers {
            let attention = layer.attention.byteCount + (layer.attentionNorm.count + layer.ffnNorm.count) * 4
            let moe = layer.moe
            weightBytes += attention + moe.gateBytes + moe.expertBytes
            active += attention + moe.gateBytes + moe.expertBytes / expertCount * topK
            dense += attention + moe.gateBytes + moe.routerVectorBytes
            experts += moe.expertBytes
        }
        return ModelFootprint(weightBytes: weightBytes, activeWeightBytesPerToken: active, heldDenseBytes: dense, heldExpertBytes: experts)
    }

    public func parameterCounts() -> ParameterCounts { args.parameterCounts() }

    public func trainingFlopsPerToken(seqLen: Int) -> Int { args.trainingFlopsPerToken(seqLen: seqLen) }

    /// `2 × active matmul parameters` (no embedding lookup, no norm weights) plus causal attention,
    /// `2 · L · H · 2·head_dim · (seqLen + 1)/2`.
    public func forwardFlopsPerToken(seqLen: Int) -> Double { args.forwardFlopsPerToken(seqLen: seqLen) }
}
