extension Linear {
    /// `y[M, N] = bf16(x)[M, K] · Wᵀ` with fp32 accumulation (+ `y` when accumulating), `W` bf16 `[N, K]`,
    /// `x` rows `lda` apart, `y` rows `ldy` apart; threaded like `apply`.
    // Until the fast kernels land (branch h3-gemm), the exact reference stands in for them.
    public static func applyBF16Compute(
        _ x: UnsafePointer<Float>, rows m: Int, lda: Int? = nil, weight w: Weight,
        into y: UnsafeMutablePointer<Float>, ldy: Int? = nil, accumulate: Bool = false
    ) {
        applyBF16Reference(x, rows: m, lda: lda, weight: w, into: y, ldy: ldy, accumulate: accumulate)
    }
}
