import CKernels
import Testing

@testable import MoETensor

/// Every GEMM engine behind `Linear` (issue 15) against double-accumulated references: fp32 products against
/// `x · Wᵀ`, bf16-compute products against "round x to bf16, widen, multiply by the bf16 weights". The error is
/// measured relative to the sum of the absolute products of each output (the scale fp32 accumulation error has),
/// and must stay below 1e-5. Paths the CPU cannot run say so and check the fallback the CPU runs instead.
@Suite(.serialized) struct GemmEngineTests {
    struct Problem {
        let m, n, k, lda, ldy: Int
        let x: [Float] // m rows, lda apart
        let weights: [Float] // [n, k], values already bf16-exact
        let bits: UnsafeMutablePointer<UInt16>
        let weight: Weight
        let initialY: [Float] // m rows, ldy apart

        init(m: Int, n: Int, k: Int, lda: Int? = nil, ldy: Int? = nil, seed: UInt64) throws {
            self.m = m; self.n = n; self.k = k
            self.lda = lda ?? k; self.ldy = ldy ?? n
            var rng = Numbers(seed: seed)
            x = rng.array(max(m * self.lda, 1))
            var rounded = [UInt16](repeating: 0, count: n * k)
            let raw = rng.array(n * k)
            moe_f32_to_bf16(raw, &rounded, n * k)
            weights = rounded.map { Float(bitPattern: UInt32($0) << 16) }
            bits = .allocate(capacity: max(n * k, 1))
            bits.update(from: rounded, count: n * k)
            weight = try Weight(dtype: .bfloat16, shape: [n, k], bytes: UnsafeRawBufferPointer(start: bits, count: n * k * 2), owner: nil)
            initialY = rng.array(max(m * self.ldy, 1))
        }

        func free() { bits.deallocate() }

        var xRoundedToBF16: [Float] {
            var rounded = [UInt16](repeating: 0, count: x.count)
            moe_f32_to_bf16(x, &rounded, x.count)
            return rounded.map { Float(bitPattern: UInt32($0) << 16) }
        }

        /// Worst |y - reference| / Σ|products| over the m × n outputs (columns of `y` past n, between rows, must be untouched).
        func worstError(_ y: [Float], input: [Float], accumulate: Bool) -> Double {
            var worst = 0.0
            for row in 0..<m {
                for column in 0..<ldy {
                    let got = Double(y[row * ldy + column])
                    if column >= n {
                        if got != Double(initialY[row * ldy + column]) { return .infinity }
                        continue
                    }
                    var sum = accumulate ? Double(initialY[row * ldy + column]) : 0
                    var scale = accumulate ? abs(sum) : 0
                    for i in 0..<k {
                        let product = Double(input[row * lda + i]) * Double(weights[column * k + i])
                        sum += product
                        scale += abs(product)
                    }
                    worst = max(worst, abs(got - sum) / max(scale, 1e-30))
                }
            }
            return worst
        }

        /// `body(portable, threads, accumulate)` for the run-time-dispatched and the forced-portable kernel bodies,
        /// 1–3 workers, with and without accumulation into `y`.
        static func sweep(_ body: (_ portable: Bool, _ threads: Int, _ accumulate: Bool) throws -> Void) rethrows {
            for portable in [false, true] {
                moe_kernels_force_portable(portable ? 1 : 0)
                defer { moe_kernels_force_portable(0) }
                for threads in [1, 2, 3] {
                    for accumulate in [false, true] { try body(portable, threads, accumulate) }
                }
            }
        }

        func run(_ body: (UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void) -> [Float] {
            var y = initialY
            x.withUnsafeBufferPointer { xs in y.withUnsafeMutableBufferPointer { body(xs.baseAddress!, $0.baseAddress!) } }
            return y
        }
    }

    /// (m, n, k, lda, ldy): one row, small expert buckets, prefill-sized rows (one and two oneDNN row blocks),
    /// SIMD tails, strided rows.
    static let shapes: [(Int, Int, Int, Int?, Int?)] = [
        (1, 1, 1, nil, nil), (1, 17, 33, nil, nil), (1, 300, 64, 70, 310), (2, 64, 2048, nil, nil), (3, 100, 130, 140, 101),
        (16, 257, 96, nil, nil), (37, 257, 130, 131, 260), (64, 80, 48, 50, 90), (70, 64, 15, nil, nil), (130, 160, 256, 300, 170),
    ]

    @Test(arguments: shapes)
    func bf16ComputeMatchesRoundedReference(shape: (Int, Int, Int, Int?, Int?)) throws {
        let problem = try Problem(m: shape.0, n: shape.1, k: shape.2, lda: shape.3, ldy: shape.4, seed: UInt64(shape.0 * 31 + shape.1))
        defer { problem.free() }
        let input = problem.xRoundedToBF16
        let dispatched = moe_kernels_bf16_dot() == 1 ? "AVX512_BF16 (GEMV, oneDNN bf16)" : "portable: this CPU lacks AVX512_BF16 or AVX-512"
        Problem.sweep { portable, threads, accumulate in
            let path = portable ? "forced portable (rounded x through apply)" : dispatched
            let y = Compute.withThreads(threads) {
                problem.run { x, y in
                    Linear.applyBF16Compute(
                        x, rows: problem.m, lda: problem.lda, weight: problem.weight, into: y, ldy: problem.ldy,
                        accumulate: accumulate)
                }
            }
            let error = problem.worstError(y, input: input, accumulate: accumulate)
            #expect(error < 1e-5, "\(path), \(shape), \(threads) threads, accumulate \(accumulate): relative error \(error)")
        }
    }

    @Test(arguments: shapes)
    func bf16GemvKernelMatchesRoundedReference(shape: (Int, Int, Int, Int?, Int?)) throws {
        let problem = try Problem(m: 1, n: shape.1, k: shape.2, seed: UInt64(shape.1 * 7 + shape.2))
        defer { problem.free() }
        let input = problem.xRoundedToBF16
        var xb = [UInt16](repeating: 0, count: problem.k)
        moe_f32_to_bf16(problem.x, &xb, problem.k)
        if moe_kernels_bf16_dot() == 0 { print("AVX512_BF16 GEMV: this CPU lacks AVX512_BF16; checking the portable body only") }
        for portable in [false, true] {
            moe_kernels_force_portable(portable ? 1 : 0)
            defer { moe_kernels_force_portable(0) }
            let path = portable || moe_kernels_bf16_dot() == 0 ? "portable" : "AVX512_BF16"
            for accumulate in [false, true] {
                let y = problem.run { _, y in moe_gemv_bf16_bf16(problem.bits, problem.k, problem.n, problem.k, xb, y, accumulate ? 1 : 0) }
                let error = problem.worstError(y, input: input, accumulate: accumulate)
                #expect(error < 1e-5, "\(path) \(problem.n)×\(problem.k), accumulate \(accumulate): relative error \(error)")
            }
        }
    }

    /// The one-row fp32 kernel (`moe_gemv_f32`, decode with fp32 weights on AVX-512 CPUs), on a weight whose rows
    /// are `ldw` apart, AVX-512 and portable bodies.
    @Test(arguments: shapes)
    func fp32GemvKernelMatchesReference(shape: (Int, Int, Int, Int?, Int?)) throws {
        let problem = try Problem(m: 1, n: shape.1, k: shape.2, seed: UInt64(shape.1 * 11 + shape.2))
        defer { problem.free() }
        let ldw = problem.k + (shape.3 == nil ? 0 : 5)
        var strided = [Float](repeating: .nan, count: problem.n * ldw)
        for row in 0..<problem.n {
            for column in 0..<problem.k { strided[row * ldw + column] = problem.weights[row * problem.k + column] }
        }
        for portable in [false, true] {
            moe_kernels_force_portable(portable ? 1 : 0)
            defer { moe_kernels_force_portable(0) }
            let path = portable || moe_kernels_isa() != 1 ? "portable" : "AVX-512"
            for accumulate in [false, true] {
                let y = problem.run { x, y in moe_gemv_f32(strided, ldw, problem.n, problem.k, x, y, accumulate ? 1 : 0) }
                let error = problem.worstError(y, input: problem.x, accumulate: accumulate)
                #expect(error < 1e-5, "\(path) \(problem.n)×\(problem.k) (ldw \(ldw)), accumulate \(accumulate): relative error \(error)")
            }
        }
    }

    /// fp32 weights packed in 64-row panels (`Weight.packedInPanels64`, what MoE blocks do to fp32 expert stacks
    /// on AVX-512 CPUs with oneDNN): `apply` on the packed copy — oneDNN's matmul on BA16a64b weights for several
    /// rows, `moe_gemv_f32_panels64` (AVX-512 and portable bodies) for one, the unpacking fallback otherwise —
    /// with 1–3 workers splitting the columns on whole panels.
    @Test(arguments: shapes)
    func panelPackedFP32MatchesReference(shape: (Int, Int, Int, Int?, Int?)) throws {
        let problem = try Problem(m: shape.0, n: shape.1, k: shape.2, lda: shape.3, ldy: shape.4, seed: UInt64(shape.1 * 17 + shape.0))
        defer { problem.free() }
        let packed = try #require(Weight(shape: [problem.n, problem.k], values: problem.weights).packedInPanels64())
        #expect(packed.layout == .panels64 && packed.float32Pointer == nil && packed.panels64Pointer != nil)
        Problem.sweep { portable, threads, accumulate in
            let y = Compute.withThreads(threads) {
                problem.run { x, y in
                    Linear.apply(x, rows: problem.m, lda: problem.lda, weight: packed, into: y, ldy: problem.ldy, accumulate: accumulate)
                }
            }
            let error = problem.worstError(y, input: problem.x, accumulate: accumulate)
            #expect(error < 1e-5, "packed \(shape), portable \(portable), \(threads) threads, accumulate \(accumulate): relative error \(error)")
        }
    }

    /// bf16 weights packed in 64-row panels with column pairs interleaved (what MoE blocks do to bf16 expert stacks
    /// under bf16 compute where oneDNN uses AVX512_BF16): bf16 compute — oneDNN's bf16 matmul on BA16a64b2a for
    /// several rows, `moe_gemv_bf16_bf16_panels64` for one, the rounded fallback when forced portable — and fp32
    /// compute of the packed weights (the unpacking path).
    @Test(arguments: shapes)
    func panelPackedBF16MatchesReference(shape: (Int, Int, Int, Int?, Int?)) throws {
        let problem = try Problem(m: shape.0, n: shape.1, k: shape.2, lda: shape.3, ldy: shape.4, seed: UInt64(shape.2 * 19 + shape.0))
        defer { problem.free() }
        let packed = try #require(problem.weight.packedInPanels64())
        #expect(packed.layout == .panels64 && packed.panels64BF16Pointer != nil && packed.panels64Pointer == nil)
        let rounded = problem.xRoundedToBF16
        Problem.sweep { portable, threads, accumulate in
            let y = Compute.withThreads(threads) {
                problem.run { x, y in
                    Linear.applyBF16Compute(
                        x, rows: problem.m, lda: problem.lda, weight: packed, into: y, ldy: problem.ldy, accumulate: accumulate)
                }
            }
            let error = problem.worstError(y, input: rounded, accumulate: accumulate)
            #expect(error < 1e-5, "packed bf16 compute \(shape), portable \(portable), \(threads) threads, accumulate \(accumulate): relative error \(error)")
            let fp32 = Compute.withThreads(threads) {
                problem.run { x, y in
                    Linear.apply(x, rows: problem.m, lda: problem.lda, weight: packed, into: y, ldy: problem.ldy, accumulate: accumulate)
                }
            }
            let fp32Error = problem.worstError(fp32, input: problem.x, accumulate: accumulate)
            #expect(fp32Error < 1e-5, "packed bf16, fp32 compute \(shape), portable \(portable), \(threads) threads: relative error \(fp32Error)")
        }
    }

    /// bf16 packing keeps every element (odd column count: the last pair's second half is padding).
    @Test func panelPackedBF16StackKeepsElements() throws {
        let experts = 2, rows = 70, columns = 33
        var rng = Numbers(seed: 7)
        let raw = rng.array(experts * rows * columns)
        var bits = [UInt16](repeating: 0, count: raw.count)
        moe_f32_to_bf16(raw, &bits, raw.count)
        let values = bits.map { Float(bitPattern: UInt32($0) << 16) }
        try bits.withUnsafeBytes { bytes in
            let plain = try Weight(dtype: .bfloat16, shape: [experts, rows, columns], bytes: bytes, owner: nil)
            let packed = try #require(plain.packedInPanels64())
            #expect(packed.toFloatArray() == values)
            #expect(packed.byteCount == experts * 128 * 64 * 2)
            #expect(packed.matrix(1).toFloatArray() == Array(values[(rows * columns)...]))
        }
    }

    #if canImport(CDNNL)
    /// oneDNN 2.6 runs packed weights into a strided destination (a worker's share of the output columns) on its
    /// reference kernel, about 100× slower: such primitives are refused, and `apply` stages those shares through a
    /// dense buffer instead (whose results `panelPackedFP32MatchesReference` checks with 2 and 3 workers).
    @Test func packedPrimitivesAreOnlyTheFastKernels() throws {
        guard OneDNNMatmul.isAvailable, moe_cpu_has_avx512() == 1 else {
            print("packed oneDNN primitives: no oneDNN or no AVX-512 here; nothing is packed, nothing to check")
            return
        }
        func key(ldy: Int) -> OneDNNMatmul.Key {
            OneDNNMatmul.Key(operands: .fp32, m: 64, n: 1408, k: 2048, lda: 2048, ldw: 2048, ldy: ldy, accumulate: false, threads: 1, panels64: true)
        }
        #expect(OneDNNMatmul.prepare(key(ldy: 1408)) != nil)
        #expect(OneDNNMatmul.prepare(key(ldy: 2816)) == nil)
    }
    #endif

    /// Packed sizes come from checkpoint shapes: overflowing or negative ones are refused before any allocation, and
    /// a copy larger than half of the available memory is not made (the weights then stay as they are).
    @Test func packingRefusesSizesItCannotHold() {
        #expect(Weight.checkedPanelBytes(matrices: 2, rows: 130, columns: 37, dtype: .float32) == 2 * 192 * 48 * 4)
        #expect(Weight.checkedPanelBytes(matrices: 2, rows: 130, columns: 37, dtype: .bfloat16) == 2 * 192 * 64 * 2)
        #expect(Weight.checkedPanelBytes(matrices: 1 << 40, rows: 1 << 20, columns: 1 << 20, dtype: .float32) == nil)
        #expect(Weight.checkedPanelBytes(matrices: 1, rows: Int.max, columns: 16, dtype: .float32) == nil)
        #expect(Weight.checkedPanelBytes(matrices: 1, rows: -64, columns: 16, dtype: .float32) == nil)
        #expect(!Linear.shouldPack(dtype: .float32, matrices: 1 << 40, rows: 1408, columns: 2048, compute: .fp32))
        #expect(!Linear.shouldPack(dtype: .float32, matrices: 1 << 50, rows: 1 << 20, columns: 1 << 20, compute: .fp32))
        #expect(!Linear.shouldPack(dtype: .float16, matrices: 1, rows: 1408, columns: 2048, compute: .bf16))
    }

    /// A packed stack keeps every element where row-major order says (`widen`, `toFloatArray`, `matrix(i)`), with
    /// zero padding in the partial panel, and its byte count includes that padding.
    @Test func panelPackedStackKeepsElements() throws {
        let experts = 3, rows = 130, columns = 37
        var rng = Numbers(seed: 99)
        let values = rng.array(experts * rows * columns)
        let plain = Weight(shape: [experts, rows, columns], values: values)
        let packed = try #require(plain.packedInPanels64())
        #expect(packed.toFloatArray() == values)
        #expect(packed.byteCount == experts * 192 * 48 * 4)
        for expert in 0..<experts {
            let matrix = packed.matrix(expert)
            #expect(matrix.layout == .panels64 && matrix.shape == [rows, columns])
            #expect(matrix.toFloatArray() == Array(values[(expert * rows * columns)..<((expert + 1) * rows * columns)]))
            // Padding: rows 130..<192 and columns 37..<48 of the last panel are zero.
            let panel = matrix.panels64Pointer! + 2 * 48 * 64
            #expect((0..<48).allSatisfy { c in (2..<64).allSatisfy { j in panel[c * 64 + j] == 0 } })
            #expect((37..<48).allSatisfy { c in panel[c * 64] == 0 && panel[c * 64 + 1] == 0 })
        }
        var middle = [Float](repeating: .nan, count: 100)
        packed.widen(from: rows * columns - 50, count: 100, into: &middle)
        #expect(middle == Array(values[(rows * columns - 50)..<(rows * columns + 50)]))
    }

    /// `Linear.packedForProducts` packs exactly where oneDNN's fp32 matmul would itself pack into BA16a64b.
    @Test func packingFollowsOneDNNsChoice() throws {
        let stack = Weight(shape: [2, 1408, 2048], values: [Float](repeating: 0.5, count: 2 * 1408 * 2048))
        let chosen = Linear.packedForProducts(stack)
        // oneDNN (Debian's 2.6 and later) packs fp32 weights of this expert shape into BA16a64b on every AVX-512 CPU.
        #if canImport(CDNNL)
        let expected = moe_cpu_has_avx512() == 1 && OneDNNMatmul.isAvailable
        #else
        let expected = false
        #endif
        #expect(chosen.layout == (expected ? .panels64 : .rowMajor), "AVX-512 \(moe_cpu_has_avx512() == 1)")
        if expected { #expect(chosen.toFloatArray() == stack.toFloatArray()) }
        // bf16: packed for bf16 compute where oneDNN multiplies bf16 with AVX512_BF16, never for fp32 compute.
        let bits = [UInt16](repeating: 0x3F80, count: 2 * 1408 * 2048)
        try bits.withUnsafeBytes { bytes in
            let bf16 = try Weight(dtype: .bfloat16, shape: [2, 1408, 2048], bytes: bytes, owner: nil)
            #expect(Linear.packedForProducts(bf16, compute: .fp32).layout == .rowMajor)
            #if canImport(CDNNL)
            let packs = moe_cpu_has_avx512_bf16() == 1 && OneDNNMatmul.isAvailable
            #else
            let packs = false
            #endif
            let packed = Linear.packedForProducts(bf16, compute: .bf16)
            #expect(packed.layout == (packs ? .panels64 : .rowMajor), "AVX512_BF16 \(moe_cpu_has_avx512_bf16() == 1)")
            if packs { #expect(packed.matrix(1).toFloatArray() == bf16.matrix(1).toFloatArray()) }
        }
    }

    /// fp32 `apply` (the engine it picks per shape) and oneDNN's fp32 matmul called directly.
    @Test(arguments: shapes)
    func fp32EnginesMatchReference(shape: (Int, Int, Int, Int?, Int?)) throws {
        let problem = try Problem(m: shape.0, n: shape.1, k: shape.2, lda: shape.3, ldy: shape.4, seed: UInt64(shape.2 * 13 + shape.0))
        defer { problem.free() }
        let fp32 = Weight(shape: [problem.n, problem.k], values: problem.weights)
        for threads in [1, 2] {
            for accumulate in [false, true] {
                let y = Compute.withThreads(threads) {
                    problem.run { x, y in
                        Linear.apply(x, rows: problem.m, lda: problem.lda, weight: fp32, into: y, ldy: problem.ldy, accumulate: accumulate)
                    }
                }
                let error = problem.worstError(y, input: problem.x, accumulate: accumulate)
                #expect(error < 1e-5, "Linear.apply fp32 \(shape), \(threads) threads, accumulate \(accumulate): relative error \(error)")
            }
        }
        // OpenBLAS (sgemv for one row, sgemm otherwise): the one-row engine, and every row count without oneDNN.
        for accumulate in [false, true] {
            let y = problem.run { x, y in
                Linear.gemm(
                    x, m: problem.m, k: problem.k, lda: problem.lda, fp32.float32Pointer!, n: problem.n, ldw: problem.k, y,
                    ldy: problem.ldy, beta: accumulate ? 1 : 0)
            }
            let error = problem.worstError(y, input: problem.x, accumulate: accumulate)
            #expect(error < 1e-5, "OpenBLAS fp32 \(shape), accumulate \(accumulate): relative error \(error)")
        }
        #if canImport(CDNNL)
        try #require(OneDNNMatmul.isAvailable, "oneDNN made no CPU engine")
        for threads in [1, 2] {
            for accumulate in [false, true] {
                var ran = false
                let y = problem.run { x, y in
                    ran = OneDNNMatmul.multiply(
                        .fp32, x: x, m: problem.m, lda: problem.lda, weight: fp32.base, n: problem.n, k: problem.k, into: y,
                        ldy: problem.ldy, accumulate: accumulate, threads: threads)
                }
                #expect(ran, "oneDNN fp32 refused \(shape)")
                let error = problem.worstError(y, input: problem.x, accumulate: accumulate)
                #expect(error < 1e-5, "oneDNN fp32 \(shape), \(threads) threads, accumulate \(accumulate): relative error \(error)")
            }
        }
        #endif
    }

    /// oneDNN's bf16 matmul called directly, whatever the CPU (without AVX512_BF16 oneDNN emulates the products;
    /// `applyBF16Compute` then does not pick it, but its numbers must still be right).
    @Test(arguments: shapes)
    func oneDNNBF16MatchesRoundedReference(shape: (Int, Int, Int, Int?, Int?)) throws {
        #if canImport(CDNNL)
        let problem = try Problem(m: shape.0, n: shape.1, k: shape.2, ldy: shape.4, seed: UInt64(shape.1 * 3 + shape.2))
        defer { problem.free() }
        try #require(OneDNNMatmul.isAvailable, "oneDNN made no CPU engine")
        var xb = [UInt16](repeating: 0, count: problem.x.count)
        moe_f32_to_bf16(problem.x, &xb, problem.x.count)
        for accumulate in [false, true] {
            var ran = false
            let y = problem.run { _, y in
                ran = OneDNNMatmul.multiply(
                    .bf16, x: xb, m: problem.m, lda: problem.lda, weight: problem.weight.base, n: problem.n, k: problem.k,
                    into: y, ldy: problem.ldy, accumulate: accumulate, threads: 2)
            }
            #expect(ran, "oneDNN bf16 refused \(shape)")
            let error = problem.worstError(y, input: problem.xRoundedToBF16, accumulate: accumulate)
            #expect(error < 1e-5, "oneDNN bf16 \(shape), accumulate \(accumulate): relative error \(error)")
        }
        #else
        print("oneDNN bf16: not built on this platform (oneDNN is Linux-only); applyBF16Compute's fallback is checked instead")
        #endif
    }

    @Test func bestCoreFollowsTheInstructionSets() {
        let avx512: Set<String> = ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd", "avx512_bf16"]
        #expect(OpenBLASCore.bestCore(flags: avx512) == "SkylakeX")
        #expect(OpenBLASCore.bestCore(flags: ["avx2", "fma", "avx512f"]) == "Haswell")
        #expect(OpenBLASCore.bestCore(flags: ["sse2", "avx"]) == nil)
    }

    @Test func restartOnlyWhenTheLoadedCoreIsNarrowerThanTheCPU() {
        let avx512: Set<String> = ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"]
        let avx2: Set<String> = ["avx", "avx2", "fma"]
        // Zen 4 under Debian's 0.3.21: AVX2 kernels on an AVX-512 CPU.
        #expect(OpenBLASCore.coreToRestartWith(loaded: "Zen", flags: avx512, userChoice: nil) == "SkylakeX")
        #expect(OpenBLASCore.coreToRestartWith(loaded: "Haswell", flags: avx512, userChoice: nil) == "SkylakeX")
        #expect(OpenBLASCore.coreToRestartWith(loaded: "Prescott", flags: avx512, userChoice: nil) == "SkylakeX")
        #expect(OpenBLASCore.coreToRestartWith(loaded: "Prescott", flags: avx2, userChoice: nil) == "Haswell")
        // Already AVX-512 kernels (the measured Cooperlake = SkylakeX sgemm), or as good as the CPU allows.
        #expect(OpenBLASCore.coreToRestartWith(loaded: "Cooperlake", flags: avx512, userChoice: nil) == nil)
        #expect(OpenBLASCore.coreToRestartWith(loaded: "SkylakeX", flags: avx512, userChoice: nil) == nil)
        #expect(OpenBLASCore.coreToRestartWith(loaded: "Zen", flags: avx2, userChoice: nil) == nil)
        // The user's choice stands; a core this table does not know is left alone; no AVX2 → nothing to gain.
        #expect(OpenBLASCore.coreToRestartWith(loaded: "Haswell", flags: avx512, userChoice: "Haswell") == nil)
        #expect(OpenBLASCore.coreToRestartWith(loaded: "Future9000", flags: avx512, userChoice: nil) == nil)
        #expect(OpenBLASCore.coreToRestartWith(loaded: "Prescott", flags: ["sse2"], userChoice: nil) == nil)
    }
}
