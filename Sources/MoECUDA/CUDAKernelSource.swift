/// One translation unit of CUDA C compiled at run time by NVRTC: header-free (bf16 as `unsigned short`,
/// fp32 accumulation), `extern "C"` entry points so their names are not mangled.
public struct CUDAKernelSource: Sendable, Hashable {
    /// File-like name used in NVRTC messages and the disk cache, e.g. "rmsnorm.cu".
    public let name: String
    public let source: String
    /// The `extern "C" __global__` functions it defines.
    public let entryPoints: [String]
    public init(name: String, source: String, entryPoints: [String]) {
        self.name = name; self.source = source; self.entryPoints = entryPoints
    }
}
