import Foundation
import Testing

@testable import MoECUDA

@Suite struct KernelDiskCacheTests {
    let kernel = CUDAKernelSource(name: "a.cu", source: "extern \"C\" __global__ void f() {}", entryPoints: ["f"])

    func key(
        _ kernel: CUDAKernelSource, options: [String] = ["--gpu-architecture=sm_90"], version: (Int, Int) = (12, 9),
        arch: Int = 90, format: CompiledKernel.Format = .cubin
    ) throws -> String {
        try KernelDiskCache.key(source: kernel, options: options, nvrtcVersion: version, architecture: arch, format: format)
    }

    @Test func theKeyChangesWithEverythingThatDecidesTheOutput() throws {
        let base = try key(kernel)
        #expect(base.count == 64 && base.allSatisfy { $0.isHexDigit })
        #expect(try key(kernel) == base)
        let variants = [
            try key(CUDAKernelSource(name: "a.cu", source: kernel.source + " ", entryPoints: ["f"])),
            try key(CUDAKernelSource(name: "b.cu", source: kernel.source, entryPoints: ["f"])),
            try key(kernel, options: ["--gpu-architecture=sm_90", "--std=c++17"]),
            try key(kernel, version: (12, 8)),
            try key(kernel, version: (13, 0)),
            try key(kernel, arch: 80),
            try key(kernel, format: .ptx),
        ]
        #expect(Set(variants + [base]).count == variants.count + 1)
        // Field boundaries count: moving a character from one option to the next is a different key.
        #expect(try key(kernel, options: ["ab", "c"]) != (try key(kernel, options: ["a", "bc"])))
    }

    @Test func standardFolderFollowsXDGThenHome() {
        #expect(
            KernelDiskCache.standard(environment: ["XDG_CACHE_HOME": "/x", "HOME": "/h"])?.folder.path == "/x/moe-eval/cuda-kernels")
        #expect(KernelDiskCache.standard(environment: ["HOME": "/h"])?.folder.path == "/h/.cache/moe-eval/cuda-kernels")
        #expect(
            KernelDiskCache.standard(environment: ["XDG_CACHE_HOME": "relative", "HOME": "/h"])?.folder.path
                == "/h/.cache/moe-eval/cuda-kernels")
        #expect(KernelDiskCache.standard(environment: [:]) == nil)
    }

    @Test func anEntryIsWrittenWholeAndReadBack() throws {
        let root = try CUDATestSupport.scratch("cache")
        defer { try? FileManager.default.removeItem(at: root) }
        let cache = KernelDiskCache(folder: root.appendingPathComponent("not-yet/cuda-kernels"))
        let k = try key(kernel)
        #expect(cache.lookup(key: k, format: .cubin) == .miss)
        let image: [UInt8] = Array("\u{7F}ELF and some machine code\n\0f\0".utf8)
        try cache.store(image, key: k, format: .cubin)
        #expect(cache.lookup(key: k, format: .cubin) == .hit(image))
        #expect(cache.lookup(key: k, format: .ptx) == .miss)
        // Published by rename: no temporary file stays beside the entry.
        #expect(try FileManager.default.contentsOfDirectory(atPath: cache.folder.path) == ["\(k).cubin"])
        let replacement: [UInt8] = [1, 2, 3]
        try cache.store(replacement, key: k, format: .cubin)
        #expect(cache.lookup(key: k, format: .cubin) == .hit(replacement))
    }

    /// The reader the fuzz target drives: the same verdicts from bytes alone, also for a slice of a larger buffer.
    @Test func anEntrysBytesAreReadWithoutTheFileSystem() throws {
        let root = try CUDATestSupport.scratch("bytes")
        defer { try? FileManager.default.removeItem(at: root) }
        let cache = KernelDiskCache(folder: root)
        let k = try key(kernel)
        let image: [UInt8] = Array(".text.f\0 and more".utf8)
        try cache.store(image, key: k, format: .cubin)
        let bytes = try Data(contentsOf: cache.url(key: k, format: .cubin))
        #expect(KernelDiskCache.readEntry(bytes, format: .cubin, file: "e") == .hit(image))
        #expect(KernelDiskCache.readEntry((Data([0x0A, 0x0A]) + bytes).dropFirst(2), format: .cubin, file: "e") == .hit(image))
        guard case .corrupt(let message) = KernelDiskCache.readEntry(bytes, format: .ptx, file: "e") else {
            Issue.record("a CUBIN entry was accepted as PTX")
            return
        }
        #expect(message.hasPrefix("e: header is not 'moe-eval-kernel ptx"), "\(message)")
    }

    @Test func aDamagedEntryIsReportedCorruptNeverReturned() throws {
        let root = try CUDATestSupport.scratch("corrupt")
        defer { try? FileManager.default.removeItem(at: root) }
        let cache = KernelDiskCache(folder: root)
        let k = try key(kernel)
        let file = cache.url(key: k, format: .cubin)
        let image = [UInt8](repeating: 0x5A, count: 100)
        try cache.store(image, key: k, format: .cubin)
        let good = try Data(contentsOf: file)

        func expectCorrupt(_ bytes: Data, _ reason: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            try bytes.write(to: file)
            guard case .corrupt(let message) = cache.lookup(key: k, format: .cubin) else {
                Issue.record("not reported corrupt: \(reason)", sourceLocation: sourceLocation)
                return
            }
            #expect(message.hasPrefix(file.path + ": ") && message.contains(reason), "\(message)", sourceLocation: sourceLocation)
        }
        var flipped = good
        flipped[flipped.count - 1] ^= 0xFF
        try expectCorrupt(flipped, "does not match its SHA-256")
        try expectCorrupt(good.dropLast(), "header says 100 bytes, 99 follow")
        try expectCorrupt(good + Data([0]), "header says 100 bytes, 101 follow")
        try expectCorrupt(Data(), "no header line")
        try expectCorrupt(Data(repeating: 0x41, count: 1000), "no header line")
        try expectCorrupt(Data("moe-eval-kernel ptx 0 e3b0\n".utf8), "header is not")
        try expectCorrupt(Data("moe-eval-kernel cubin x y\n".utf8), "header says x bytes")
    }
}
