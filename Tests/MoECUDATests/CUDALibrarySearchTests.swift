import Foundation
import Testing

@testable import MoECUDA

@Suite struct CUDALibrarySearchTests {
    @Test func standardOrderPutsTheUserFolderFirstAndTheToolkitLast() throws {
        let root = try CUDATestSupport.scratch("order")
        defer { try? FileManager.default.removeItem(at: root) }
        let venv = root.appendingPathComponent("venv").path
        let conda = root.appendingPathComponent("conda").path
        let home = root.appendingPathComponent("home").path
        let system = root.appendingPathComponent("usr").path
        for site in [
            "\(venv)/lib/python3.9/site-packages", "\(venv)/lib/python3.12/site-packages", "\(conda)/lib/python3.11/site-packages",
            "\(home)/.local/lib/python3.11/site-packages", "\(system)/lib/python3/dist-packages",
        ] {
            try FileManager.default.createDirectory(atPath: site, withIntermediateDirectories: true)
        }
        let search = CUDALibrarySearch.standard(
            environment: ["MOE_EVAL_CUDA_LIB_DIR": "/first:/second", "VIRTUAL_ENV": venv, "CONDA_PREFIX": conda],
            home: home, systemPythonPrefixes: [system], toolkitFolder: "/toolkit/lib64")
        func wheels(_ site: String, _ origin: String) -> [CUDALibrarySearch.Location] {
            ["nvidia/cu13/lib", "nvidia/cublas/lib", "nvidia/cuda_nvrtc/lib"].map { .folder("\(site)/\($0)", origin: origin) }
        }
        let expected: [CUDALibrarySearch.Location] =
            [.folder("/first", origin: "MOE_EVAL_CUDA_LIB_DIR"), .folder("/second", origin: "MOE_EVAL_CUDA_LIB_DIR"), .dynamicLoaderPath]
            + wheels("\(venv)/lib/python3.12/site-packages", "VIRTUAL_ENV wheel")
            + wheels("\(venv)/lib/python3.9/site-packages", "VIRTUAL_ENV wheel")
            + wheels("\(conda)/lib/python3.11/site-packages", "CONDA_PREFIX wheel") + [.folder("\(conda)/lib", origin: "CONDA_PREFIX")]
            + wheels("\(home)/.local/lib/python3.11/site-packages", "user Python wheel")
            + wheels("\(system)/lib/python3/dist-packages", "system Python wheel")
            + [.folder("/toolkit/lib64", origin: "CUDA toolkit")]
        #expect(search.locations == expected)
    }

    @Test func noEnvironmentLeavesTheLoaderPathAndTheToolkit() {
        let search = CUDALibrarySearch.standard(environment: [:], home: "", systemPythonPrefixes: [], toolkitFolder: "/tk")
        #expect(search.locations == [.dynamicLoaderPath, .folder("/tk", origin: "CUDA toolkit")])
    }

    @Test func aFileDlopenRejectsIsReportedWithTheLoadersReason() throws {
        let folder = try CUDATestSupport.scratch("empty-driver")
        defer { try? FileManager.default.removeItem(at: folder) }
        try CUDATestSupport.emptyFile(folder, "libcuda.so.1")
        do throws(CUDALibraryLoadError) {
            _ = try CUDALibraries.loadDriver(search: .folders([folder.path], origin: "test"))
            Issue.record("an empty libcuda.so.1 was loaded")
        } catch {
            #expect(error.library == .driver)
            #expect(error.attempts.count == 1)
            #expect(error.attempts.first?.path == "\(folder.path)/libcuda.so.1")
            #expect(error.attempts.first?.failure.contains("file too short") == true, "\(error)")
            #expect(error.description.hasPrefix("cannot load the CUDA driver (libcuda.so.1); set MOE_EVAL_CUDA_LIB_DIR"))
            #expect(error.description.contains("\n  \(folder.path)/libcuda.so.1: "))
        }
    }

    @Test func everyVersionOfEveryFolderIsReportedInOrder() throws {
        let root = try CUDATestSupport.scratch("nvrtc-only-12")
        defer { try? FileManager.default.removeItem(at: root) }
        let only12 = root.appendingPathComponent("only12")
        try CUDATestSupport.emptyFile(only12, "libnvrtc.so.12")
        let missing = root.appendingPathComponent("missing").path
        let search = CUDALibrarySearch(locations: [
            .folder(only12.path, origin: "MOE_EVAL_CUDA_LIB_DIR"), .folder(missing, origin: "CUDA toolkit"),
        ])
        do throws(CUDALibraryLoadError) {
            _ = try CUDALibraries.loadNVRTC(search: search)
            Issue.record("an empty libnvrtc.so.12 was loaded")
        } catch {
            let lines = error.attempts.map(\.description)
            #expect(lines.count == 4, "\(error)")
            guard lines.count == 4 else { return }
            #expect(lines[0] == "\(only12.path)/libnvrtc.so.13: not present")
            #expect(lines[1].hasPrefix("\(only12.path)/libnvrtc.so.12: ") && lines[1].contains("file too short"))
            #expect(lines[2] == "\(only12.path)/libnvrtc.so.11: not present")
            #expect(lines[3] == "\(missing) (CUDA toolkit): folder does not exist")
            #expect(error.description.hasPrefix("cannot load NVRTC (libnvrtc.so.13, libnvrtc.so.12, libnvrtc.so.11)"))
        }
    }

    /// A real shared library under a CUDA name opens but lacks the functions: the report names the first one missing.
    @Test func aLibraryWithoutTheFunctionsIsReportedByTheMissingName() throws {
        let folder = try CUDATestSupport.scratch("impostor")
        defer { try? FileManager.default.removeItem(at: folder) }
        let zlib = ["/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1", "/lib64/libz.so.1", "/usr/lib64/libz.so.1"]
            .first { FileManager.default.fileExists(atPath: $0) }
        let impostor = try #require(zlib, "no libz.so.1 to stand in for a CUDA library")
        // A copy, not a link: dlopen would otherwise reuse the already-loaded libz under its own name.
        let realFile = URL(fileURLWithPath: impostor).resolvingSymlinksInPath().path
        try FileManager.default.copyItem(atPath: realFile, toPath: folder.appendingPathComponent("libcublas.so.12").path)
        do throws(CUDALibraryLoadError) {
            _ = try CUDALibraries.loadCUBLAS(search: .folders([folder.path], origin: "test"))
            Issue.record("libz was accepted as cuBLAS")
        } catch {
            let opened = error.attempts.first { $0.path.hasSuffix("libcublas.so.12") }
            #expect(opened?.failure == "opened, but it does not export cublasCreate_v2", "\(error)")
        }
    }

    @Test func theUsersFolderIsTriedBeforeWheelFoldersAndTheToolkit() throws {
        let root = try CUDATestSupport.scratch("precedence")
        defer { try? FileManager.default.removeItem(at: root) }
        let user = root.appendingPathComponent("user")
        let venv = root.appendingPathComponent("venv")
        let wheel = venv.appendingPathComponent("lib/python3.11/site-packages/nvidia/cublas/lib")
        let toolkit = root.appendingPathComponent("toolkit")
        try CUDATestSupport.emptyFile(user, "libcublas.so.11")
        try CUDATestSupport.emptyFile(wheel, "libcublas.so.12")
        try CUDATestSupport.emptyFile(wheel, "libcublasLt.so.12")
        try CUDATestSupport.emptyFile(toolkit, "libcublas.so.13")
        var search = CUDALibrarySearch.standard(
            environment: ["MOE_EVAL_CUDA_LIB_DIR": user.path, "VIRTUAL_ENV": venv.path], home: "", systemPythonPrefixes: [],
            toolkitFolder: toolkit.path)
        // This machine's own libraries must not decide the outcome.
        search.locations.removeAll { $0 == .dynamicLoaderPath }
        do throws(CUDALibraryLoadError) {
            _ = try CUDALibraries.loadCUBLAS(search: search)
            Issue.record("an empty libcublas was loaded")
        } catch {
            let rejected = error.attempts.filter { $0.failure != "not present" && $0.failure != "folder does not exist" }.map(\.path)
            #expect(
                rejected == [
                    "\(user.path)/libcublas.so.11", "\(wheel.path)/libcublas.so.12", "\(toolkit.path)/libcublas.so.13",
                ], "\(error)")
        }
    }

    /// The real cuBLAS exports every function the table names. Its wheel is large, so this runs only where a developer
    /// points `MOE_EVAL_CUBLAS_DIR` at one (e.g. `pip install nvidia-cublas-cu12`, then `.../nvidia/cublas/lib`).
    @Test func aRealCuBLASBindsEveryFunction() throws {
        guard let folder = ProcessInfo.processInfo.environment["MOE_EVAL_CUBLAS_DIR"], !folder.isEmpty else {
            try Test.cancel("MOE_EVAL_CUBLAS_DIR is not set (a folder holding libcublas.so.N from NVIDIA's wheel)")
        }
        let library = try CUDALibraries.loadCUBLAS(search: .folders([folder], origin: "MOE_EVAL_CUBLAS_DIR"))
        #expect(library.path.hasPrefix(folder) && library.path.contains("libcublas.so.\(library.majorVersion)"))
    }

    /// Without a device `--device auto` falls back with a reason; with one, the device is described.
    @Test func probeNeverThrowsAndExplainsItself() {
        switch CUDAContext.probe() {
        case .success(let context):
            #expect(context.device.computeCapability >= 80)
            #expect(!context.device.name.isEmpty)
        case .failure(let unavailable):
            #expect(unavailable.description.hasPrefix("no CUDA device: "))
            #expect(unavailable.description.contains("libcuda.so.1") || unavailable.description.contains("compute capability"))
        }
    }
}
