import CCUDA
import Foundation

/// What the driver reports about one GPU.
public struct CUDADeviceInfo: Sendable, Hashable {
    public let ordinal: Int
    public let name: String
    /// Major × 10 + minor: 80 for an A100, 90 for an H100 (the `sm_XX` number NVRTC compiles for).
    public let computeCapability: Int
    public let totalMemoryBytes: Int
    public let multiprocessorCount: Int
    /// The most dynamic shared memory one block may opt into (`CUDAFunction.allowDynamicSharedMemory`).
    public let maxSharedMemoryPerBlockOptIn: Int
    /// Peak DRAM bandwidth from the memory clock and bus width (2 transfers per clock), when the driver reports them.
    public let peakMemoryBytesPerSecond: Double?
    /// `cuDriverGetVersion`: 12080 for CUDA 12.8.
    public let driverVersion: Int
}

/// An address in device memory (a `CUdeviceptr`). Arithmetic on it is the caller's: pass one from a `CUDABuffer`.
public struct CUDADevicePointer: Sendable, Hashable {
    public let address: UInt64

    public init(address: UInt64) { self.address = address }

    public func advanced(byBytes bytes: Int) -> CUDADevicePointer {
        CUDADevicePointer(address: bytes >= 0 ? address &+ UInt64(bytes) : address &- UInt64(bytes.magnitude))
    }
}

/// Grid or block extent of a kernel launch.
public struct CUDADim3: Sendable, Hashable {
    public var x: Int
    public var y: Int
    public var z: Int

    public init(x: Int, y: Int = 1, z: Int = 1) {
        self.x = x
        self.y = y
        self.z = z
    }
}

/// One kernel parameter, in the order the `extern "C"` signature declares them.
public enum CUDAKernelArgument: Sendable, Hashable {
    case pointer(CUDADevicePointer)
    case int32(Int32)
    case uint32(UInt32)
    case int64(Int64)
    case float(Float)

    /// The argument's bytes in a 64-bit slot (little-endian, so a 32-bit value sits at the slot's start).
    var slot: UInt64 {
        switch self {
        case .pointer(let pointer): pointer.address
        case .int32(let value): UInt64(UInt32(bitPattern: value))
        case .uint32(let value): UInt64(value)
        case .int64(let value): UInt64(bitPattern: value)
        case .float(let value): UInt64(value.bitPattern)
        }
    }
}

/// One GPU through the driver API: its primary context (the one cuBLAS shares), one non-blocking stream on which
/// every copy, memset, kernel and cuBLAS call of this context is ordered, device memory, modules and events.
///
/// Calls may come from any thread: each makes the context current on the calling thread first. Work is
/// asynchronous on the stream; `synchronize()` (and every download) waits for it.
public final class CUDAContext: @unchecked Sendable {
    public let libraries: CUDALibraries
    public let device: CUDADeviceInfo
    let driver: CUDADriverLibrary
    let deviceHandle: CUdevice
    let context: CUcontext
    let stream: CUstream

    /// Retains device `ordinal`'s primary context and creates the stream.
    public init(libraries: CUDALibraries, ordinal: Int = 0) throws(CUDAError) {
        let driver = libraries.driver
        let api = driver.api
        try driver.check(api.cuInit!(0), "cuInit")
        var count: Int32 = 0
        try driver.check(api.cuDeviceGetCount!(&count), "cuDeviceGetCount")
        guard ordinal >= 0, ordinal < Int(count) else {
            throw CUDAError(call: "cuDeviceGet", reason: "device \(ordinal) requested, the driver sees \(count) device(s)")
        }
        var handle: CUdevice = 0
        try driver.check(api.cuDeviceGet!(&handle, Int32(ordinal)), "cuDeviceGet")
        func attribute(_ attribute: Int32, _ name: String) throws(CUDAError) -> Int {
            var value: Int32 = 0
            try driver.check(api.cuDeviceGetAttribute!(&value, attribute, handle), "cuDeviceGetAttribute(\(name))")
            return Int(value)
        }
        var nameBuffer = [CChar](repeating: 0, count: 256)
        try driver.check(api.cuDeviceGetName!(&nameBuffer, Int32(nameBuffer.count - 1), handle), "cuDeviceGetName")
        var totalMemory = 0
        try driver.check(api.cuDeviceTotalMem!(&totalMemory, handle), "cuDeviceTotalMem_v2")
        var driverVersion: Int32 = 0
        try driver.check(api.cuDriverGetVersion!(&driverVersion), "cuDriverGetVersion")
        let major = try attribute(MOE_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, "compute capability major")
        let minor = try attribute(MOE_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, "compute capability minor")
        var bandwidth: Double? = nil
        if let clockKHz = try? attribute(MOE_CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE, "memory clock"),
            let busBits = try? attribute(MOE_CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH, "memory bus width"),
            clockKHz > 0, busBits > 0
        {
            bandwidth = 2 * Double(clockKHz) * 1000 * Double(busBits) / 8
        }
        let info = CUDADeviceInfo(
            ordinal: ordinal,
            name: String(decoding: nameBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self),
            computeCapability: major * 10 + minor,
            totalMemoryBytes: totalMemory,
            multiprocessorCount: try attribute(MOE_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, "multiprocessor count"),
            maxSharedMemoryPerBlockOptIn: try attribute(
                MOE_CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, "shared memory per block opt-in"),
            peakMemoryBytesPerSecond: bandwidth,
            driverVersion: Int(driverVersion))

        var context: CUcontext? = nil
        try driver.check(api.cuDevicePrimaryCtxRetain!(&context, handle), "cuDevicePrimaryCtxRetain")
        guard let context else { throw CUDAError(call: "cuDevicePrimaryCtxRetain", reason: "returned no context") }
        var stream: CUstream? = nil
        do throws(CUDAError) {
            try driver.check(api.cuCtxSetCurrent!(context), "cuCtxSetCurrent")
            try driver.check(api.cuStreamCreate!(&stream, UInt32(MOE_CU_STREAM_NON_BLOCKING)), "cuStreamCreate")
        } catch {
            _ = api.cuDevicePrimaryCtxRelease!(handle)
            throw error
        }
        guard let stream else {
            _ = api.cuDevicePrimaryCtxRelease!(handle)
            throw CUDAError(call: "cuStreamCreate", reason: "returned no stream")
        }
        self.libraries = libraries
        self.driver = driver
        self.device = info
        self.deviceHandle = handle
        self.context = context
        self.stream = stream
    }

    deinit {
        _ = driver.api.cuCtxSetCurrent!(context)
        _ = driver.api.cuStreamSynchronize!(stream)
        _ = driver.api.cuStreamDestroy!(stream)
        _ = driver.api.cuDevicePrimaryCtxRelease!(deviceHandle)
    }

    /// The libraries found by `search` and device 0 when its compute capability is at least
    /// `minimumComputeCapability`; otherwise why not, starting "no CUDA device: ", so `--device auto` can fall back
    /// to the CPU and say why. Never throws.
    public static func probe(
        search: CUDALibrarySearch = .standard(), minimumComputeCapability: Int = 80
    ) -> Result<CUDAContext, CUDAUnavailable> {
        let driver: CUDADriverLibrary
        do { driver = try CUDALibraries.loadDriver(search: search) } catch {
            return .failure(CUDAUnavailable(reason: error.description))
        }
        let context: CUDAContext
        do {
            let libraries = CUDALibraries(
                driver: driver, cublas: try CUDALibraries.loadCUBLAS(search: search),
                nvrtc: try CUDALibraries.loadNVRTC(search: search))
            context = try CUDAContext(libraries: libraries)
        } catch let error as CUDALibraryLoadError {
            return .failure(CUDAUnavailable(reason: "driver \(driver.path) found, but \(error.description)"))
        } catch {
            return .failure(CUDAUnavailable(reason: "driver \(driver.path): \(error)"))
        }
        guard context.device.computeCapability >= minimumComputeCapability else {
            return .failure(
                CUDAUnavailable(
                    reason: "\(context.device.name) has compute capability \(context.device.computeCapability / 10)."
                        + "\(context.device.computeCapability % 10); moe-eval needs "
                        + "\(minimumComputeCapability / 10).\(minimumComputeCapability % 10) or newer (bf16 tensor cores)"))
        }
        return .success(context)
    }

    /// Makes this context current on the calling thread (cheap; every method does it).
    public func makeCurrent() throws(CUDAError) {
        try driver.check(driver.api.cuCtxSetCurrent!(context), "cuCtxSetCurrent")
    }

    /// Waits until everything queued on the stream has finished; reports an error raised by earlier work.
    public func synchronize() throws(CUDAError) {
        try makeCurrent()
        try driver.check(driver.api.cuStreamSynchronize!(stream), "cuStreamSynchronize")
    }

    // MARK: Memory

    /// Uninitialised device memory, freed when the buffer is released. Zero bytes gives an empty buffer.
    public func allocate(byteCount: Int) throws(CUDAError) -> CUDABuffer {
        guard byteCount >= 0 else { throw CUDAError(call: "cuMemAlloc_v2", reason: "negative size \(byteCount)") }
        guard byteCount > 0 else { return CUDABuffer(context: self, pointer: CUDADevicePointer(address: 0), byteCount: 0) }
        try makeCurrent()
        var address: CUdeviceptr = 0
        try driver.check(driver.api.cuMemAlloc!(&address, byteCount), "cuMemAlloc_v2 (\(byteCount) bytes)")
        return CUDABuffer(context: self, pointer: CUDADevicePointer(address: address), byteCount: byteCount)
    }

    /// A buffer holding a copy of `values`.
    public func upload<Element: BitwiseCopyable>(_ values: [Element]) throws(CUDAError) -> CUDABuffer {
        let (bytes, overflow) = values.count.multipliedReportingOverflow(by: MemoryLayout<Element>.stride)
        guard !overflow else { throw CUDAError(call: "upload", reason: "\(values.count) elements overflow a byte count") }
        let buffer = try allocate(byteCount: bytes)
        let outcome = values.withUnsafeBytes { raw in Result { () throws(CUDAError) in try upload(raw, to: buffer) } }
        try outcome.get()
        return buffer
    }

    /// Copies host bytes into `buffer` at `offset`. The host memory may be reused as soon as this returns.
    public func upload(_ bytes: UnsafeRawBufferPointer, to buffer: CUDABuffer, offset: Int = 0) throws(CUDAError) {
        try buffer.checkRange(offset: offset, byteCount: bytes.count, call: "cuMemcpyHtoDAsync_v2")
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        try makeCurrent()
        try driver.check(
            driver.api.cuMemcpyHtoDAsync!(buffer.pointer.advanced(byBytes: offset).address, base, bytes.count, stream),
            "cuMemcpyHtoDAsync_v2")
    }

    /// Copies `host.count` bytes of `buffer` from `offset` into host memory once the work before it has finished.
    public func download(from buffer: CUDABuffer, offset: Int = 0, into host: UnsafeMutableRawBufferPointer) throws(CUDAError) {
        try buffer.checkRange(offset: offset, byteCount: host.count, call: "cuMemcpyDtoHAsync_v2")
        guard let base = host.baseAddress, host.count > 0 else { return }
        try makeCurrent()
        try driver.check(
            driver.api.cuMemcpyDtoHAsync!(base, buffer.pointer.advanced(byBytes: offset).address, host.count, stream),
            "cuMemcpyDtoHAsync_v2")
        try synchronize()
    }

    /// The first `count` elements of `buffer` (from `offset` bytes in).
    public func download<Element: BitwiseCopyable>(
        _ type: Element.Type, count: Int, from buffer: CUDABuffer, offset: Int = 0
    ) throws(CUDAError) -> [Element] {
        let (bytes, overflow) = count.multipliedReportingOverflow(by: MemoryLayout<Element>.stride)
        guard count >= 0, !overflow else { throw CUDAError(call: "download", reason: "\(count) elements overflow a byte count") }
        try buffer.checkRange(offset: offset, byteCount: bytes, call: "cuMemcpyDtoHAsync_v2")
        var failure: CUDAError? = nil
        let values = [Element](unsafeUninitializedCapacity: count) { storage, initialized in
            do throws(CUDAError) {
                try download(from: buffer, offset: offset, into: UnsafeMutableRawBufferPointer(storage))
                initialized = count
            } catch {
                failure = error
                initialized = 0
            }
        }
        if let failure { throw failure }
        return values
    }

    /// Device-to-device copy of `byteCount` bytes, ordered on the stream.
    public func copy(
        from source: CUDABuffer, offset sourceOffset: Int = 0, to destination: CUDABuffer, offset destinationOffset: Int = 0,
        byteCount: Int
    ) throws(CUDAError) {
        try source.checkRange(offset: sourceOffset, byteCount: byteCount, call: "cuMemcpyDtoDAsync_v2")
        try destination.checkRange(offset: destinationOffset, byteCount: byteCount, call: "cuMemcpyDtoDAsync_v2")
        guard byteCount > 0 else { return }
        try makeCurrent()
        try driver.check(
            driver.api.cuMemcpyDtoDAsync!(
                destination.pointer.advanced(byBytes: destinationOffset).address,
                source.pointer.advanced(byBytes: sourceOffset).address, byteCount, stream),
            "cuMemcpyDtoDAsync_v2")
    }

    /// Sets `byteCount` bytes from `offset` (all of the buffer by default) to zero, ordered on the stream.
    public func zero(_ buffer: CUDABuffer, offset: Int = 0, byteCount: Int? = nil) throws(CUDAError) {
        let count = byteCount ?? (buffer.byteCount - offset)
        try buffer.checkRange(offset: offset, byteCount: count, call: "cuMemsetD8Async")
        guard count > 0 else { return }
        try makeCurrent()
        try driver.check(
            driver.api.cuMemsetD8Async!(buffer.pointer.advanced(byBytes: offset).address, 0, count, stream), "cuMemsetD8Async")
    }

    // MARK: Modules and launches

    /// Loads a compiled kernel (CUBIN, or PTX the driver compiles for this device).
    public func loadModule(_ kernel: CompiledKernel) throws(CUDAError) -> CUDAModule {
        try makeCurrent()
        var image = kernel.image
        // PTX is text the driver reads up to its terminating zero.
        if kernel.format == .ptx && image.last != 0 { image.append(0) }
        var module: CUmodule? = nil
        let result = image.withUnsafeBytes { raw in driver.api.cuModuleLoadData!(&module, raw.baseAddress) }
        try driver.check(result, "cuModuleLoadData(\(kernel.name))")
        guard let module else { throw CUDAError(call: "cuModuleLoadData(\(kernel.name))", reason: "returned no module") }
        return CUDAModule(context: self, module: module, name: kernel.name)
    }

    /// Queues `function` on the stream. Extents and shared memory are checked against the 32-bit fields of
    /// cuLaunchKernel; the device checks the rest and reports it here or at the next synchronisation.
    public func launch(
        _ function: CUDAFunction, grid: CUDADim3, block: CUDADim3, sharedMemoryBytes: Int = 0,
        arguments: [CUDAKernelArgument]
    ) throws(CUDAError) {
        let call = "cuLaunchKernel(\(function.name))"
        for (what, value) in [
            ("grid.x", grid.x), ("grid.y", grid.y), ("grid.z", grid.z), ("block.x", block.x), ("block.y", block.y),
            ("block.z", block.z),
        ] where value < 1 || value > Int(UInt32.max) {
            throw CUDAError(call: call, reason: "\(what) = \(value) is outside 1…\(UInt32.max)")
        }
        guard sharedMemoryBytes >= 0, sharedMemoryBytes <= Int(UInt32.max) else {
            throw CUDAError(call: call, reason: "shared memory of \(sharedMemoryBytes) bytes")
        }
        try makeCurrent()
        var slots = arguments.map(\.slot)
        let result = slots.withUnsafeMutableBufferPointer { slotStorage in
            var parameters: [UnsafeMutableRawPointer?] = (0..<slotStorage.count).map {
                UnsafeMutableRawPointer(slotStorage.baseAddress! + $0)
            }
            return parameters.withUnsafeMutableBufferPointer { parameterStorage in
                driver.api.cuLaunchKernel!(
                    function.function, UInt32(grid.x), UInt32(grid.y), UInt32(grid.z), UInt32(block.x), UInt32(block.y),
                    UInt32(block.z), UInt32(sharedMemoryBytes), stream,
                    parameterStorage.count > 0 ? parameterStorage.baseAddress : nil, nil)
            }
        }
        try driver.check(result, call)
    }

    // MARK: Timing

    /// An event for timing work on the stream (`record`, then `elapsedMilliseconds`).
    public func makeEvent() throws(CUDAError) -> CUDAEvent {
        try makeCurrent()
        var event: CUevent? = nil
        try driver.check(driver.api.cuEventCreate!(&event, UInt32(MOE_CU_EVENT_DEFAULT)), "cuEventCreate")
        guard let event else { throw CUDAError(call: "cuEventCreate", reason: "returned no event") }
        return CUDAEvent(context: self, event: event)
    }

    /// Marks the point in the stream the work queued so far reaches.
    public func record(_ event: CUDAEvent) throws(CUDAError) {
        try makeCurrent()
        try driver.check(driver.api.cuEventRecord!(event.event, stream), "cuEventRecord")
    }

    /// GPU time between two recorded events, waiting for `end` to be reached.
    public func elapsedMilliseconds(from start: CUDAEvent, to end: CUDAEvent) throws(CUDAError) -> Double {
        try makeCurrent()
        try driver.check(driver.api.cuEventSynchronize!(end.event), "cuEventSynchronize")
        var milliseconds: Float = 0
        try driver.check(driver.api.cuEventElapsedTime!(&milliseconds, start.event, end.event), "cuEventElapsedTime")
        return Double(milliseconds)
    }
}

/// Why CUDA is not used: the load report or the device's shortfall.
public struct CUDAUnavailable: Error, Sendable, CustomStringConvertible {
    public let reason: String
    public var description: String { "no CUDA device: \(reason)" }
}

/// Device memory owned by one context; freed when released.
public final class CUDABuffer: @unchecked Sendable {
    public let context: CUDAContext
    public let pointer: CUDADevicePointer
    public let byteCount: Int

    init(context: CUDAContext, pointer: CUDADevicePointer, byteCount: Int) {
        self.context = context
        self.pointer = pointer
        self.byteCount = byteCount
    }

    deinit {
        guard byteCount > 0 else { return }
        _ = context.driver.api.cuCtxSetCurrent!(context.context)
        _ = context.driver.api.cuMemFree!(pointer.address)
    }

    /// The address `offset` bytes in, after checking that `byteCount` bytes from there lie inside the buffer.
    public func pointer(offset: Int, byteCount: Int) throws(CUDAError) -> CUDADevicePointer {
        try checkRange(offset: offset, byteCount: byteCount, call: "CUDABuffer.pointer")
        return pointer.advanced(byBytes: offset)
    }

    func checkRange(offset: Int, byteCount count: Int, call: String) throws(CUDAError) {
        let (end, overflow) = offset.addingReportingOverflow(count)
        guard offset >= 0, count >= 0, !overflow, end <= byteCount else {
            throw CUDAError(call: call, reason: "bytes \(offset)..<\(offset) + \(count) are outside a buffer of \(byteCount) bytes")
        }
    }
}

/// A loaded module; unloaded when released (after the functions taken from it).
public final class CUDAModule: @unchecked Sendable {
    public let context: CUDAContext
    public let name: String
    let module: CUmodule

    init(context: CUDAContext, module: CUmodule, name: String) {
        self.context = context
        self.module = module
        self.name = name
    }

    deinit {
        _ = context.driver.api.cuCtxSetCurrent!(context.context)
        _ = context.driver.api.cuModuleUnload!(module)
    }

    /// The `extern "C"` entry point `name`.
    public func function(_ name: String) throws(CUDAError) -> CUDAFunction {
        try context.makeCurrent()
        var function: CUfunction? = nil
        try context.driver.check(
            context.driver.api.cuModuleGetFunction!(&function, module, name), "cuModuleGetFunction(\(self.name): \(name))")
        guard let function else { throw CUDAError(call: "cuModuleGetFunction(\(name))", reason: "returned no function") }
        return CUDAFunction(module: self, function: function, name: name)
    }
}

/// A kernel entry point; keeps its module loaded.
public final class CUDAFunction: @unchecked Sendable {
    public let module: CUDAModule
    public let name: String
    let function: CUfunction

    init(module: CUDAModule, function: CUfunction, name: String) {
        self.module = module
        self.function = function
        self.name = name
    }

    /// Lets launches of this function use up to `bytes` of dynamic shared memory (needed above 48 KiB).
    public func allowDynamicSharedMemory(bytes: Int) throws(CUDAError) {
        let context = module.context
        guard bytes >= 0, bytes <= context.device.maxSharedMemoryPerBlockOptIn else {
            throw CUDAError(
                call: "cuFuncSetAttribute(\(name))",
                reason: "\(bytes) bytes of shared memory; \(context.device.name) allows \(context.device.maxSharedMemoryPerBlockOptIn)")
        }
        try context.makeCurrent()
        try context.driver.check(
            context.driver.api.cuFuncSetAttribute!(function, MOE_CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, Int32(bytes)),
            "cuFuncSetAttribute(\(name))")
    }
}

/// A timing event on a context's stream.
public final class CUDAEvent: @unchecked Sendable {
    public let context: CUDAContext
    let event: CUevent

    init(context: CUDAContext, event: CUevent) {
        self.context = context
        self.event = event
    }

    deinit {
        _ = context.driver.api.cuCtxSetCurrent!(context.context)
        _ = context.driver.api.cuEventDestroy!(event)
    }
}
