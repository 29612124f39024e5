import CBLAS
import CKernels
import MoECore

#if canImport(CDNNL)
import CDNNL
#endif

/// Matrix products. Row-major throughout; `W` is stored `[out, in]` as in torch `nn.Linear`.
/// fp32 weights: several rows go to oneDNN's fp32 matmul (OpenBLAS's sgemm where oneDNN is absent), one row to
/// `moe_gemv_f32` (OpenBLAS's sgemv without AVX-512), each single-threaded on a worker's share of the output
/// columns. bf16/fp16 weights are widened per panel into a per-thread buffer (never an fp32 copy of the model),
/// and a single row (decode) multiplies bf16 weights directly with a fused widen-and-FMA kernel.
public enum Linear {
    /// Rows of a bf16/fp16 weight widened per sgemm call: large enough to keep sgemm efficient,
    /// small enough to stay in L2.
    static let widenPanelRows = 128
    /// Output columns below which a worker's share is not worth a separate sgemm call.
    static let minColumnsPerWorker = 64

    /// `y[M, N] = x[M, K] · Wᵀ` (+ `y` when accumulating), with `x` rows `lda` apart and `y` rows `ldy` apart.
    /// Splits the output columns across `Compute.threads` workers (serially inside a parallel loop).
    public static func apply(
        _ x: UnsafePointer<Float>, rows m: Int, lda: Int? = nil,
        weight w: Weight,
        into y: UnsafeMutablePointer<Float>, ldy: Int? = nil, accumulate: Bool = false
    ) {
        let n = w.rows, k = w.columns
        let lda = lda ?? k, ldy = ldy ?? n
        if m == 0 || n == 0 { return }
        _ = Compute.blasPinned
        // One row reads every weight once: memory-bound, so split finely; many rows: coarse column blocks.
        // Panel-packed weights split on whole panels.
        let alignment = w.layout == .panels64 ? 64 : 16
        let granularity = m == 1 ? alignment : minColumnsPerWorker
        let workers = Compute.workers(for: n, minChunk: granularity)
        if workers <= 1 {
            applyColumns(x, m: m, lda: lda, w, columns: 0..<n, y, ldy: ldy, accumulate: accumulate)
            return
        }
        let xs = SendableConstPointer(x), ys = SendablePointer(y)
        Compute.parallelRanges(workers) { _, parts in
            for part in parts {
                let columns = columnShare(part, of: workers, n, alignment: alignment)
                applyColumns(xs.pointer, m: m, lda: lda, w, columns: columns, ys.pointer, ldy: ldy, accumulate: accumulate)
            }
        }
    }

    /// Output columns `columns` of `x · Wᵀ` on the calling thread.
    public static func applyColumns(
        _ x: UnsafePointer<Float>, m: Int, lda: Int, _ w: Weight, columns: Range<Int>,
        _ y: UnsafeMutablePointer<Float>, ldy: Int, accumulate: Bool
    ) {
        let k = w.columns
        if columns.isEmpty || m == 0 { return }
        let beta: Float = accumulate ? 1 : 0
        if let panels = w.panels64Pointer {
            precondition(columns.lowerBound % 64 == 0, "a share of panel-packed weights must start on a panel")
            let depth = Weight.panelDepth(columns: k, dtype: .float32)
            let first = panels + columns.lowerBound / 64 * depth * 64
            if m == 1 {
                moe_gemv_f32_panels64(first, depth, columns.count, k, x, y + columns.lowerBound, accumulate ? 1 : 0)
                return
            }
            #if canImport(CDNNL)
            if multiplyOneDNNFP32(
                x, m: m, lda: lda, weight: first, packed: true, n: columns.count, k: k,
                into: y + columns.lowerBound, ldy: ldy, accumulate: accumulate)
            {
                return
            }
            #endif
            // No packed matmul here: unpack panel by panel below (`widen` reads any layout).
        } else if let wp = w.float32Pointer {
            #if canImport(CDNNL)
            // oneDNN's fp32 matmul measured 1.1–1.3× OpenBLAS's sgemm at 512–2048 rows and 1.3–2.5× at 2–128 rows
            // (expert buckets) on a quiet machine; sgemv-like one-row products stay on `gemm` (docs/PERFORMANCE.md,
            // "GEMM engine choice").
            if m >= 2,
                multiplyOneDNNFP32(
                    x, m: m, lda: lda, weight: wp + columns.lowerBound * k, packed: false, n: columns.count, k: k,
                    into: y + columns.lowerBound, ldy: ldy, accumulate: accumulate)
            {
                return
            }
            #endif
            gemm(
                x, m: m, k: k, lda: lda, wp + columns.lowerBound * k, n: columns.count, ldw: k,
                y + columns.lowerBound, ldy: ldy, beta: beta)
            return
        }
        if m == 1, w.dtype == .bfloat16, w.layout == .rowMajor {
            moe_gemv_bf16(
                w.base.assumingMemoryBound(to: UInt16.self) + columns.lowerBound * k, k, columns.count, k,
                x, y + columns.lowerBound, accumulate ? 1 : 0)
            return
        }
        let panelRows = min(widenPanelRows, columns.count)
        guard let panel = moe_thread_scratch(0, panelRows * k) else {
            fatalError("out of memory for a \(panelRows)×\(k) weight panel")
        }
        var start = columns.lowerBound
        while start < columns.upperBound {
            let rowsHere = min(panelRows, columns.upperBound - start)
            w.widen(from: start * k, count: rowsHere * k, into: panel)
            gemm(x, m: m, k: k, lda: lda, panel, n: rowsHere, ldw: k, y + start, ldy: ldy, beta: beta)
            start += rowsHere
        }
    }

    #if canImport(CDNNL)
    /// `y = x · Wᵀ` (+ `y`) for fp32 `W` `[n, k]` (row-major, or in 64-row panels when `packed`) on the calling
    /// thread through oneDNN, in the row blocks of `oneDNNRowBlocks` (a primitive per block shape). False, with
    /// nothing written, when a primitive cannot be made.
    static func multiplyOneDNNFP32(
        _ x: UnsafePointer<Float>, m: Int, lda: Int, weight: UnsafePointer<Float>, packed: Bool, n: Int, k: Int,
        into y: UnsafeMutablePointer<Float>, ldy: Int, accumulate: Bool
    ) -> Bool {
        let blocks = oneDNNRowBlocks(m)
        guard let target = OneDNNDestination(y, m: m, n: n, ldy: ldy, accumulate: accumulate, packedWeights: packed) else {
            return false
        }
        var primitives: [OneDNNMatmul.Primitive] = []
        primitives.reserveCapacity(blocks.count)
        for block in blocks {
            let key = OneDNNMatmul.Key(
                operands: .fp32, m: block.count, n: n, k: k, lda: lda, ldw: k, ldy: target.ldy, accumulate: target.accumulate,
                threads: 1, panels64: packed)
            guard let primitive = OneDNNMatmul.prepare(key) else { return false }
            primitives.append(primitive)
        }
        for (block, primitive) in zip(blocks, primitives) {
            let status = OneDNNMatmul.execute(
                primitive, threads: 1, x: x + block.lowerBound * lda, weight: weight,
                into: target.pointer + block.lowerBound * target.ldy)
            // `y` may be half written, so no other path can take over (as in `OneDNNMatmul.multiply`).
            if status != dnnl_success {
                fatalError("oneDNN could not run a prepared \(block.count)×\(n)×\(k) fp32 matmul (status \(status.rawValue))")
            }
        }
        target.finish()
        return true
    }

    /// Where a oneDNN product writes. oneDNN 2.6's matmul on panel-packed weights takes only a dense destination
    /// (rows exactly `n` apart): given a worker's share of wider output rows it picks its reference kernel, about
    /// 100× slower. Such a product is written to the calling thread's scratch slot 0 and then copied (or added)
    /// into `y`; every other product writes `y` directly.
    struct OneDNNDestination {
        let pointer: UnsafeMutablePointer<Float>
        let ldy: Int
        let accumulate: Bool
        private let y: UnsafeMutablePointer<Float>, m: Int, n: Int, finalLdy: Int, finalAccumulate: Bool, staged: Bool

        init?(_ y: UnsafeMutablePointer<Float>, m: Int, n: Int, ldy: Int, accumulate: Bool, packedWeights: Bool) {
            self.y = y; self.m = m; self.n = n; finalLdy = ldy; finalAccumulate = accumulate
            staged = packedWeights && ldy != n
            (self.ldy, self.accumulate) = Self.primitiveOutput(n: n, ldy: ldy, accumulate: accumulate, packedWeights: packedWeights)
            if staged {
                let (elements, overflow) = m.multipliedReportingOverflow(by: n)
                guard !overflow, let scratch = moe_thread_scratch(0, elements) else { return nil }
                pointer = scratch
            } else {
                pointer = y
            }
        }

        /// The output row stride and accumulation a primitive is made for, to write `n` columns of rows `ldy` apart
        /// (the same decision as `init`, for callers that make primitives before a destination exists).
        static func primitiveOutput(n: Int, ldy: Int, accumulate: Bool, packedWeights: Bool) -> (ldy: Int, accumulate: Bool) {
            packedWeights && ldy != n ? (n, false) : (ldy, accumulate)
        }

        /// Copies (adds) a staged result into `y`.
        func finish() {
            guard staged else { return }
            for row in 0..<m {
                let from = pointer + row * n, to = y + row * finalLdy
                if finalAccumulate {
                    for column in 0..<n { to[column] += from[column] }
                } else {
                    to.update(from: from, count: n)
                }
            }
        }
    }
    #endif

    /// `w` in the layout its products run fastest from on this CPU: row-major matrices go into 64-row panels when
    /// oneDNN's matmul would pack them that way on every call (fp32 on AVX-512). For weights multiplied by many rows
    /// at a time (experts' buckets, prefill projections): 1.17–1.42× at 8–64 rows on expert shapes, 1.02–1.06× at 512,
    /// none lost at one row (`moe_gemv_f32_panels64`; docs/PERFORMANCE.md, "Third pass"). It costs a copy at load.
    /// Anything else comes back as it is, and so does a weight whose packed copy would take more than half of the
    /// memory the system has available (a checkpoint larger than memory still runs from its mapping).
    /// The source's pages are handed back after packing (`Weight.releasePages`): a mapped checkpoint's pages would
    /// otherwise stay resident beside the copy.
    ///
    /// bf16 weights are packed only for bf16 compute (`compute`), whose products (oneDNN bf16 matmul,
    /// `moe_gemv_bf16_bf16_panels64`) read the panels; fp32 compute of bf16 weights widens row-major panels.
    public static func packedForProducts(_ w: Weight, compute: ComputePrecision = .fp32) -> Weight {
        guard w.layout == .rowMajor,
            shouldPack(dtype: w.dtype, matrices: w.matrixCount, rows: w.matrixRows, columns: w.columns, compute: compute),
            let packed = w.packedInPanels64()
        else { return w }
        Weight.releasePages(w.base, byteCount: w.byteCount)
        return packed
    }

    /// The stack of `parts` (one tensor per expert, each `rows × columns` of `dtype`) packed as
    /// `packedForProducts` would pack their stack, without the stacked copy; nil where that would not pack them.
    public static func packedForProducts(
        parts: [UnsafeRawBufferPointer], dtype: DType, rows: Int, columns: Int, compute: ComputePrecision
    ) -> Weight? {
        guard shouldPack(dtype: dtype, matrices: parts.count, rows: rows, columns: columns, compute: compute),
            let packed = Weight.packedInPanels64(parts: parts, dtype: dtype, rows: rows, columns: columns)
        else { return nil }
        for part in parts where part.count > 0 { Weight.releasePages(part.baseAddress!, byteCount: part.count) }
        return packed
    }

    /// Whether `packedForProducts` packs a stack of `matrices` matrices `rows × columns` of `dtype`.
    static func shouldPack(dtype: DType, matrices: Int, rows: Int, columns: Int, compute: ComputePrecision) -> Bool {
        #if canImport(CDNNL)
        let operands: OneDNNMatmul.Operands
        switch dtype {
        // The CPU's own instruction sets, not the bodies a test may have forced: the layout is chosen once, at
        // load, and every body (portable ones included) reads it.
        case .float32 where moe_cpu_has_avx512() == 1: operands = .fp32
        case .bfloat16 where compute == .bf16 && moe_cpu_has_avx512_bf16() == 1: operands = .bf16
        default: return false
        }
        guard OneDNNMatmul.isAvailable, OneDNNMatmul.prefersPanels64(operands, n: rows, k: columns) else { return false }
        guard let packedBytes = Weight.checkedPanelBytes(matrices: matrices, rows: rows, columns: columns, dtype: dtype),
            let available = ProcessMemory.availableSystemBytes()
        else { return false }
        return packedBytes <= available / 2
        #else
        return false
        #endif
    }

    /// Convenience: `x` is `[..., K]`, result `[..., N]`.
    public static func apply(_ x: Tensor, _ w: Weight) -> Tensor {
        var outShape = x.shape
        outShape[outShape.count - 1] = w.rows
        let y = Tensor(uninitializedShape: outShape)
        apply(x.data, rows: x.rows, weight: w, into: y.data)
        return y
    }

    /// Whether one-row fp32 products use `moe_gemv_f32` (AVX-512: it streams each weight row front to back and
    /// measured 1.2–1.3× OpenBLAS's sgemv on decode shapes; docs/PERFORMANCE.md, "Decode GEMV") or sgemv.
    static let ownGEMVFP32 = moe_cpu_has_avx512() == 1

    /// `C[m, n] = A[m, k] · B[n, k]ᵀ + beta·C` (beta 0 or 1); a GEMV when m == 1 (sgemm is slow there).
    @inline(__always)
    static func gemm(
        _ a: UnsafePointer<Float>, m: Int, k: Int, lda: Int,
        _ b: UnsafePointer<Float>, n: Int, ldw: Int,
        _ c: UnsafeMutablePointer<Float>, ldy: Int, beta: Float
    ) {
        if m == 1, ownGEMVFP32 {
            moe_gemv_f32(b, ldw, n, k, a, c, beta == 0 ? 0 : 1)
        } else if m == 1 {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(n), Int32(k), 1, b, Int32(ldw), a, 1, beta, c, 1)
        } else {
            cblas_sgemm(
                CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k),
                1, a, Int32(lda), b, Int32(ldw), beta, c, Int32(ldy))
        }
    }

    /// General row-major sgemm `C = alpha·op(A)·op(B) + beta·C`, output columns split across the workers.
    public static func sgemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
        beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        _ = Compute.blasPinned
        let workers = Compute.workers(for: n, minChunk: minColumnsPerWorker)
        if workers <= 1 {
            sgemmSerial(
                transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a, lda: lda, b, ldb: ldb,
                beta: beta, c, ldc: ldc)
            return
        }
        let ap = SendableConstPointer(a), bp = SendableConstPointer(b), cp = SendablePointer(c)
        Compute.parallelRanges(workers) { _, parts in
            for part in parts {
                let columns = columnShare(part, of: workers, n)
                let lo = columns.lowerBound
                sgemmSerial(
                    transA: transA, transB: transB, m: m, n: columns.count, k: k, alpha: alpha, ap.pointer, lda: lda,
                    bp.pointer + (transB ? lo * ldb : lo), ldb: ldb, beta: beta, cp.pointer + lo, ldc: ldc)
            }
        }
    }

    /// Part `part` of `parts` of 0..<n, with inner boundaries on multiples of `alignment` (whole SIMD tiles, or
    /// whole panels of packed weights).
    static func columnShare(_ part: Int, of parts: Int, _ n: Int, alignment: Int = 16) -> Range<Int> {
        let lo = part == 0 ? 0 : (n * part / parts) / alignment * alignment
        let hi = part == parts - 1 ? n : (n * (part + 1) / parts) / alignment * alignment
        return lo..<max(lo, hi)
    }

    /// Row-major sgemm on the calling thread (for use inside parallel loops, e.g. per attention head).
    @inline(__always)
    public static func sgemmSerial(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int,
        beta: Float, _ c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        cblas_sgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}
