/// What the router decided for one MoE layer over a batch of tokens. The buffers are valid only during
/// `RoutingObserver.observe`; copy what you keep.
public struct RoutingDecision {
    /// Index of the transformer layer (TorchTitan's `layers.N`).
    public let layer: Int
    public let tokenCount: Int
    public let topK: Int
    public let numExperts: Int
    /// Selected experts, `[tokenCount, topK]`, best biased score first.
    public let experts: UnsafeBufferPointer<Int32>
    /// Combine weights for the selected experts (after route_norm and route_scale), `[tokenCount, topK]`.
    public let weights: UnsafeBufferPointer<Float>
    /// Router scores before the expert bias (softmax or sigmoid of the gate logits), `[tokenCount, numExperts]`.
    public let scores: UnsafeBufferPointer<Float>
    /// Raw gate logits, `[tokenCount, numExperts]`.
    public let gateLogits: UnsafeBufferPointer<Float>
    /// The load-balancing bias added to scores for selection only (nil when the model has none).
    public let expertBias: UnsafeBufferPointer<Float>?

    public init(
        layer: Int, tokenCount: Int, topK: Int, numExperts: Int, experts: UnsafeBufferPointer<Int32>,
        weights: UnsafeBufferPointer<Float>, scores: UnsafeBufferPointer<Float>, gateLogits: UnsafeBufferPointer<Float>,
        expertBias: UnsafeBufferPointer<Float>?
    ) {
        self.layer = layer; self.tokenCount = tokenCount; self.topK = topK; self.numExperts = numExperts
        self.experts = experts; self.weights = weights; self.scores = scores; self.gateLogits = gateLogits
        self.expertBias = expertBias
    }
}

/// Receives every MoE layer's routing during a forward pass. A forward without an observer skips the call
/// and nothing is copied.
public protocol RoutingObserver: AnyObject {
    func observe(_ decision: RoutingDecision)
}

/// Keeps the selected experts and weights per layer (what `moe-eval forward` prints).
public final class RoutingRecorder: RoutingObserver {
    public private(set) var experts: [Int: [Int32]] = [:]
    public private(set) var weights: [Int: [Float]] = [:]
    public private(set) var topK: [Int: Int] = [:]

    public init() {}

    public func observe(_ decision: RoutingDecision) {
        experts[decision.layer, default: []].append(contentsOf: decision.experts)
        weights[decision.layer, default: []].append(contentsOf: decision.weights)
        topK[decision.layer] = decision.topK
    }
}
