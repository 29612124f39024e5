import CKernels

extension Linear {
    /// The exact meaning of bf16 compute, `y = bf16(x) · Wᵀ` (+ `y` when accumulating) with fp32 accumulation:
    /// each row of `x` is rounded to bf16 (nearest even, as torch's `.to(torch.bfloat16)`), then the fp32 GEMM runs
    /// on the rounded rows and the widened weight. A product of two bf16 numbers is exact in fp32, so any faster
    /// kernel must match this up to the order of accumulation — what the tests of the fast path compare against.
    /// Threaded like `apply`; `W` must be stored as bf16.
    public static func applyBF16Reference(
        _ x: UnsafePointer<Float>, rows m: Int, lda: Int? = nil, weight w: Weight,
        into y: UnsafeMutablePointer<Float>, ldy: Int? = nil, accumulate: Bool = false
    ) {
        precondition(w.dtype == .bfloat16, "bf16 compute needs a bf16 weight, not \(w.dtype)")
        let k = w.columns
        let lda = lda ?? k
        if m == 0 || w.rows == 0 { return }
        let rounded = UnsafeMutablePointer<Float>.allocate(capacity: m * k)
        defer { rounded.deallocate() }
        roundRowsToBF16(x, rows: m, columns: k, lda: lda, into: rounded)
        apply(rounded, rows: m, weight: w, into: y, ldy: ldy, accumulate: accumulate)
    }

    /// `out[r, c] = fp32(bf16(x[r, c]))`, rows of `x` `lda` apart, `out` packed.
    static func roundRowsToBF16(
        _ x: UnsafePointer<Float>, rows m: Int, columns k: Int, lda: Int, into out: UnsafeMutablePointer<Float>
    ) {
        let halves = UnsafeMutablePointer<UInt16>.allocate(capacity: k)
        defer { halves.deallocate() }
        for r in 0..<m {
            moe_f32_to_bf16(x + r * lda, halves, k)
            moe_bf16_to_f32(halves, out + r * k, k)
        }
    }
}
