import Foundation
import Testing

@testable import MoECUDA

/// Compiles for real with NVRTC from the `nvidia-cuda-nvrtc-cu12` wheel: no GPU or driver is needed to compile.
@Suite struct NVRTCCompileTests {
    /// Every kernel the GPU forward uses compiles to machine code for the A100 and H100 generations and defines the
    /// entry points it declares.
    @Test func everyKernelCompilesWithNVRTC() throws {
        let compiler = NVRTCCompiler(library: try CUDATestSupport.nvrtcOrSkip(), cache: nil)
        #expect(!CUDAKernelSource.all.isEmpty)
        #expect(Set(CUDAKernelSource.all.map(\.name)).count == CUDAKernelSource.all.count, "kernel names must be unique")
        for kernel in CUDAKernelSource.all {
            #expect(!kernel.entryPoints.isEmpty, "\(kernel.name) declares no entry point")
            for arch in [80, 90] {
                do {
                    let compiled = try compiler.compile(kernel, arch: arch)
                    #expect(compiled.format == .cubin && compiled.architecture == arch)
                    #expect(
                        compiled.image.count > 64 && Array(compiled.image.prefix(4)) == [0x7F, 0x45, 0x4C, 0x46],
                        "\(kernel.name): not an ELF CUBIN")
                    for entry in kernel.entryPoints {
                        #expect(
                            NVRTCCompiler.missingEntryPoint([entry], in: compiled.image, format: .cubin) == nil,
                            "\(kernel.name): \(entry) for sm_\(arch)")
                    }
                } catch {
                    Issue.record("\(error)")
                }
            }
        }
    }

    @Test func aCompileErrorNamesTheKernelTheArchitectureAndTheLine() throws {
        let compiler = NVRTCCompiler(library: try CUDATestSupport.nvrtcOrSkip(), cache: nil)
        let broken = CUDAKernelSource(
            name: "broken.cu", source: "extern \"C\" __global__ void g(float *y) {\n  y[0] = undefined_name;\n}\n", entryPoints: ["g"])
        do throws(CUDAError) {
            _ = try compiler.compile(broken, arch: 90)
            Issue.record("a kernel with an undefined name compiled")
        } catch {
            #expect(error.call == "nvrtcCompileProgram(broken.cu, sm_90)")
            #expect(error.reason.hasPrefix("NVRTC_ERROR_COMPILATION"), "\(error)")
            #expect(error.reason.contains("broken.cu(2)") && error.reason.contains("undefined_name"), "\(error)")
        }
    }

    @Test func anEntryPointTheSourceDoesNotDefineIsAnError() throws {
        let compiler = NVRTCCompiler(library: try CUDATestSupport.nvrtcOrSkip(), cache: nil)
        let mangled = CUDAKernelSource(name: "mangled.cu", source: "__global__ void h(float *y) { y[0] = 1.0f; }\n", entryPoints: ["h"])
        do throws(CUDAError) {
            _ = try compiler.compile(mangled, arch: 80)
            Issue.record("a C++-mangled entry point was accepted")
        } catch {
            #expect(error.reason.contains("defines no entry point 'h'"), "\(error)")
        }
    }

    @Test func architecturesNVRTCCannotTargetAreRefusedOrFallBackToPTX() throws {
        let library = try CUDATestSupport.nvrtcOrSkip()
        let compiler = NVRTCCompiler(library: library, cache: nil)
        do throws(CUDAError) {
            _ = try compiler.compile(.smoke, arch: 20)
            Issue.record("sm_20 was accepted")
        } catch {
            #expect(error.reason.contains("cannot generate code for sm_20"), "\(error)")
        }
        let newest = try #require(library.supportedArchitectures.last)
        let future = try compiler.compile(.smoke, arch: newest + 100)
        #expect(future.format == .ptx && future.architecture == newest)
        #expect(String(decoding: future.image, as: UTF8.self).contains(".entry moe_smoke_scale_add("))
    }

    @Test func theDiskCacheIsUsedWhenIntactAndRecompiledWhenCorrupt() throws {
        let root = try CUDATestSupport.scratch("nvrtc-cache")
        defer { try? FileManager.default.removeItem(at: root) }
        let library = try CUDATestSupport.nvrtcOrSkip()
        let cache = KernelDiskCache(folder: root)
        let compiler = NVRTCCompiler(library: library, cache: cache)
        let first = try compiler.compile(.smoke, arch: 90)
        #expect(!first.fromCache)
        let second = try compiler.compile(.smoke, arch: 90)
        #expect(second.fromCache && second.image == first.image)
        #expect(!(try compiler.compile(.smoke, arch: 80)).fromCache, "another architecture is another entry")

        let key = try KernelDiskCache.key(
            source: .smoke, options: ["--gpu-architecture=sm_90"] + NVRTCCompiler.commonOptions, nvrtcVersion: library.version,
            architecture: 90, format: .cubin)
        let file = cache.url(key: key, format: .cubin)
        var bytes = try Data(contentsOf: file)
        bytes[bytes.count - 8] ^= 0x01
        try bytes.write(to: file)
        let repaired = try compiler.compile(.smoke, arch: 90)
        #expect(!repaired.fromCache && repaired.image == first.image)
        #expect(cache.lookup(key: key, format: .cubin) == .hit(first.image))
    }
}
