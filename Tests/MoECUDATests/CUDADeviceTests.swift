import Foundation
import Testing

@testable import MoECUDA

/// Runs on a GPU; skipped elsewhere with "no CUDA device: <load report>".
@Suite(.serialized) struct CUDADeviceTests {
    @Test func theSmokeKernelRunsAndMemoryRoundTrips() throws {
        let context = try CUDATestSupport.contextOrSkip()
        let compiled = try NVRTCCompiler(library: context.libraries.nvrtc, cache: nil).compile(
            .smoke, arch: context.device.computeCapability)
        let function = try context.loadModule(compiled).function("moe_smoke_scale_add")
        let count = 1000
        let x = (0..<count).map { Float($0) }
        let y = try context.upload([Float](repeating: 1, count: count))
        let xs = try context.upload(x)
        try context.launch(
            function, grid: CUDADim3(x: (count + 255) / 256), block: CUDADim3(x: 256),
            arguments: [.pointer(y.pointer), .pointer(xs.pointer), .float(2), .int32(Int32(count))])
        let result = try context.download(Float.self, count: count, from: y)
        #expect(result == x.map { 1 + 2 * $0 })

        try context.zero(y, offset: 4, byteCount: 8)
        let copy = try context.allocate(byteCount: 16)
        try context.copy(from: y, to: copy, byteCount: 16)
        #expect(try context.download(Float.self, count: 4, from: copy) == [1, 0, 0, 7])
        #expect(throws: CUDAError.self) { try context.copy(from: y, offset: 3990, to: copy, byteCount: 16) }
    }

    @Test func gemmBF16MatchesTheHostProduct() throws {
        let context = try CUDATestSupport.contextOrSkip()
        let blas = try CUBLAS(context: context)
        let (m, n, k) = (3, 5, 64)
        // Values exact in bf16 (small integers over powers of two), so the fp32-accumulated product is exact too.
        let x = (0..<(m * k)).map { Float(($0 * 7) % 11 - 5) / 4 }
        let w = (0..<(n * k)).map { Float(($0 * 5) % 13 - 6) / 8 }
        func bf16(_ values: [Float]) -> [UInt16] { values.map { UInt16($0.bitPattern >> 16) } }
        var expected = [Float](repeating: 0, count: m * n)
        for row in 0..<m {
            for column in 0..<n {
                expected[row * n + column] = (0..<k).reduce(0) { $0 + x[row * k + $1] * w[column * k + $1] }
            }
        }
        let xs = try context.upload(bf16(x))
        let ws = try context.upload(bf16(w))
        let y = try context.allocate(byteCount: m * n * 4)
        try blas.gemmBF16(x: xs.pointer, w: ws.pointer, y: y.pointer, m: m, n: n, k: k, output: .fp32)
        #expect(try context.download(Float.self, count: m * n, from: y) == expected)

        let batched = try context.allocate(byteCount: 2 * m * n * 4)
        let twoX = try context.upload(bf16(x + x.map { -$0 }))
        try blas.gemmBF16StridedBatched(
            x: twoX.pointer, strideX: m * k, w: ws.pointer, strideW: 0, y: batched.pointer, strideY: m * n, batchCount: 2, m: m, n: n,
            k: k, output: .fp32)
        #expect(try context.download(Float.self, count: 2 * m * n, from: batched) == expected + expected.map { -$0 })
    }

    @Test func eventsTimeTheStream() throws {
        let context = try CUDATestSupport.contextOrSkip()
        let start = try context.makeEvent()
        let end = try context.makeEvent()
        try context.record(start)
        let buffer = try context.allocate(byteCount: 1 << 20)
        try context.zero(buffer)
        try context.record(end)
        let milliseconds = try context.elapsedMilliseconds(from: start, to: end)
        #expect(milliseconds >= 0 && milliseconds < 10_000)
    }
}
