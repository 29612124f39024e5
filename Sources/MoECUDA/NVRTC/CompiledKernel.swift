/// A kernel source compiled for one GPU architecture, ready for `CUDAContext.loadModule`.
public struct CompiledKernel: Sendable, Hashable {
    public enum Format: String, Sendable, Hashable {
        /// Machine code for exactly one `sm_XX`.
        case cubin
        /// Virtual-architecture text the driver compiles when the module is loaded: only when the GPU is newer than
        /// anything this NVRTC can generate machine code for.
        case ptx
    }

    /// The source's name, e.g. "rmsnorm.cu".
    public let name: String
    /// The `sm_XX` (CUBIN) or `compute_XX` (PTX) number the code was generated for.
    public let architecture: Int
    public let format: Format
    public let image: [UInt8]
    public let entryPoints: [String]
    /// True when the image came from the disk cache rather than NVRTC.
    public let fromCache: Bool
}
