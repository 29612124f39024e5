/// The tensor operations a model's forward pass calls, in one place, so that another device (the GPU backend
/// of issue 17) can implement the same set. Activations are fp32 row-major `[rows, width]` buffers; weights
/// stay in their stored dtype. `CPUBackend` runs them with BLAS and the C kernels.
public protocol TensorBackend: Sendable {
    /// `y = x · Wᵀ` (+ `y` when `accumulate`) for `rows` rows, `W` stored `[out, in]` as torch `nn.Linear`.
    func linear(
        _ x: UnsafePointer<Float>, rows: Int, weight: Weight, into y: UnsafeMutablePointer<Float>,
        accumulate: Bool)
    /// The same product on the calling thread only, `x` rows `lda` apart and `y` rows `ldy` apart: the unit of
    /// work when the caller already runs many such products (one per expert) in parallel.
    func linearSerial(
        _ x: UnsafePointer<Float>, rows: Int, lda: Int, weight: Weight,
        into y: UnsafeMutablePointer<Float>, ldy: Int)
    /// `out = x · rsqrt(mean(x²) + eps) · weight` per row of `dim` values (torch `RMSNorm`, fp32).
    func rmsNorm(
        _ x: UnsafePointer<Float>, rows: Int, dim: Int, weight: UnsafePointer<Float>, eps: Float,
        into out: UnsafeMutablePointer<Float>)
    /// `gate = silu(gate) ⊙ up`, in place: SwiGLU's middle step.
    func siluMul(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int)
    /// Softmax of one row of `n`, in place.
    func softmaxRow(_ row: UnsafeMutablePointer<Float>, _ n: Int)
    /// Rows `tokens[i]` of `table` (`[vocab, dim]`, stored dtype) widened into row `i` of `out`.
    func embed(_ tokens: [Int32], table: Weight, into out: UnsafeMutablePointer<Float>)
    /// This backend with fp32 products, for the one product whose rounding would change decisions rather than
    /// values: the router gate, whose scores pick the experts (TorchTitan scores them in fp32).
    var fp32Products: any TensorBackend { get }
}

extension TensorBackend {
    public var fp32Products: any TensorBackend { self }
}

extension TensorBackend {
    /// `x` is `[…, K]`; the result `[…, N]` for `W` `[N, K]`.
    public func linear(_ x: Tensor, _ w: Weight) -> Tensor {
        var outShape = x.shape
        outShape[outShape.count - 1] = w.rows
        let y = Tensor(uninitializedShape: outShape)
        linear(x.data, rows: x.rows, weight: w, into: y.data, accumulate: false)
        return y
    }
}

/// The CPU implementation: threaded BLAS GEMMs over the weights' own dtype, AVX-512 kernels with a portable
/// fallback (Linear, Ops).
public struct CPUBackend: TensorBackend {
    /// `bf16`: products with bf16 weights round the activations to bf16 (`Linear.applyBF16Compute`); products
    /// with fp32 or fp16 weights stay fp32 either way.
    public let compute: ComputePrecision

    public init(compute: ComputePrecision = .fp32) { self.compute = compute }

    public var fp32Products: any TensorBackend { CPUBackend(compute: .fp32) }

    @inline(__always)
    public func linear(
        _ x: UnsafePointer<Float>, rows: Int, weight: Weight, into y: UnsafeMutablePointer<Float>,
        accumulate: Bool
    ) {
        if compute == .bf16, weight.dtype == .bfloat16 {
            Linear.applyBF16Compute(x, rows: rows, weight: weight, into: y, accumulate: accumulate)
            return
        }
        Linear.apply(x, rows: rows, weight: weight, into: y, accumulate: accumulate)
    }

    @inline(__always)
    public func linearSerial(
        _ x: UnsafePointer<Float>, rows: Int, lda: Int, weight: Weight,
        into y: UnsafeMutablePointer<Float>, ldy: Int
    ) {
        if compute == .bf16, weight.dtype == .bfloat16 {
            Compute.withThreads(1) { Linear.applyBF16Compute(x, rows: rows, lda: lda, weight: weight, into: y, ldy: ldy) }
            return
        }
        Linear.applyColumns(x, m: rows, lda: lda, weight, columns: 0..<weight.rows, y, ldy: ldy, accumulate: false)
    }

    @inline(__always)
    public func rmsNorm(
        _ x: UnsafePointer<Float>, rows: Int, dim: Int, weight: UnsafePointer<Float>, eps: Float,
        into out: UnsafeMutablePointer<Float>
    ) {
        Ops.rmsNorm(x, rows: rows, dim: dim, weight: weight, eps: eps, into: out)
    }

    @inline(__always)
    public func siluMul(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
        Ops.siluMul(gate, up, count: count)
    }

    @inline(__always)
    public func softmaxRow(_ row: UnsafeMutablePointer<Float>, _ n: Int) { Ops.softmaxRow(row, n) }

    public func embed(_ tokens: [Int32], table: Weight, into out: UnsafeMutablePointer<Float>) {
        let d = table.columns
        for (r, token) in tokens.enumerated() {
            table.widen(from: Int(token) * d, count: d, into: out + r * d)
        }
    }
}
