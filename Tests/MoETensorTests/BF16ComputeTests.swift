import CKernels
import Foundation
import Testing

@testable import MoETensor

/// bf16 compute (issue 15): the reference product `Linear.applyBF16Reference` against plain Double loops, and
/// `CPUBackend(compute:)` choosing it exactly where the precision is bf16 and the weight is stored as bf16.
@Suite struct BF16ComputeTests {
    func bf16Weight(_ values: [Float], shape: [Int]) throws -> (weight: Weight, widened: [Float]) {
        var bits = [UInt16](repeating: 0, count: values.count)
        moe_f32_to_bf16(values, &bits, values.count)
        let storage = UnsafeMutablePointer<UInt16>.allocate(capacity: bits.count)
        storage.update(from: bits, count: bits.count)
        let bytes = UnsafeRawBufferPointer(start: storage, count: bits.count * 2)
        // The weight copies nothing when aligned; keep the storage alive with an owner that frees it.
        let weight = try Weight(dtype: .bfloat16, shape: shape, bytes: bytes, owner: StorageOwner(storage))
        return (weight, bits.map { Float(bitPattern: UInt32($0) << 16) })
    }

    final class StorageOwner {
        let pointer: UnsafeMutablePointer<UInt16>
        init(_ pointer: UnsafeMutablePointer<UInt16>) { self.pointer = pointer }
        deinit { pointer.deallocate() }
    }

    /// fp32 value of the bf16 nearest to `x`, ties to even (independent of the C kernel).
    static func roundedToBF16(_ x: Float) -> Float {
        let bits = x.bitPattern
        let lsb = (bits >> 16) & 1
        return Float(bitPattern: (bits &+ 0x7FFF &+ lsb) & 0xFFFF_0000)
    }

    @Test func activationsRoundToNearestEven() {
        let halfway: Float = 1 + 0x1p-8 // between 1 and 1 + 2⁻⁷: the even neighbour is 1
        let halfwayUp: Float = 1 + 3 * 0x1p-8 // between 1 + 2⁻⁷ and 1 + 2⁻⁶: the even neighbour is 1 + 2⁻⁶
        let above: Float = 1 + 0x1p-8 + 0x1p-20
        let x: [Float] = [halfway, halfwayUp, above, -halfway, Float(bitPattern: 0x0020_8000), 65504.7]
        var out = [Float](repeating: .nan, count: x.count)
        x.withUnsafeBufferPointer { xs in
            out.withUnsafeMutableBufferPointer {
                Linear.roundRowsToBF16(xs.baseAddress!, rows: 1, columns: x.count, lda: x.count, into: $0.baseAddress!)
            }
        }
        #expect(out[0] == 1)
        #expect(out[1] == 1 + 0x1p-6)
        #expect(out[2] == 1 + 0x1p-7)
        #expect(out[3] == -1)
        #expect(out == x.map(Self.roundedToBF16))
    }

    /// `y = bf16(x) · Wᵀ (+ y)` with strided rows, against a Double sum of the exact bf16 × bf16 products.
    @Test(arguments: [(1, 7, 5), (3, 16, 9), (17, 130, 33), (64, 300, 64)])
    func referenceMatchesDoubleLoops(shape: (m: Int, n: Int, k: Int)) throws {
        let (m, n, k) = shape
        var rng = Numbers(seed: UInt64(m * 1000 + n))
        let lda = k + 3, ldy = n + 5
        let x = rng.array(m * lda).map { $0 * 4 }
        let (weight, widened) = try bf16Weight(rng.array(n * k), shape: [n, k])
        for accumulate in [false, true] {
            let start = rng.array(m * ldy)
            var y = start
            x.withUnsafeBufferPointer { xs in
                y.withUnsafeMutableBufferPointer {
                    Linear.applyBF16Reference(
                        xs.baseAddress!, rows: m, lda: lda, weight: weight, into: $0.baseAddress!, ldy: ldy, accumulate: accumulate)
                }
            }
            var worst = 0.0
            for i in 0..<m {
                for j in 0..<n {
                    var sum = accumulate ? Double(start[i * ldy + j]) : 0, magnitude = abs(sum)
                    for c in 0..<k {
                        let product = Double(Self.roundedToBF16(x[i * lda + c]) * widened[j * k + c])
                        sum += product
                        magnitude += abs(product)
                    }
                    worst = max(worst, abs(Double(y[i * ldy + j]) - sum) / max(magnitude, 1e-30))
                }
                // Padding between rows stays as it was.
                for j in n..<ldy { #expect(y[i * ldy + j] == start[i * ldy + j]) }
            }
            #expect(worst < Double(k) * 1.2e-7, "m=\(m) n=\(n) k=\(k) accumulate=\(accumulate): relative error \(worst)")
        }
    }

    @Test func backendUsesBF16ProductsOnlyForBF16Weights() throws {
        let m = 5, n = 40, k = 70
        var rng = Numbers(seed: 42)
        let x = rng.array(m * k)
        let (bf16, widened) = try bf16Weight(rng.array(n * k), shape: [n, k])
        let fp32 = Weight(shape: [n, k], values: widened)
        func run(_ backend: any TensorBackend, _ w: Weight, serial: Bool = false) -> [Float] {
            var y = [Float](repeating: 0, count: m * n)
            x.withUnsafeBufferPointer { xs in
                y.withUnsafeMutableBufferPointer {
                    if serial {
                        backend.linearSerial(xs.baseAddress!, rows: m, lda: k, weight: w, into: $0.baseAddress!, ldy: n)
                    } else {
                        backend.linear(xs.baseAddress!, rows: m, weight: w, into: $0.baseAddress!, accumulate: false)
                    }
                }
            }
            return y
        }
        let reference = run(CPUBackend(), fp32)
        var expected = [Float](repeating: 0, count: m * n)
        x.withUnsafeBufferPointer { xs in
            expected.withUnsafeMutableBufferPointer {
                Linear.applyBF16Reference(xs.baseAddress!, rows: m, weight: bf16, into: $0.baseAddress!)
            }
        }
        let bf16Backend = CPUBackend(compute: .bf16)
        #expect(maxAbsDiff(run(bf16Backend, bf16), expected) < 1e-5)
        #expect(maxAbsDiff(run(bf16Backend, bf16, serial: true), expected) < 1e-5)
        // The rounding of x shows: bf16 compute is not the fp32 product (else the branch was not taken).
        #expect(maxAbsDiff(run(bf16Backend, bf16), reference) > 1e-4)
        // fp32 compute on bf16 weights, and any compute on fp32 weights, is the exact fp32 product.
        #expect(maxAbsDiff(run(CPUBackend(compute: .fp32), bf16), reference) < 1e-5)
        #expect(run(bf16Backend, fp32) == reference)
        #expect(maxAbsDiff(run(bf16Backend.fp32Products, bf16), reference) < 1e-5)
    }

    @Test func cpuFeatureIsReadFromTheCPU() throws {
        let flags = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("flags") }
        guard let flags else { return } // not Linux: nothing to compare with
        let words = Set(flags.split(separator: " ").map(String.init))
        #expect(CPUFeatures.hasBF16Compute == (words.contains("avx512_bf16") || words.contains("amx_bf16")))
    }
}
