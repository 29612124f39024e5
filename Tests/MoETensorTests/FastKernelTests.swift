import CKernels
import Foundation
import Testing

@testable import MoETensor

/// The AVX-512 bodies and the portable C bodies of the row kernels, each checked against plain Double
/// loops (`Reference`) on shapes with SIMD tails, and the multi-threaded GEMM splits against single calls.
/// Tests that change the thread count or force the portable kernels are serialized.
@Suite(.serialized) struct FastKernelTests {
    /// Runs `body` once with run-time dispatch (AVX-512 where the CPU has it) and once on the portable bodies.
    func bothPaths(_ body: (String) throws -> Void) rethrows {
        try body(moe_kernels_isa() == 1 ? "avx512" : "portable")
        moe_kernels_force_portable(1)
        defer { moe_kernels_force_portable(0) }
        try body("portable")
    }

    func bf16Weight(_ values: [Float], shape: [Int]) throws -> (Weight, [Float], UnsafeMutablePointer<UInt16>) {
        var bits = [UInt16](repeating: 0, count: values.count)
        moe_f32_to_bf16(values, &bits, values.count)
        let storage = UnsafeMutablePointer<UInt16>.allocate(capacity: bits.count)
        storage.update(from: bits, count: bits.count)
        let weight = try Weight(
            dtype: .bfloat16, shape: shape,
            bytes: UnsafeRawBufferPointer(start: storage, count: bits.count * 2), owner: nil)
        return (weight, bits.map { Float(bitPattern: UInt32($0) << 16) }, storage)
    }

    @Test(arguments: [1, 15, 16, 17, 100, 513])
    func softmaxMatchesReference(n: Int) {
        bothPaths { path in
            var rng = Numbers(seed: UInt64(n))
            var row = rng.array(n).map { $0 * 30 } // logits spanning exp's useful range
            let expected = Reference.softmax(row)
            row.withUnsafeMutableBufferPointer { moe_softmax_row($0.baseAddress!, n) }
            // Logits near ±30 carry an fp32 rounding of ~2e-6 into x - max, so exp's own ~2 ulp sit below that.
            let worst = zip(row, expected).map { abs($0 - $1) / max($1, 1e-30) }.max() ?? 0
            #expect(worst < 1e-5, "\(path) n=\(n): relative error \(worst)")
            #expect(abs(row.reduce(0, +) - 1) < 1e-5, "\(path) n=\(n): sums to \(row.reduce(0, +))")
        }
    }

    @Test func softmaxIgnoresMinusInfinity() {
        bothPaths { path in
            var row: [Float] = [0, -.infinity, 1, -.infinity, 2] + [Float](repeating: -.infinity, count: 20)
            row.withUnsafeMutableBufferPointer { moe_softmax_row($0.baseAddress!, $0.count) }
            let expected = Reference.softmax([0, 1, 2])
            #expect(abs(row[0] - expected[0]) < 1e-6 && abs(row[2] - expected[1]) < 1e-6 && abs(row[4] - expected[2]) < 1e-6, "\(path)")
            #expect(row[1] == 0 && row[3] == 0 && row[5...].allSatisfy { $0 == 0 }, "\(path)")
        }
    }

    @Test(arguments: [1, 16, 37, 4096])
    func siluMulMatchesDefinition(n: Int) {
        bothPaths { path in
            var rng = Numbers(seed: 11 + UInt64(n))
            var gate = rng.array(n).map { $0 * 12 }
            let up = rng.array(n)
            let expected = zip(gate, up).map { Float(Double($0) / (1 + exp(-Double($0))) * Double($1)) }
            gate.withUnsafeMutableBufferPointer { moe_silu_mul($0.baseAddress!, up, n) }
            let worst = zip(gate, expected).map { abs($0 - $1) / max(abs($1), 1e-3) }.max() ?? 0
            #expect(worst < 1e-5, "\(path) n=\(n): relative error \(worst)")
        }
    }

    @Test(arguments: [7, 16, 200, 512])
    func rmsNormRowMatchesReference(dim: Int) {
        bothPaths { path in
            var rng = Numbers(seed: 5 + UInt64(dim))
            let x = rng.array(dim), w = rng.array(dim)
            var out = [Float](repeating: 0, count: dim)
            out.withUnsafeMutableBufferPointer { moe_rmsnorm_row(x, w, 1e-5, $0.baseAddress!, dim) }
            #expect(maxAbsDiff(out, Reference.rmsNorm(x, dim: dim, weight: w, eps: 1e-5)) < 1e-5, "\(path) dim=\(dim)")
        }
    }

    @Test(arguments: [(1, 1), (3, 15), (4, 16), (7, 33), (64, 2048), (130, 100)])
    func bf16GemvMatchesReference(shape: (Int, Int)) throws {
        let (rows, cols) = shape
        var rng = Numbers(seed: UInt64(rows * 7919 + cols))
        let x = rng.array(cols)
        let (weight, rounded, storage) = try bf16Weight(rng.array(rows * cols), shape: [rows, cols])
        defer { storage.deallocate() }
        let expected = Reference.linear(x, rows: 1, rounded, outFeatures: rows)
        bothPaths { path in
            var y = [Float](repeating: 0.5, count: rows)
            y.withUnsafeMutableBufferPointer { moe_gemv_bf16(storage, cols, rows, cols, x, $0.baseAddress!, 0) }
            #expect(maxAbsDiff(y, expected) < 1e-4, "\(path) \(rows)×\(cols)")
            y.withUnsafeMutableBufferPointer { moe_gemv_bf16(storage, cols, rows, cols, x, $0.baseAddress!, 1) }
            #expect(maxAbsDiff(y, expected.map { $0 * 2 }) < 2e-4, "\(path) \(rows)×\(cols) accumulating")
            let viaLinear = Linear.apply(Tensor(shape: [1, cols], values: x), weight)
            #expect(maxAbsDiff(viaLinear.toArray(), expected) < 1e-4, "\(path) Linear.apply, one row")
        }
    }

    @Test func bf16WidenMatchesShift() {
        bothPaths { path in
            let bits: [UInt16] = (0..<37).map { UInt16(truncatingIfNeeded: $0 &* 2654435761 >> 7) }
            var out = [Float](repeating: 0, count: bits.count)
            out.withUnsafeMutableBufferPointer { moe_bf16_to_f32(bits, $0.baseAddress!, bits.count) }
            #expect(zip(out, bits).allSatisfy { $0.bitPattern == UInt32($1) << 16 }, "\(path)")
        }
    }

    /// Column splits across workers (fp32 and bf16 weights, one row and many) give what one thread gives.
    @Test(arguments: [(1, 300, 64), (5, 1000, 130), (70, 257, 96)])
    func threadedLinearMatchesReference(shape: (Int, Int, Int)) throws {
        let (m, n, k) = shape
        var rng = Numbers(seed: UInt64(m + n + k))
        let x = rng.array(m * k), w = rng.array(n * k)
        let (bf16, rounded, storage) = try bf16Weight(w, shape: [n, k])
        defer { storage.deallocate() }
        for threads in [1, 2, 3] {
            Compute.withThreads(threads) {
                let y32 = Linear.apply(Tensor(shape: [m, k], values: x), Weight(shape: [n, k], values: w))
                #expect(maxAbsDiff(y32.toArray(), Reference.linear(x, rows: m, w, outFeatures: n)) < 1e-4, "fp32 \(threads) threads")
                let y16 = Linear.apply(Tensor(shape: [m, k], values: x), bf16)
                #expect(maxAbsDiff(y16.toArray(), Reference.linear(x, rows: m, rounded, outFeatures: n)) < 1e-4, "bf16 \(threads) threads")
            }
        }
    }

    @Test func threadedSgemmMatchesReference() {
        let (m, n, k) = (33, 200, 48)
        var rng = Numbers(seed: 99)
        let a = rng.array(m * k), bT = rng.array(n * k), b = (0..<(k * n)).map { bT[($0 % n) * k + $0 / n] }
        let expected = Reference.linear(a, rows: m, bT, outFeatures: n)
        Compute.withThreads(2) {
            for transB in [true, false] {
                var c = [Float](repeating: 1, count: m * n)
                c.withUnsafeMutableBufferPointer { cp in
                    Linear.sgemm(
                        transA: false, transB: transB, m: m, n: n, k: k, alpha: 1, a, lda: k,
                        transB ? bT : b, ldb: transB ? k : n, beta: 0, cp.baseAddress!, ldc: n)
                }
                #expect(maxAbsDiff(c, expected) < 1e-4, "transB \(transB)")
            }
        }
    }

    @Test func parallelChunksVisitEveryIndexOnceAndNestSerially() {
        Compute.withThreads(2) {
            let n = 1000
            let counts = UnsafeMutablePointer<Int>.allocate(capacity: n)
            counts.initialize(repeating: 0, count: n)
            defer { counts.deallocate() }
            let cp = SendablePointer(counts)
            let nestedWorkers = SendablePointer(UnsafeMutablePointer<Int>.allocate(capacity: 1))
            nestedWorkers.pointer.initialize(to: 0)
            defer { nestedWorkers.pointer.deallocate() }
            Compute.parallelChunks(n, chunk: 7) { range in
                for i in range { cp.pointer[i] += 1 }
                if range.lowerBound == 0 { nestedWorkers.pointer.pointee = Compute.workers(for: 1000) }
            }
            #expect((0..<n).allSatisfy { counts[$0] == 1 })
            #expect(nestedWorkers.pointer.pointee == 1, "a loop inside a parallel loop must run serially")
        }
    }
}
