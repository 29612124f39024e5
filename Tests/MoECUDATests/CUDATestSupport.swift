import Foundation
import Testing

@testable import MoECUDA

/// Scratch folders and the two ways a test finds a real CUDA library: NVRTC from the wheel scripts/test.sh installs,
/// and a device for the run tests.
enum CUDATestSupport {
    static func scratch(_ label: String) throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("moe-cuda-\(label)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder
    }

    /// An empty file: dlopen rejects it ("file too short").
    static func emptyFile(_ folder: URL, _ name: String) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: folder.appendingPathComponent(name).path, contents: Data()))
    }

    /// NVRTC from `MOE_EVAL_NVRTC_DIR`, else from the venv scripts/test.sh prepares
    /// (`${MOE_EVAL_NVRTC_VENV:-$HOME/.cache/moe-eval/nvrtc-venv}`). Neither present: the test is skipped with the
    /// reason, except under CI, where the compile check must run and a missing NVRTC fails it.
    static func nvrtcOrSkip() throws -> NVRTCLibrary {
        let environment = ProcessInfo.processInfo.environment
        let search: CUDALibrarySearch
        let origin: String
        if let folder = environment["MOE_EVAL_NVRTC_DIR"], !folder.isEmpty {
            search = .folders([folder], origin: "MOE_EVAL_NVRTC_DIR")
            origin = "MOE_EVAL_NVRTC_DIR=\(folder)"
        } else {
            let venv =
                environment["MOE_EVAL_NVRTC_VENV"]
                ?? ((environment["HOME"] ?? NSHomeDirectory()) as NSString).appendingPathComponent(".cache/moe-eval/nvrtc-venv")
            let folders = CUDALibrarySearch.sitePackages(prefix: venv).map { "\($0)/nvidia/cuda_nvrtc/lib" }
            // No site-packages at all: name the folder looked for, so the reason is not an empty list.
            search = .folders(
                folders.isEmpty ? ["\(venv)/lib/python3.*/site-packages/nvidia/cuda_nvrtc/lib"] : folders, origin: "NVRTC venv")
            origin = "the venv \(venv)"
        }
        do {
            return try CUDALibraries.loadNVRTC(search: search)
        } catch {
            let reason =
                "no NVRTC from \(origin) (scripts/test.sh installs nvidia-cuda-nvrtc-cu12 there, or set MOE_EVAL_NVRTC_DIR): \(error)"
            if environment["CI"] != nil {
                Issue.record(Comment(rawValue: reason))
                throw error
            }
            try Test.cancel(Comment(rawValue: reason))
        }
    }

    /// A device context, or the test is skipped with "no CUDA device: <load report>".
    static func contextOrSkip() throws -> CUDAContext {
        switch CUDAContext.probe() {
        case .success(let context): return context
        case .failure(let unavailable): try Test.cancel(Comment(rawValue: unavailable.description))
        }
    }
}
