import CKernels

#if canImport(CDNNL)
import CDNNL
#endif

extension Linear {
    /// `y[M, N] = bf16(x)[M, K] · Wᵀ` with fp32 accumulation (+ `y` when accumulating), `W` bf16 `[N, K]`,
    /// `x` rows `lda` apart, `y` rows `ldy` apart; threaded like `apply`.
    ///
    /// Engines, by shape class (measured: docs/PERFORMANCE.md, "GEMM engine choice"): one row multiplies bf16
    /// pairs with AVX512_BF16 (`moe_gemv_bf16_bf16`, 1.25× the widen-and-FMA GEMV, 2.7× fp32 sgemv at 1×1408×2048,
    /// columns split across the workers); several rows go to oneDNN's bf16 matmul where the CPU has AVX512_BF16
    /// (1.4–2.3× the fp32 engines at 2–2048 rows; without AVX512_BF16 oneDNN emulates the products). Everywhere else `x` is rounded to bf16, widened back, and multiplied by `apply`,
    /// which gives the same products (a product of two bf16 numbers is exact in fp32). Weights stored as fp32 or
    /// fp16 keep their precision on that path: only `x` is rounded.
    public static func applyBF16Compute(
        _ x: UnsafePointer<Float>, rows m: Int, lda: Int? = nil, weight w: Weight,
        into y: UnsafeMutablePointer<Float>, ldy: Int? = nil, accumulate: Bool = false
    ) {
        let n = w.rows, k = w.columns
        let lda = lda ?? k, ldy = ldy ?? n
        if m == 0 || n == 0 { return }
        _ = Compute.blasPinned
        let bf16Products = w.dtype == .bfloat16 && moe_kernels_bf16_dot() == 1
        if bf16Products, m == 1 {
            guard let xb = roundedRowsBF16(x, m: 1, lda: lda, k: k) else { return applyRoundedFallback(x, m, lda, w, y, ldy, accumulate) }
            gemvBF16(xb, weight: w, into: y, accumulate: accumulate)
            return
        }
        #if canImport(CDNNL)
        if bf16Products, OneDNNMatmul.isAvailable, let xb = roundedRowsBF16(x, m: m, lda: lda, k: k),
            multiplyOneDNN(xb, m: m, weight: w, into: y, ldy: ldy, accumulate: accumulate)
        {
            return
        }
        #endif
        applyRoundedFallback(x, m, lda, w, y, ldy, accumulate)
    }

    #if canImport(CDNNL)
    /// Row blocks of a oneDNN product: a multiple of `oneDNNRowQuantum` rows, then the rest. A primitive is made
    /// per distinct shape, and prompt lengths are many: this bounds the shapes a long evaluation creates to
    /// (longest prompt / quantum) + quantum per weight instead of one per prompt length.
    static let oneDNNRowQuantum = 64

    static func oneDNNRowBlocks(_ m: Int) -> [Range<Int>] {
        let whole = m / oneDNNRowQuantum * oneDNNRowQuantum
        return [0..<whole, whole..<m].filter { !$0.isEmpty }
    }

    /// oneDNN's bf16 matmul, run the way OpenBLAS is: each worker a single-threaded primitive on its share of the
    /// output columns, so `Compute.threads` stays the whole thread budget and no OpenMP team waits between calls.
    /// False (nothing written) when a primitive cannot be made.
    static func multiplyOneDNN(
        _ xb: UnsafePointer<UInt16>, m: Int, weight w: Weight, into y: UnsafeMutablePointer<Float>, ldy: Int, accumulate: Bool
    ) -> Bool {
        let n = w.rows, k = w.columns
        // Panel-packed weights (`Weight.Layout.panels64`) split on whole panels; a share starts `depth · 64`
        // elements further per panel.
        let packed = w.layout == .panels64
        let alignment = packed ? 64 : 16
        let depth = Weight.panelDepth(columns: k, dtype: .bfloat16)
        let workers = Compute.workers(for: n, minChunk: max(minColumnsPerWorker, alignment))
        let blocks = oneDNNRowBlocks(m)
        var primitives: [[OneDNNMatmul.Primitive]] = []
        for part in 0..<workers {
            let columns = columnShare(part, of: workers, n, alignment: alignment)
            var forPart: [OneDNNMatmul.Primitive] = []
            let output = OneDNNDestination.primitiveOutput(n: columns.count, ldy: ldy, accumulate: accumulate, packedWeights: packed)
            for block in blocks {
                let key = OneDNNMatmul.Key(
                    operands: .bf16, m: block.count, n: columns.count, k: k, lda: k, ldw: k, ldy: output.ldy,
                    accumulate: output.accumulate, threads: 1, panels64: packed)
                guard let primitive = OneDNNMatmul.prepare(key) else { return false }
                forPart.append(primitive)
            }
            primitives.append(forPart)
        }
        let weights = w.base.assumingMemoryBound(to: UInt16.self)
        let run:
            @Sendable (Int, [OneDNNMatmul.Primitive], UnsafePointer<UInt16>, UnsafePointer<UInt16>, UnsafeMutablePointer<Float>) ->
                Void = { part, forPart, xb, weights, y in
                    let columns = columnShare(part, of: workers, n, alignment: alignment)
                    let first = packed ? columns.lowerBound / 64 * depth * 64 : columns.lowerBound * k
                    guard
                        let target = OneDNNDestination(
                            y + columns.lowerBound, m: m, n: columns.count, ldy: ldy, accumulate: accumulate, packedWeights: packed)
                    else { fatalError("out of memory for a \(m)×\(columns.count) product buffer") }
                    defer { target.finish() }
                    for (block, primitive) in zip(blocks, forPart) {
                        let status = OneDNNMatmul.execute(
                            primitive, threads: 1, x: xb + block.lowerBound * k, weight: weights + first,
                            into: target.pointer + block.lowerBound * target.ldy)
                        // As in `OneDNNMatmul.multiply`: `y` may be half written, so no other path can take over.
                        if status != dnnl_success {
                            fatalError(
                                "oneDNN could not run a prepared \(block.count)×\(columns.count)×\(k) bf16 matmul (status \(status.rawValue))"
                            )
                        }
                    }
                }
        if workers <= 1 {
            run(0, primitives[0], xb, weights, y)
            return true
        }
        let xs = SendableConstPointer(xb), ws = SendableConstPointer(weights), ys = SendablePointer(y)
        let shared = primitives
        Compute.parallelRanges(workers) { _, parts in
            for part in parts { run(part, shared[part], xs.pointer, ws.pointer, ys.pointer) }
        }
        return true
    }
    #endif

    /// `x`'s `m` rows rounded to bf16, packed `k` apart in the calling thread's scratch slot 4.
    static func roundedRowsBF16(_ x: UnsafePointer<Float>, m: Int, lda: Int, k: Int) -> UnsafePointer<UInt16>? {
        let (elements, overflow) = m.multipliedReportingOverflow(by: k)
        guard !overflow, let scratch = moe_thread_scratch(4, (elements + 1) / 2) else { return nil }
        let packed = UnsafeMutableRawPointer(scratch).assumingMemoryBound(to: UInt16.self)
        for row in 0..<m { moe_f32_to_bf16(x + row * lda, packed + row * k, k) }
        return UnsafePointer(packed)
    }

    /// One row of bf16 × bf16 products, output columns split across the workers (memory-bound: split finely).
    static func gemvBF16(_ xb: UnsafePointer<UInt16>, weight w: Weight, into y: UnsafeMutablePointer<Float>, accumulate: Bool) {
        let n = w.rows, k = w.columns
        let weights = w.base.assumingMemoryBound(to: UInt16.self)
        let packed = w.layout == .panels64
        let alignment = packed ? 64 : 16
        let depth = Weight.panelDepth(columns: k, dtype: .bfloat16)
        let rows: @Sendable (Range<Int>, UnsafePointer<UInt16>, UnsafePointer<UInt16>, UnsafeMutablePointer<Float>) -> Void = {
            columns, weights, xb, y in
            if packed {
                moe_gemv_bf16_bf16_panels64(
                    weights + columns.lowerBound / 64 * depth * 64, depth, columns.count, k, xb, y + columns.lowerBound,
                    accumulate ? 1 : 0)
            } else {
                moe_gemv_bf16_bf16(
                    weights + columns.lowerBound * k, k, columns.count, k, xb, y + columns.lowerBound, accumulate ? 1 : 0)
            }
        }
        let workers = Compute.workers(for: n, minChunk: alignment)
        if workers <= 1 {
            rows(0..<n, weights, xb, y)
            return
        }
        let xs = SendableConstPointer(xb), ys = SendablePointer(y), ws = SendableConstPointer(weights)
        Compute.parallelRanges(workers) { _, parts in
            for part in parts {
                let columns = columnShare(part, of: workers, n, alignment: alignment)
                if columns.isEmpty { continue }
                rows(columns, ws.pointer, xs.pointer, ys.pointer)
            }
        }
    }

    /// `apply` on `x` rounded to bf16 and widened back (scratch slot 4, fp32).
    static func applyRoundedFallback(
        _ x: UnsafePointer<Float>, _ m: Int, _ lda: Int, _ w: Weight, _ y: UnsafeMutablePointer<Float>, _ ldy: Int,
        _ accumulate: Bool
    ) {
        let k = w.columns
        let (elements, overflow) = m.multipliedReportingOverflow(by: k)
        guard !overflow, let rounded = moe_thread_scratch(4, elements) else {
            fatalError("out of memory for \(m)×\(k) bf16-rounded activations")
        }
        let bits = UnsafeMutableRawPointer(rounded).assumingMemoryBound(to: UInt16.self)
        for row in 0..<m {
            // Round into the front half of the row's own fp32 slot, then widen back to the right, last to first.
            let rowBits = bits + row * k * 2
            moe_f32_to_bf16(x + row * lda, rowBits, k)
            var column = k - 1
            while column >= 0 {
                (rounded + row * k + column).pointee = Float(bitPattern: UInt32(rowBits[column]) << 16)
                column -= 1
            }
        }
        apply(UnsafePointer(rounded), rows: m, lda: k, weight: w, into: y, ldy: ldy, accumulate: accumulate)
    }
}
