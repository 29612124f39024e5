/// A device address as the forward does arithmetic on it (a `CUdeviceptr`); kept inside `DeviceBuffer`s.
typealias DevicePointer = UInt64

/// One kernel parameter, in the exact C type the kernel declares (`int`, `long long`, `float`, a pointer).
enum KernelArgument {
    case pointer(DevicePointer)
    case int32(Int32)
    case int64(Int64)
    case float32(Float)

    var driverArgument: CUDAKernelArgument {
        switch self {
        case .pointer(let address): .pointer(CUDADevicePointer(address: address))
        case .int32(let value): .int32(value)
        case .int64(let value): .int64(value)
        case .float32(let value): .float(value)
        }
    }
}

/// A launch shape: grid and block extents, dynamic shared memory.
struct LaunchShape {
    var grid: CUDADim3
    var block: CUDADim3
    var sharedBytes: Int

    init(grid: (Int, Int, Int), block: (Int, Int, Int), sharedBytes: Int = 0) {
        self.grid = CUDADim3(x: grid.0, y: grid.1, z: grid.2)
        self.block = CUDADim3(x: block.0, y: block.1, z: block.2)
        self.sharedBytes = sharedBytes
    }

    /// Blocks of `threads` threads covering `count` elements, capped for the kernels' grid-stride loops.
    static func elements(_ count: Int, threads: Int = 256) -> LaunchShape {
        LaunchShape(grid: (max(1, min((count + threads - 1) / threads, 65_535 * 8)), 1, 1), block: (threads, 1, 1))
    }

    /// One block of `threads` threads per row.
    static func rows(_ rows: Int, threads: Int = 256, sharedBytes: Int = 0) -> LaunchShape {
        LaunchShape(grid: (rows, 1, 1), block: (threads, 1, 1), sharedBytes: sharedBytes)
    }
}

/// What the GPU forward runs on: the device's primary context and stream (`CUDAContext`), cuBLAS on that stream,
/// and every kernel of `CUDAKernelSource.all` compiled by NVRTC for the device (disk-cached) and loaded.
public final class CUDAForwardRuntime: @unchecked Sendable {
    public let context: CUDAContext
    let blas: CUBLAS
    let functions: [String: CUDAFunction]

    public init(context: CUDAContext) throws {
        self.context = context
        blas = try CUBLAS(context: context)
        let compiler = NVRTCCompiler(library: context.libraries.nvrtc)
        var functions: [String: CUDAFunction] = [:]
        for source in CUDAKernelSource.all {
            let module = try context.loadModule(try compiler.compile(source, arch: context.device.computeCapability))
            for entry in source.entryPoints { functions[entry] = try module.function(entry) }
        }
        self.functions = functions
    }

    /// "NVIDIA H100 80GB HBM3 (sm_90)", for messages.
    public var name: String { "\(context.device.name) (sm_\(context.device.computeCapability))" }

    /// Dynamic shared memory a block may use without opting in.
    var defaultSharedMemoryPerBlock: Int { 48 * 1024 }

    func launch(_ kernel: String, _ shape: LaunchShape, _ arguments: [KernelArgument]) throws {
        guard let function = functions[kernel] else { throw CUDAForwardError("kernel \(kernel) is not in CUDAKernelSource.all") }
        try context.launch(
            function, grid: shape.grid, block: shape.block, sharedMemoryBytes: shape.sharedBytes,
            arguments: arguments.map(\.driverArgument))
    }

    /// Row-major `y[m, n] = x[m, k]·w[n, k]ᵀ`, contiguous: bf16 `x` and `w`, fp32 accumulation, `y` fp32 or bf16.
    func gemmBF16(m: Int, n: Int, k: Int, x: DevicePointer, w: DevicePointer, y: DevicePointer, fp32Output: Bool) throws {
        try blas.gemmBF16(
            x: CUDADevicePointer(address: x), w: CUDADevicePointer(address: w), y: CUDADevicePointer(address: y), m: m, n: n, k: k,
            output: fp32Output ? .fp32 : .bf16)
    }
}

/// An error of the GPU forward; the message says which step and which sizes.
public struct CUDAForwardError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Device memory owned by one object and freed with it (at least 16 bytes, so its address is never null).
final class DeviceBuffer: @unchecked Sendable {
    let storage: CUDABuffer
    var pointer: DevicePointer { storage.pointer.address }
    var byteCount: Int { storage.byteCount }

    init(_ runtime: CUDAForwardRuntime, bytes: Int) throws {
        storage = try runtime.context.allocate(byteCount: max(bytes, 16))
    }

    /// The address `elements` elements of `elementSize` bytes in.
    func at(_ elements: Int, elementSize: Int) -> DevicePointer { pointer + DevicePointer(elements * elementSize) }
}

/// Grow-only scratch buffers by role, reused across layers and forwards so a decode step allocates nothing.
final class ScratchBuffers: @unchecked Sendable {
    let runtime: CUDAForwardRuntime
    private var buffers: [String: DeviceBuffer] = [:]

    init(_ runtime: CUDAForwardRuntime) { self.runtime = runtime }

    /// At least `bytes` bytes for `role`; its previous contents are not kept when it grows.
    func buffer(_ role: String, bytes: Int) throws -> DeviceBuffer {
        if let buffer = buffers[role], buffer.byteCount >= bytes { return buffer }
        buffers[role] = nil
        let buffer = try DeviceBuffer(runtime, bytes: bytes)
        buffers[role] = buffer
        return buffer
    }

    func pointer(_ role: String, bytes: Int) throws -> DevicePointer { try buffer(role, bytes: bytes).pointer }
}

/// Checked byte counts: sizes come from model args and requests, so a product that overflows is an error.
func deviceBytes(_ factors: Int...) throws -> Int {
    var total = 1
    for factor in factors {
        guard factor >= 0 else { throw CUDAForwardError("negative size \(factor) in a device buffer") }
        let (product, overflow) = total.multipliedReportingOverflow(by: factor)
        guard !overflow else { throw CUDAForwardError("device buffer size \(factors.map(String.init).joined(separator: "×")) overflows") }
        total = product
    }
    return total
}
