import Foundation
import MoECheckpoint
import MoETensor

/// gpt-oss as TorchTitan 0.3.0 computes it (`models/gpt_oss`): embedding → layers of
/// [RMSNorm → GQA attention (biased q/k/v/o, rotate-half RoPE with YaRN, per-head sinks, a causal sliding window
/// on the configured layers) → residual, RMSNorm → MoE (biased router gate, softmax, top-k with route norm, clamped
/// interleaved SwiGLU experts with biases) → residual] → final RMSNorm → untied output head.
/// fp32 compute; weights stay in their stored dtype.
public final class GptOss: CausalLanguageModel, @unchecked Sendable {
    /// TorchTitan's module name for this family (and HF's `model_type`).
    public static let familyName = "gpt_oss"
    public let args: GptOssArgs
    let embedding: Weight
    let layers: [Layer]
    let finalNorm: [Float]
    let lmHead: Weight
    public let softmaxScale: Float
    let ropeFrequencies: [Float]
    /// Set when the routed experts are spread over the processes of a group: the blocks then hold only this
    /// rank's experts and their biases (ExpertParallel.swift).
    public let expertParallel: ExpertParallelGroup?
    public let shape: ModelShape
    public let kvCacheLayout: KVCacheLayout
    /// Precision of the matrix products, and the backend that runs them in it (every block holds the same one).
    public let compute: ComputePrecision
    let backend: any TensorBackend

    typealias Layer = GQAMoELayer

    // MARK: - Loading

    /// Builds the model from checked weights (`GptOssWeightSet` compared every tensor's shape with the args).
    /// Under expert parallelism only this rank's experts (and their biases) are read.
    public init(
        weights w: GptOssWeightSet, expertParallel: ExpertParallelGroup? = nil, compute: ComputePrecision = .fp32,
        backend: (any TensorBackend)? = nil
    ) throws {
        let args = w.args
        if let expertParallel, expertParallel.numExperts != args.moeArgs.numExperts {
            throw ModelLoadError(
                "expert-parallel group made for \(expertParallel.numExperts) experts, but the model args have \(args.moeArgs.numExperts)")
        }
        self.args = args
        self.expertParallel = expertParallel
        self.compute = compute
        let backend = backend ?? CPUBackend(compute: compute)
        self.backend = backend
        embedding = try w.load("tok_embeddings.weight")
        let held = expertParallel?.localExperts
        let router = RouterConfig(
            scoreFunction: args.moeArgs.scoreFunc == "sigmoid" ? .sigmoid : .softmax, numExperts: args.moeArgs.numExperts,
            topK: args.moeArgs.topK, routeNorm: args.moeArgs.routeNorm, routeScale: Float(args.moeArgs.routeScale),
            scoreBeforeExperts: false)
        let activation = ExpertActivation.clampedSwiGLU(alpha: Float(args.swigluAlpha), limit: Float(args.swigluLimit))
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
            attention.backend = backend
            let e = p + GptOssWeights.expertPrefix
            let experts = ExpertWeights(
                w1: try w.load(e + "mlp1_weight_EGD", experts: held), w2: try w.load(e + "mlp2_weight_EDF", experts: held),
                w3: nil, b1: try w.load(e + "mlp1_bias_EG", experts: held).toFloatArray(),
                b2: try w.load(e + "mlp2_bias_ED", experts: held).toFloatArray())
            attention.backend = backend
            var moe = try MoEBlock(
                router: router, gate: try w.load(p + "moe.router.gate.weight"),
                gateBias: args.moeArgs.gateBias ? try w.vector(p + "moe.router.gate.bias") : nil,
                expertBias: args.moeArgs.loadBalanceCoeff != nil ? try w.vector(p + "moe.expert_bias_E") : nil,
                experts: experts, activation: activation, shared: nil, dim: args.dim, expertHiddenDim: args.moeInterDim,
                backend: backend)
            layers.append(
                Layer(
                    index: i, attentionNorm: try w.vector(p + "attention_norm.weight"),
                    ffnNorm: try w.vector(p + "ffn_norm.weight"), attention: attention, moe: moe))
        }
        self.layers = layers
        finalNorm = try w.vector("norm.weight")
        lmHead = args.enableWeightTying ? embedding : try w.load("lm_head.weight")
        softmaxScale = Float(args.softmaxScale)
        if let s = args.ropeScaling, args.yarnActive {
            ropeFrequencies = YaRNFrequencies.frequencies(
                rotatedDims: args.headDim, theta: args.ropeTheta, factor: s.ropeFactor,
                betaFast: s.betaFast, betaSlow: s.betaSlow,
                originalSeqLen: s.originalSeqLen, truncate: s.truncate)
        } else {
            ropeFrequencies = RotaryTable.frequencies(theta: args.ropeTheta, rotatedDims: args.headDim)
        }
        shape = ModelShape(
            family: Self.familyName, vocabSize: args.vocabSize, dim: args.dim, layers: args.nLayers,
            moeLayers: Array(0..<args.nLayers), numExperts: args.moeArgs.numExperts, topK: args.moeArgs.topK,
            numSharedExperts: 0, hasExpertBias: args.moeArgs.loadBalanceCoeff != nil,
            scoreFunction: router.scoreFunction, maxSeqLen: args.maxSeqLen, attentionHeads: args.nHeads)
        kvCacheLayout = KVCacheLayout(
            repeating: GroupedQueryAttention.cacheStreams(kvHeads: args.nKVHeads, headDim: args.headDim),
            count: args.nLayers)
    }

    /// Opens the checkpoint at `url` and builds the model.
    public convenience init(
        args: GptOssArgs, checkpoint url: URL, expertParallel: ExpertParallelGroup? = nil, compute: ComputePrecision = .fp32,
        backend: (any TensorBackend)? = nil
    ) throws {
        try args.validate()
        try self.init(
            weights: GptOssWeightSet(store: GptOssWeights.openStore(at: url), args: args), expertParallel: expertParallel,
            compute: compute, backend: backend)
    }

    // MARK: - Forward

    /// Logits for `tokens` (`batch` rows of `seqLen` ids, row-major), causal within each row. With a cache the
    /// tokens continue the cached rows at position `cache.length` and their keys and values are appended
    /// (windowed layers keep every position: a ring of `window` positions would save memory, not time).
    /// Returns `[batch·seqLen, vocab]` for `.all`, `[batch, vocab]` for `.last`.
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
            cacheStreams: kvCacheLayout.layers[0], backend: backend)
        return try decoder.forward(
            tokens: tokens, batch: batch, seqLen: seqLen, cache: cache, logits: selection,
            observer: observer, expertParallel: expertParallel)
    }
}
