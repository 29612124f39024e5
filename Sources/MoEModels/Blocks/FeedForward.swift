import MoETensor

/// A dense SwiGLU feed-forward `w2(silu(w1·x) ⊙ w3·x)` (TorchTitan's `FeedForward`): the dense layers of
/// DeepSeek-V3 and the shared experts of an MoE block.
public struct FeedForward: @unchecked Sendable {
    /// `[F, D]`, `[D, F]`, `[F, D]`.
    public var w1: Weight
    public var w2: Weight
    public var w3: Weight

    public init(w1: Weight, w2: Weight, w3: Weight) {
        self.w1 = w1; self.w2 = w2; self.w3 = w3
    }

    public var byteCount: Int { w1.byteCount + w2.byteCount + w3.byteCount }

    /// Adds the result into `hidden` (or writes it there when `accumulate` is false).
    public func apply(
        _ x: Tensor, addInto hidden: Tensor, accumulate: Bool = true,
        backend: any TensorBackend = CPUBackend()
    ) {
        let gate = backend.linear(x, w1)
        let up = backend.linear(x, w3)
        backend.siluMul(gate.data, up.data, count: gate.count)
        backend.linear(gate.data, rows: x.rows, weight: w2, into: hidden.data, accumulate: accumulate)
    }
}
