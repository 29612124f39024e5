import CCUDA
import Foundation

/// Compiles `CUDAKernelSource`s with NVRTC to CUBIN for the device's `sm_XX`, through the disk cache.
///
/// CUBIN rather than PTX: PTX from a newer NVRTC than the driver fails to load, machine code does not. PTX (for the
/// newest `compute_XX` this NVRTC knows) is produced only for a GPU newer than every architecture it supports.
public final class NVRTCCompiler: @unchecked Sendable {
    public let library: NVRTCLibrary
    public let cache: KernelDiskCache?

    /// Every compile's options besides the architecture. Part of the cache key.
    public static let commonOptions = ["--std=c++17"]

    public init(library: NVRTCLibrary, cache: KernelDiskCache? = .standard()) {
        self.library = library
        self.cache = cache
    }

    /// Machine code (or the PTX fallback) for `sm_<arch>`, e.g. `arch: 90` for an H100. A cached entry is used when
    /// it is intact; a corrupt one is recompiled and replaced. The result defines every entry point the source lists.
    public func compile(_ kernel: CUDAKernelSource, arch: Int) throws(CUDAError) -> CompiledKernel {
        let call = "nvrtcCompileProgram(\(kernel.name), sm_\(arch))"
        let (format, architecture) = try target(arch: arch, call: call)
        let options = ["--gpu-architecture=\(format == .cubin ? "sm" : "compute")_\(architecture)"] + Self.commonOptions
        var key: String? = nil
        if let cache {
            key = try? KernelDiskCache.key(
                source: kernel, options: options, nvrtcVersion: library.version, architecture: architecture, format: format)
            if let key, case .hit(let image) = cache.lookup(key: key, format: format),
                Self.missingEntryPoint(kernel.entryPoints, in: image, format: format) == nil
            {
                return CompiledKernel(
                    name: kernel.name, architecture: architecture, format: format, image: image,
                    entryPoints: kernel.entryPoints, fromCache: true)
            }
        }
        let image = try run(kernel, options: options, format: format, call: call)
        if let missing = Self.missingEntryPoint(kernel.entryPoints, in: image, format: format) {
            throw CUDAError(call: call, reason: "compiled, but defines no entry point '\(missing)' (is it extern \"C\" __global__?)")
        }
        if let cache, let key {
            // The cache only saves time: a read-only or full disk must not stop the run.
            try? cache.store(image, key: key, format: format)
        }
        return CompiledKernel(
            name: kernel.name, architecture: architecture, format: format, image: image, entryPoints: kernel.entryPoints,
            fromCache: false)
    }

    /// CUBIN for a supported `sm_XX`; PTX for the newest known one when `arch` is newer than all of them.
    func target(arch: Int, call: String) throws(CUDAError) -> (CompiledKernel.Format, Int) {
        let supported = library.supportedArchitectures
        let version = "NVRTC \(library.version.major).\(library.version.minor)"
        guard arch > 0, arch < 10_000 else { throw CUDAError(call: call, reason: "sm_\(arch) is not a GPU architecture") }
        if supported.contains(arch) { return (.cubin, arch) }
        if let newest = supported.last, arch > newest { return (.ptx, newest) }
        let list = supported.map { "sm_\($0)" }.joined(separator: ", ")
        throw CUDAError(call: call, reason: "\(version) cannot generate code for sm_\(arch) (it supports \(list))")
    }

    private func run(
        _ kernel: CUDAKernelSource, options: [String], format: CompiledKernel.Format, call: String
    )
        throws(CUDAError) -> [UInt8]
    {
        let api = library.api
        var program: nvrtcProgram? = nil
        try check(api.nvrtcCreateProgram!(&program, kernel.source, kernel.name, 0, nil, nil), "nvrtcCreateProgram(\(kernel.name))")
        defer { _ = api.nvrtcDestroyProgram!(&program) }
        let optionStrings = options.map { strdup($0) }
        defer { optionStrings.forEach { free($0) } }
        let optionPointers = optionStrings.map { UnsafePointer<CChar>($0) }
        let compiled = api.nvrtcCompileProgram!(program, Int32(optionPointers.count), optionPointers)
        if compiled != MOE_NVRTC_SUCCESS {
            let log = programLog(program).trimmingCharacters(in: .whitespacesAndNewlines)
            throw CUDAError(call: call, reason: "\(errorText(compiled))\(log.isEmpty ? "" : "\n\(log)")")
        }
        var size = 0
        let sizeCall = format == .cubin ? "nvrtcGetCUBINSize" : "nvrtcGetPTXSize"
        try check(format == .cubin ? api.nvrtcGetCUBINSize!(program, &size) : api.nvrtcGetPTXSize!(program, &size), sizeCall)
        guard size > 0, size <= KernelDiskCache.maximumEntryBytes else {
            throw CUDAError(call: sizeCall, reason: "\(kernel.name) produced \(size) bytes")
        }
        var image = [UInt8](repeating: 0, count: size)
        let imageCall = format == .cubin ? "nvrtcGetCUBIN" : "nvrtcGetPTX"
        let result = image.withUnsafeMutableBytes { raw in
            let bytes = raw.baseAddress!.assumingMemoryBound(to: CChar.self)
            return format == .cubin ? api.nvrtcGetCUBIN!(program, bytes) : api.nvrtcGetPTX!(program, bytes)
        }
        try check(result, imageCall)
        return image
    }

    private func programLog(_ program: nvrtcProgram?) -> String {
        var size = 0
        guard library.api.nvrtcGetProgramLogSize!(program, &size) == MOE_NVRTC_SUCCESS, size > 1, size < 16 << 20 else {
            return ""
        }
        var log = [CChar](repeating: 0, count: size)
        guard library.api.nvrtcGetProgramLog!(program, &log) == MOE_NVRTC_SUCCESS else { return "" }
        return String(decoding: log.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private func check(_ result: nvrtcResult, _ call: String) throws(CUDAError) {
        guard result != MOE_NVRTC_SUCCESS else { return }
        throw CUDAError(call: call, reason: errorText(result))
    }

    private func errorText(_ result: nvrtcResult) -> String {
        let text = library.api.nvrtcGetErrorString!(result).map { String(cString: $0) } ?? "unknown NVRTC error"
        return "\(text) (\(result))"
    }

    /// The first entry point the image does not define: a CUBIN has a code section `.text.NAME` per kernel (the
    /// exact name, where a C++ kernel's is mangled), PTX declares it as `.entry NAME(`.
    static func missingEntryPoint(_ names: [String], in image: [UInt8], format: CompiledKernel.Format) -> String? {
        names.first { name in
            let needle = format == .cubin ? Array(".text.\(name)".utf8) + [0] : Array(".entry \(name)(".utf8)
            return !contains(image, needle)
        }
    }

    private static func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= haystack.count else { return needle.isEmpty }
        let first = needle[0]
        var index = 0
        let last = haystack.count - needle.count
        while index <= last {
            if haystack[index] == first && haystack[index..<(index + needle.count)].elementsEqual(needle) { return true }
            index += 1
        }
        return false
    }
}
