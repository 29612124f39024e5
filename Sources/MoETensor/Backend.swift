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

    // The operations below have host implementations (`extension TensorBackend`) so that a backend written
    // against the six above still builds; it then runs these on the CPU.

    /// `C = alpha·op(A)·op(B) + beta·C` on row-major fp32 activations (`op` transposes when asked), rows `lda`,
    /// `ldb`, `ldc` apart, on the calling thread: attention's score and value products, one per (batch row,
    /// head, query block), which the caller already runs in parallel.
    func sgemmSerial(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
        beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int)
    /// `rmsNorm` of one row on the calling thread, for a row that sits inside a per-row loop (MLA's latent).
    func rmsNormRow(
        _ x: UnsafePointer<Float>, dim: Int, weight: UnsafePointer<Float>, eps: Float,
        into out: UnsafeMutablePointer<Float>)
    /// Causal softmax of a block of attention scores `[rows, width]` in place, on the calling thread. Row `i`
    /// is the query at position `firstQueryPosition + i`; column `j` the key at `firstKeyPosition + j`. A row
    /// keeps the keys at or before its position (and, with a `window`, the last `window` of them): softmax over
    /// those, with `sink` as one more logit of the normaliser that weights no key (attention sinks), and
    /// zeros elsewhere.
    func causalSoftmax(
        _ scores: UnsafeMutablePointer<Float>, rows: Int, width: Int, firstQueryPosition: Int,
        firstKeyPosition: Int, window: Int?, sink: Float?)
    /// RoPE in place: rotates `vectors` vectors of `2·pairs` values, `stride` apart from `x`, by one position's
    /// angles (`cos[i]`, `sin[i]` per pair), pairing elements as `pairing` says.
    func rope(
        _ x: UnsafeMutablePointer<Float>, vectors: Int, stride: Int, pairs: Int, pairing: RotaryPairing,
        cos: UnsafePointer<Float>, sin: UnsafePointer<Float>)
    /// `y[i] = 1/(1 + e^(−x[i]))` for `count` values (a sigmoid router's scores).
    func sigmoid(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int)
    /// Indices of the `k` largest of `values[0..<n]`, largest first, ties to the lower index (router selection).
    func topK(_ values: UnsafePointer<Float>, _ n: Int, _ k: Int, into indices: UnsafeMutablePointer<Int32>)
    /// `x[r, c] += bias[c]` for `rows` rows of `width` (projection and expert biases, a router's gate bias).
    func addBias(_ bias: UnsafePointer<Float>, to x: UnsafeMutablePointer<Float>, rows: Int, width: Int)
    /// `y += x` over `count` values (a residual add).
    func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int)
    /// gpt-oss's clamped SwiGLU (`ClampedSwiGLU`): `y[r, j]` from the interleaved gate `h[r, 2j]` and linear
    /// `h[r, 2j+1]`, for `rows × hidden` outputs.
    func clampedSwiGLU(
        _ h: UnsafePointer<Float>, rows: Int, hidden: Int, alpha: Float, limit: Float,
        into y: UnsafeMutablePointer<Float>)
    /// This backend with fp32 products, for the one product whose rounding would change decisions rather than
    /// values: the router gate, whose scores pick the experts (TorchTitan scores them in fp32).
    var fp32Products: any TensorBackend { get }
}

/// Which elements of a head form a rotated RoPE pair.
public enum RotaryPairing: Sendable {
    /// `(x[i], x[i + d/2])` — `CosSinRoPE` (rotate-half), Qwen3, gpt-oss, HF Llama-style models.
    case rotateHalf
    /// `(x[2i], x[2i+1])` — DeepSeek's complex-number layout.
    case interleaved
}

extension TensorBackend {
    public var fp32Products: any TensorBackend { self }

    public func sgemmSerial(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
        beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        CPUBackend().sgemmSerial(
            transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a, lda: lda, b, ldb: ldb, beta: beta, c, ldc: ldc)
    }

    public func rmsNormRow(
        _ x: UnsafePointer<Float>, dim: Int, weight: UnsafePointer<Float>, eps: Float,
        into out: UnsafeMutablePointer<Float>
    ) {
        CPUBackend().rmsNormRow(x, dim: dim, weight: weight, eps: eps, into: out)
    }

    public func causalSoftmax(
        _ scores: UnsafeMutablePointer<Float>, rows: Int, width: Int, firstQueryPosition: Int,
        firstKeyPosition: Int, window: Int?, sink: Float?
    ) {
        CPUBackend().causalSoftmax(
            scores, rows: rows, width: width, firstQueryPosition: firstQueryPosition,
            firstKeyPosition: firstKeyPosition, window: window, sink: sink)
    }

    public func rope(
        _ x: UnsafeMutablePointer<Float>, vectors: Int, stride: Int, pairs: Int, pairing: RotaryPairing,
        cos: UnsafePointer<Float>, sin: UnsafePointer<Float>
    ) {
        CPUBackend().rope(x, vectors: vectors, stride: stride, pairs: pairs, pairing: pairing, cos: cos, sin: sin)
    }

    public func sigmoid(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
        CPUBackend().sigmoid(x, into: y, count: count)
    }

    public func topK(_ values: UnsafePointer<Float>, _ n: Int, _ k: Int, into indices: UnsafeMutablePointer<Int32>) {
        CPUBackend().topK(values, n, k, into: indices)
    }

    public func addBias(_ bias: UnsafePointer<Float>, to x: UnsafeMutablePointer<Float>, rows: Int, width: Int) {
        CPUBackend().addBias(bias, to: x, rows: rows, width: width)
    }

    public func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
        CPUBackend().add(x, into: y, count: count)
    }

    public func clampedSwiGLU(
        _ h: UnsafePointer<Float>, rows: Int, hidden: Int, alpha: Float, limit: Float,
        into y: UnsafeMutablePointer<Float>
    ) {
        CPUBackend().clampedSwiGLU(h, rows: rows, hidden: hidden, alpha: alpha, limit: limit, into: y)
    }
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

    @inline(__always)
    public func sgemmSerial(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
        beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        Linear.sgemmSerial(
            transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a, lda: lda, b, ldb: ldb, beta: beta, c, ldc: ldc)
    }

    @inline(__always)
    public func rmsNormRow(
        _ x: UnsafePointer<Float>, dim: Int, weight: UnsafePointer<Float>, eps: Float,
        into out: UnsafeMutablePointer<Float>
    ) {
        Ops.rmsNormRow(x, weight: weight, eps: eps, into: out, dim: dim)
    }

    @inline(__always)
    public func causalSoftmax(
        _ scores: UnsafeMutablePointer<Float>, rows: Int, width: Int, firstQueryPosition: Int,
        firstKeyPosition: Int, window: Int?, sink: Float?
    ) {
        Ops.causalSoftmax(
            scores, rows: rows, width: width, firstQueryPosition: firstQueryPosition,
            firstKeyPosition: firstKeyPosition, window: window, sink: sink)
    }

    @inline(__always)
    public func rope(
        _ x: UnsafeMutablePointer<Float>, vectors: Int, stride: Int, pairs: Int, pairing: RotaryPairing,
        cos: UnsafePointer<Float>, sin: UnsafePointer<Float>
    ) {
        for v in 0..<vectors {
            switch pairing {
            case .interleaved: Ops.ropeInterleaved(x + v * stride, pairs: pairs, cos: cos, sin: sin)
            case .rotateHalf: Ops.ropeRotateHalf(x + v * stride, pairs: pairs, cos: cos, sin: sin)
            }
        }
    }

    @inline(__always)
    public func sigmoid(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
        Ops.sigmoid(x, into: y, count: count)
    }

    @inline(__always)
    public func topK(_ values: UnsafePointer<Float>, _ n: Int, _ k: Int, into indices: UnsafeMutablePointer<Int32>) {
        Ops.topK(values, n, k, into: indices)
    }

    @inline(__always)
    public func addBias(_ bias: UnsafePointer<Float>, to x: UnsafeMutablePointer<Float>, rows: Int, width: Int) {
        Ops.addBias(bias, to: x, rows: rows, width: width)
    }

    @inline(__always)
    public func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
        Ops.add(x, into: y, count: count)
    }

    @inline(__always)
    public func clampedSwiGLU(
        _ h: UnsafePointer<Float>, rows: Int, hidden: Int, alpha: Float, limit: Float,
        into y: UnsafeMutablePointer<Float>
    ) {
        ClampedSwiGLU.activate(h, rows: rows, hidden: hidden, alpha: alpha, limit: limit, into: y)
    }
}
