import CBLAS

/// Matrix products through BLAS. Row-major throughout; `W` is stored `[out, in]` as in torch `nn.Linear`.
public enum Linear {
    /// Rows of a bf16/fp16 weight widened per BLAS call: large enough to keep sgemm efficient,
    /// small enough to stay in L2 and never materialise an fp32 copy of the model.
    static let widenPanelRows = 128

    /// `y[M, N] = x[M, K] · Wᵀ` (+ `beta·y`), with `x` rows `lda` apart and `y` rows `ldy` apart.
    public static func apply(
        _ x: UnsafePointer<Float>, rows m: Int, lda: Int? = nil,
        weight w: Weight,
        into y: UnsafeMutablePointer<Float>, ldy: Int? = nil, accumulate: Bool = false
    ) {
        let n = w.rows, k = w.columns
        let lda = lda ?? k, ldy = ldy ?? n
        if m == 0 || n == 0 { return }
        let beta: Float = accumulate ? 1 : 0
        if let wp = w.float32Pointer {
            gemm(x, m: m, k: k, lda: lda, wp, n: n, ldw: k, y, ldy: ldy, beta: beta)
            return
        }
        let panelRows = min(widenPanelRows, n)
        let panel = UnsafeMutablePointer<Float>.allocate(capacity: panelRows * k)
        defer { panel.deallocate() }
        var start = 0
        while start < n {
            let rowsHere = min(panelRows, n - start)
            w.widen(from: start * k, count: rowsHere * k, into: panel)
            gemm(x, m: m, k: k, lda: lda, panel, n: rowsHere, ldw: k, y + start, ldy: ldy, beta: beta)
            start += rowsHere
        }
    }

    /// Convenience: `x` is `[..., K]`, result `[..., N]`.
    public static func apply(_ x: Tensor, _ w: Weight) -> Tensor {
        var outShape = x.shape
        outShape[outShape.count - 1] = w.rows
        let y = Tensor(shape: outShape)
        apply(x.data, rows: x.rows, weight: w, into: y.data)
        return y
    }

    /// `C[m, n] = A[m, k] · B[n, k]ᵀ + beta·C`; sgemv when m == 1 (sgemm is slow there).
    @inline(__always)
    static func gemm(
        _ a: UnsafePointer<Float>, m: Int, k: Int, lda: Int,
        _ b: UnsafePointer<Float>, n: Int, ldw: Int,
        _ c: UnsafeMutablePointer<Float>, ldy: Int, beta: Float
    ) {
        if m == 1 {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(n), Int32(k), 1, b, Int32(ldw), a, 1, beta, c, 1)
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k),
                        1, a, Int32(lda), b, Int32(ldw), beta, c, Int32(ldy))
        }
    }

    /// General row-major sgemm: `C = alpha·op(A)·op(B) + beta·C` (attention uses it on strided head views).
    public static func sgemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
        beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}
