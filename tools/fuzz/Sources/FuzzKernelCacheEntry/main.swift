import Foundation
import FuzzSupport

@testable import MoECUDA

// One CUDA kernel disk-cache entry (header line, then the compiled image), read as a CUBIN and as a PTX entry; an
// image that passes goes through the entry-point check every kernel's cached image gets before it is used.
// `@testable` (the fuzz build is a debug build): the entry reader is internal to MoECUDA. No GPU, driver or NVRTC.
runFuzzer { bytes in
    let data = Data(bytes)
    for format in [CompiledKernel.Format.cubin, .ptx] {
        guard case .hit(let image) = KernelDiskCache.readEntry(data, format: format, file: "fuzz.\(format.rawValue)") else {
            continue
        }
        for kernel in CUDAKernelSource.all {
            _ = NVRTCCompiler.missingEntryPoint(kernel.entryPoints, in: image, format: format)
        }
    }
}
