import Foundation
@testable import MoECUDA
import Testing

/// The kernel catalog is what the GPU forward launches by name: every listed entry point must be an unmangled
/// `extern "C" __global__` function of its unit, names unique across units. (Compiling them needs NVRTC; the
/// compile check is the NVRTC test.)
@Suite struct KernelCatalogTests {
    @Test func everyEntryPointIsDefinedOnceAsExternC() {
        var seen: [String: String] = [:]
        for unit in CUDAKernelSource.all {
            #expect(unit.name.hasSuffix(".cu"))
            #expect(!unit.source.contains("#include"), "\(unit.name) must be header-free")
            for entry in unit.entryPoints {
                #expect(seen[entry] == nil, "\(entry) is in both \(seen[entry] ?? "") and \(unit.name)")
                seen[entry] = unit.name
                let definitions = unit.source.components(separatedBy: "extern \"C\" __global__ void \(entry)(").count - 1
                #expect(definitions == 1, "\(unit.name) defines \(entry) \(definitions) times")
            }
            let declared = unit.source.components(separatedBy: "extern \"C\" __global__ void ").count - 1
            #expect(declared == unit.entryPoints.count, "\(unit.name): \(declared) kernels, \(unit.entryPoints.count) listed")
        }
    }

    @Test func flashAttentionFitsTheDefaultSharedMemoryForEveryTorchTitanFlavor() {
        // qk_nope + qk_rope and v_head_dim of debugmodel, 16B, 236B, 671B: all (128 + 64, 128) or smaller.
        for (qk, v) in [(16 + 16, 32), (128 + 64, 128)] {
            #expect(CUDAKernelSource.flashSharedBytes(qkDims: qk, valueDims: v) <= 48 * 1024)
        }
    }
}

@Suite struct ComputeDeviceTests {
    @Test func parsesTheThreeChoices() {
        #expect(ComputeDevice.allCases.map(\.rawValue) == ["cpu", "cuda", "auto"])
        #expect(ComputeDevice(rawValue: "gpu") == nil)
    }

    @Test func cpuNeverProbes() throws {
        var probed = false
        let placement = try ComputeDevice.cpu.placement(
            probe: {
                probed = true
                return .failure(CUDAUnavailable(reason: "unused"))
            }, note: { _ in })
        #expect(placement == nil)
        #expect(!probed)
    }

    @Test func cudaWithoutADeviceThrowsOneLineWithTheWholeReport() {
        let report = "cannot load the CUDA driver (libcuda.so.1). Tried:\n  /a/libcuda.so.1: no such file\n  /b/libcuda.so.1: no such file"
        #expect {
            _ = try ComputeDevice.cuda.placement(probe: { .failure(CUDAUnavailable(reason: report)) }, note: { _ in })
        } throws: { error in
            let text = String(describing: error)
            return !text.contains("\n") && text.hasPrefix("--device cuda: no CUDA device: cannot load the CUDA driver")
                && text.contains("/a/libcuda.so.1: no such file; /b/libcuda.so.1: no such file")
        }
    }

    @Test func autoWithoutADeviceFallsBackToTheCPUAndSaysWhy() throws {
        var notes: [String] = []
        let placement = try ComputeDevice.auto.placement(
            probe: { .failure(CUDAUnavailable(reason: "cannot load the CUDA driver (libcuda.so.1)")) }, note: { notes.append($0) })
        #expect(placement == nil)
        #expect(notes == ["device: auto chose the CPU (no CUDA device: cannot load the CUDA driver (libcuda.so.1))"])
    }
}
