import CCUDA
import Foundation

/// One path the loader tried and why it was not used.
public struct CUDALoadAttempt: Sendable, Hashable, CustomStringConvertible {
    /// A file path, a bare name given to the dynamic loader, or a folder that does not exist.
    public let path: String
    public let failure: String

    public var description: String { "\(path): \(failure)" }
}

/// A CUDA library could not be loaded from any location: every path tried, each with its reason.
public struct CUDALibraryLoadError: Error, Sendable, CustomStringConvertible {
    public let library: CUDALibraryKind
    public let attempts: [CUDALoadAttempt]

    public var description: String {
        let names = library.fileNames.joined(separator: ", ")
        let tried = attempts.map { "\n  \($0)" }.joined()
        return "cannot load \(library.title) (\(names)); set MOE_EVAL_CUDA_LIB_DIR to the folder that holds it. Tried:\(tried)"
    }
}

public enum CUDALibraryKind: String, Sendable, CaseIterable {
    case driver, cublas, nvrtc

    /// Major versions tried, newest first; the driver's soname has been libcuda.so.1 forever.
    public var majorVersions: [Int] { self == .driver ? [1] : [13, 12, 11] }

    public func fileName(major: Int) -> String {
        switch self {
        case .driver: "libcuda.so.\(major)"
        case .cublas: "libcublas.so.\(major)"
        case .nvrtc: "libnvrtc.so.\(major)"
        }
    }

    public var fileNames: [String] { majorVersions.map(fileName(major:)) }

    var title: String {
        switch self {
        case .driver: "the CUDA driver"
        case .cublas: "cuBLAS"
        case .nvrtc: "NVRTC"
        }
    }
}

/// The NVIDIA driver API (libcuda.so.1), opened at run time.
public final class CUDADriverLibrary: @unchecked Sendable {
    /// The file the dynamic loader opened.
    public let path: String
    let api: MoECUDADriverAPI

    init(path: String, api: MoECUDADriverAPI) {
        self.path = path
        self.api = api
    }
}

/// cuBLAS (libcublas.so.N with its libcublasLt.so.N), opened at run time.
public final class CUBLASLibrary: @unchecked Sendable {
    public let path: String
    public let majorVersion: Int
    let api: MoECUBLASAPI

    init(path: String, majorVersion: Int, api: MoECUBLASAPI) {
        self.path = path
        self.majorVersion = majorVersion
        self.api = api
    }
}

/// NVRTC (libnvrtc.so.N with its libnvrtc-builtins), opened at run time.
public final class NVRTCLibrary: @unchecked Sendable {
    public let path: String
    /// From `nvrtcVersion`, e.g. (12, 9).
    public let version: (major: Int, minor: Int)
    /// The `sm_XX` numbers this NVRTC can generate code for, ascending.
    public let supportedArchitectures: [Int]
    let api: MoENVRTCAPI

    init(path: String, version: (Int, Int), supportedArchitectures: [Int], api: MoENVRTCAPI) {
        self.path = path
        self.version = version
        self.supportedArchitectures = supportedArchitectures
        self.api = api
    }
}

/// Finds and opens the CUDA libraries at run time (nothing of CUDA is linked at build time). Libraries stay loaded
/// for the life of the process: CUDA's libraries are not written to be unloaded.
public final class CUDALibraries: @unchecked Sendable {
    public let driver: CUDADriverLibrary
    public let cublas: CUBLASLibrary
    public let nvrtc: NVRTCLibrary

    public init(driver: CUDADriverLibrary, cublas: CUBLASLibrary, nvrtc: NVRTCLibrary) {
        self.driver = driver
        self.cublas = cublas
        self.nvrtc = nvrtc
    }

    /// All three, each from the first location in `search` that has it.
    public static func load(search: CUDALibrarySearch = .standard()) throws(CUDALibraryLoadError) -> CUDALibraries {
        CUDALibraries(driver: try loadDriver(search: search), cublas: try loadCUBLAS(search: search), nvrtc: try loadNVRTC(search: search))
    }

    public static func loadDriver(search: CUDALibrarySearch = .standard()) throws(CUDALibraryLoadError) -> CUDADriverLibrary {
        try firstLoadable(.driver, search: search) { handle, path, _ throws(LoadFailure) in
            var api = MoECUDADriverAPI()
            if let missing = moe_cuda_bind_driver(handle, &api) { throw .missingSymbol(String(cString: missing)) }
            return CUDADriverLibrary(path: path, api: api)
        }
    }

    public static func loadCUBLAS(search: CUDALibrarySearch = .standard()) throws(CUDALibraryLoadError) -> CUBLASLibrary {
        try firstLoadable(.cublas, search: search) { handle, path, major throws(LoadFailure) in
            var api = MoECUBLASAPI()
            if let missing = moe_cuda_bind_cublas(handle, &api) { throw .missingSymbol(String(cString: missing)) }
            return CUBLASLibrary(path: path, majorVersion: major, api: api)
        }
    }

    public static func loadNVRTC(search: CUDALibrarySearch = .standard()) throws(CUDALibraryLoadError) -> NVRTCLibrary {
        try firstLoadable(.nvrtc, search: search) { handle, path, major throws(LoadFailure) in
            var api = MoENVRTCAPI()
            if let missing = moe_cuda_bind_nvrtc(handle, &api) { throw .missingSymbol(String(cString: missing)) }
            var versionMajor: Int32 = 0
            var versionMinor: Int32 = 0
            guard api.nvrtcVersion!(&versionMajor, &versionMinor) == MOE_NVRTC_SUCCESS else {
                throw .unusable("nvrtcVersion failed")
            }
            guard Int(versionMajor) == major else {
                throw .unusable("reports NVRTC version \(versionMajor).\(versionMinor), not \(major).x")
            }
            var count: Int32 = 0
            guard api.nvrtcGetNumSupportedArchs!(&count) == MOE_NVRTC_SUCCESS, count > 0, count < 1024 else {
                throw .unusable("nvrtcGetNumSupportedArchs failed")
            }
            var architectures = [Int32](repeating: 0, count: Int(count))
            guard api.nvrtcGetSupportedArchs!(&architectures) == MOE_NVRTC_SUCCESS else {
                throw .unusable("nvrtcGetSupportedArchs failed")
            }
            return NVRTCLibrary(
                path: path, version: (Int(versionMajor), Int(versionMinor)),
                supportedArchitectures: architectures.map(Int.init).sorted(), api: api)
        }
    }

    enum LoadFailure: Error {
        case missingSymbol(String)
        case unusable(String)

        var text: String {
            switch self {
            case .missingSymbol(let name): "opened, but it does not export \(name)"
            case .unusable(let reason): "opened, but \(reason)"
            }
        }
    }

    /// Tries each location in order and each major version within it; returns the first library that opens and
    /// binds, or throws with every attempt.
    private static func firstLoadable<Library>(
        _ kind: CUDALibraryKind, search: CUDALibrarySearch,
        bind: (_ handle: UnsafeMutableRawPointer, _ path: String, _ major: Int) throws(LoadFailure) -> Library
    ) throws(CUDALibraryLoadError) -> Library {
        var attempts: [CUDALoadAttempt] = []
        for location in search.locations {
            let folder: String?
            switch location {
            case .dynamicLoaderPath:
                folder = nil
            case .folder(let path, _):
                var isFolder: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue else {
                    attempts.append(CUDALoadAttempt(path: location.description, failure: "folder does not exist"))
                    continue
                }
                folder = path
            }
            for major in kind.majorVersions {
                let name = kind.fileName(major: major)
                let target = folder.map { "\($0)/\(name)" } ?? name
                let shown = folder == nil ? "\(name) (\(location))" : target
                if folder != nil && !FileManager.default.fileExists(atPath: target) {
                    attempts.append(CUDALoadAttempt(path: shown, failure: "not present"))
                    continue
                }
                if let folder { openCompanions(of: kind, major: major, in: folder) }
                let handle: UnsafeMutableRawPointer
                switch open(target) {
                case .success(let opened): handle = opened
                case .failure(let error):
                    attempts.append(CUDALoadAttempt(path: shown, failure: error.message))
                    continue
                }
                let opened = loadedPath(handle) ?? target
                do throws(LoadFailure) {
                    return try bind(handle, opened, major)
                } catch {
                    moe_cuda_close(handle)
                    attempts.append(CUDALoadAttempt(path: opened, failure: error.text))
                }
            }
        }
        throw CUDALibraryLoadError(library: kind, attempts: attempts)
    }

    struct OpenError: Error { let message: String }

    static func open(_ path: String, global: Bool = false) -> Result<UnsafeMutableRawPointer, OpenError> {
        var message = [CChar](repeating: 0, count: 1024)
        guard let handle = moe_cuda_open(path, global ? 1 : 0, &message, message.count) else {
            let text = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            // dlerror repeats the path first; the report already names it.
            let reason = text.hasPrefix(path + ": ") ? String(text.dropFirst(path.count + 2)) : text
            return .failure(OpenError(message: reason.isEmpty ? "dlopen failed" : reason))
        }
        return .success(handle)
    }

    private static func loadedPath(_ handle: UnsafeMutableRawPointer) -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        guard moe_cuda_loaded_path(handle, &buffer, buffer.count) == 0 else { return nil }
        let path = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return path.isEmpty ? nil : path
    }

    /// Libraries a wheel's copy needs from its own folder, which the dynamic loader would not search: cuBLAS's
    /// libcublasLt (the toolkit's copy finds it through its RUNPATH, an older wheel's might not) and NVRTC's
    /// libnvrtc-builtins, which libnvrtc opens by name at compile time. Once open, the loader reuses them by soname.
    /// A companion that fails to open is left for the main library's own error to explain.
    private static func openCompanions(of kind: CUDALibraryKind, major: Int, in folder: String) {
        switch kind {
        case .driver:
            return
        case .cublas:
            let lt = "\(folder)/libcublasLt.so.\(major)"
            if FileManager.default.fileExists(atPath: lt) { _ = open(lt) }
        case .nvrtc:
            let prefix = "libnvrtc-builtins.so.\(major)."
            let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
            for name in names.sorted() where name.hasPrefix(prefix) {
                _ = open("\(folder)/\(name)")
            }
        }
    }
}
