import CKernels
import Foundation
import Testing

@testable import MoETensor

/// Deterministic pseudo-random values (xorshift), so failures reproduce.
struct Numbers {
    var state: UInt64
    init(seed: UInt64) { state = seed | 1 }
    mutating func next() -> Float {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return Float(Double(state % 2_000_001) / 1_000_000 - 1)
    }
    mutating func array(_ n: Int) -> [Float] { (0..<n).map { _ in next() } }
}

func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
    zip(a, b).map { abs($0 - $1) }.max() ?? 0
}

@Suite struct LinearTests {
    @Test(arguments: [(1, 7, 5), (3, 16, 9), (17, 33, 130), (64, 64, 300)])
    func blasMatchesReference(shape: (Int, Int, Int)) {
        let (m, k, n) = shape
        var rng = Numbers(seed: UInt64(m * 1000 + k * 10 + n))
        let x = rng.array(m * k), w = rng.array(n * k)
        let y = Linear.apply(Tensor(shape: [m, k], values: x), Weight(shape: [n, k], values: w))
        #expect(maxAbsDiff(y.toArray(), Reference.linear(x, rows: m, w, outFeatures: n)) < 1e-4)
    }

    @Test func bf16WeightsWidenExactly() throws {
        var rng = Numbers(seed: 7)
        let (m, k, n) = (5, 24, 300) // n > widen panel rows, so several panels are used
        let x = rng.array(m * k), w = rng.array(n * k)
        var bits = [UInt16](repeating: 0, count: w.count)
        moe_f32_to_bf16(w, &bits, w.count)
        let rounded = bits.map { Float(bitPattern: UInt32($0) << 16) }
        let storage = UnsafeMutablePointer<UInt16>.allocate(capacity: bits.count)
        defer { storage.deallocate() }
        storage.update(from: bits, count: bits.count)
        let weight = try Weight(
            dtype: .bfloat16, shape: [n, k],
            bytes: UnsafeRawBufferPointer(start: storage, count: bits.count * 2), owner: nil)
        #expect(weight.base == UnsafeRawPointer(storage)) // aligned bf16 stays a view: no fp32 copy
        let y = Linear.apply(Tensor(shape: [m, k], values: x), weight)
        #expect(maxAbsDiff(y.toArray(), Reference.linear(x, rows: m, rounded, outFeatures: n)) < 1e-4)
    }

    @Test func bf16RoundingIsNearestEven() {
        // 1 + 2^-8 is halfway between two bf16 values: ties go to the even mantissa (1.0).
        let values: [Float] = [1 + 1.0 / 256, 1 + 3.0 / 256, -2.5, .infinity]
        var bits = [UInt16](repeating: 0, count: values.count)
        moe_f32_to_bf16(values, &bits, values.count)
        #expect(bits == [0x3F80, 0x3F82, 0xC020, 0x7F80])
    }

    @Test func misalignedBytesAreCopied() throws {
        let storage = UnsafeMutableRawPointer.allocate(byteCount: 4 * 6 + 1, alignment: 8)
        defer { storage.deallocate() }
        let values: [Float] = [1, 2, 3, 4, 5, 6]
        for (i, v) in values.enumerated() { storage.storeBytes(of: v, toByteOffset: 1 + 4 * i, as: Float.self) }
        let w = try Weight(dtype: .float32, shape: [2, 3], bytes: UnsafeRawBufferPointer(start: storage + 1, count: 24), owner: nil)
        #expect(Int(bitPattern: w.base) % 4 == 0)
        #expect(w.toFloatArray() == values)
        #expect(w.matrix(1).toFloatArray() == [4, 5, 6])
    }

    @Test func wrongByteCountIsAnError() {
        let bytes = [UInt8](repeating: 0, count: 10)
        #expect(throws: Weight.WeightError.self) {
            try bytes.withUnsafeBytes { try Weight(dtype: .float32, shape: [3], bytes: $0, owner: nil) }
        }
    }
}

@Suite struct OpsTests {
    @Test func rmsNormMatchesReference() {
        var rng = Numbers(seed: 3)
        let x = rng.array(4 * 37), w = rng.array(37)
        let out = Tensor(shape: [4, 37])
        Ops.rmsNorm(x, rows: 4, dim: 37, weight: w, eps: 1e-5, into: out.data)
        #expect(maxAbsDiff(out.toArray(), Reference.rmsNorm(x, dim: 37, weight: w, eps: 1e-5)) < 1e-5)
    }

    @Test func softmaxMatchesReference() {
        var rng = Numbers(seed: 4)
        var x = rng.array(19).map { $0 * 30 }
        let expected = Reference.softmax(x)
        Ops.softmaxRow(&x, 19)
        #expect(maxAbsDiff(x, expected) < 1e-6)
    }

    @Test func topKOrdersAndBreaksTies() {
        var rng = Numbers(seed: 5)
        for n in [1, 2, 8, 64] {
            for k in 1...min(n, 8) {
                let x = rng.array(n)
                var idx = [Int32](repeating: -1, count: k)
                Ops.topK(x, n, k, into: &idx)
                #expect(idx.map(Int.init) == Reference.topK(x, k))
            }
        }
        let ties: [Float] = [0.5, 0.9, 0.9, -.infinity, 0.9]
        var idx = [Int32](repeating: -1, count: 3)
        Ops.topK(ties, 5, 3, into: &idx)
        #expect(idx == [1, 2, 4])
    }

    @Test func ropeRotatesInterleavedPairs() {
        var x: [Float] = [1, 0, 0, 2]
        let cos: [Float] = [0, 1], sin: [Float] = [1, 0] // pair 0 by 90°, pair 1 by 0°
        Ops.ropeInterleaved(&x, pairs: 2, cos: cos, sin: sin)
        #expect(x == [0, 1, 0, 2])
    }

    @Test func siluMulMatchesDefinition() {
        var gate: [Float] = [-2, 0, 1.5, 10]
        let up: [Float] = [1, 2, 3, 0.5]
        let expected: [Float] = zip(gate, up).map { (g: Float, u: Float) -> Float in
            let gd = Double(g)
            return Float(gd / (1 + Foundation.exp(-gd)) * Double(u))
        }
        Ops.siluMul(&gate, up, count: 4)
        #expect(maxAbsDiff(gate, expected) < 1e-6)
    }

    @Test func parallelForVisitsEveryIndexOnce() {
        Compute.withThreads(2) {
            let hits = Tensor(shape: [1000])
            let p = SendablePointer(hits.data)
            Compute.parallelFor(1000) { i in p.pointer[i] += 1 }
            #expect(hits.toArray().allSatisfy { $0 == 1 })
        }
    }

    /// A thread's own count leaves the process-wide one, which other work in the process relies on, alone.
    @Test func withThreadsIsLocalToTheCallingThread() async {
        let global = Compute.threads
        Compute.withThreads(global + 3) {
            #expect(Compute.threads == global + 3)
            #expect(Compute.workers(for: 1000) == global + 3)
        }
        #expect(Compute.threads == global)
        let elsewhere = await Task.detached { Compute.withThreads(1) { Compute.threads } }.value
        #expect(elsewhere == 1 && Compute.threads == global)
    }
}

@Suite struct ThreadBudgetTests {
    /// Under `mpirun -np 2` on one host each rank gets half the cores by default, so the ranks together never
    /// oversubscribe the machine.
    @Test func defaultThreadsAreSharedAmongTheLaunchersLocalProcesses() {
        let cores = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        unsetenv("OMPI_COMM_WORLD_LOCAL_SIZE")
        let alone = Compute.defaultThreadCount()
        setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "2", 1)
        let shared = Compute.defaultThreadCount()
        setenv("OMPI_COMM_WORLD_LOCAL_SIZE", String(4 * cores), 1)
        let crowded = Compute.defaultThreadCount()
        unsetenv("OMPI_COMM_WORLD_LOCAL_SIZE")
        #expect(alone == cores)
        #expect(shared == max(1, cores / 2))
        #expect(crowded == 1)
    }
}
