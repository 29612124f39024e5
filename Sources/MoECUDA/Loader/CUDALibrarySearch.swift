import Foundation

/// Where the CUDA libraries are looked for, in order. The first location holding a library that opens and exports
/// every function moe-eval uses wins; a library of a newer major version wins within one location.
///
/// The standard order (`standard(environment:)`):
/// 1. every folder of `MOE_EVAL_CUDA_LIB_DIR` (colon-separated), so a user can always point at the right copy;
/// 2. the dynamic loader's own search (`LD_LIBRARY_PATH`, the ld.so cache: where a driver install puts libcuda.so.1);
/// 3. NVIDIA's Python wheels (`nvidia/cu13/lib`, `nvidia/cublas/lib`, `nvidia/cuda_nvrtc/lib`) in the site-packages
///    of the active venv (`VIRTUAL_ENV`), of the conda prefix (`CONDA_PREFIX`, whose `lib` is searched too), of the
///    user (`~/.local/lib/python3*/site-packages`) and of the system Python;
/// 4. the CUDA toolkit's `/usr/local/cuda/lib64`.
public struct CUDALibrarySearch: Sendable, Hashable {
    public enum Location: Sendable, Hashable, CustomStringConvertible {
        /// A folder; `origin` says why it is searched (shown in the load report).
        case folder(String, origin: String)
        /// A bare file name handed to dlopen, which searches `LD_LIBRARY_PATH` and the ld.so cache.
        case dynamicLoaderPath

        public var description: String {
            switch self {
            case .folder(let path, let origin): "\(path) (\(origin))"
            case .dynamicLoaderPath: "the dynamic loader's search path"
            }
        }
    }

    public var locations: [Location]

    public init(locations: [Location]) { self.locations = locations }

    /// Only these folders: the way tests and `MOE_EVAL_NVRTC_DIR` name one exact copy.
    public static func folders(_ paths: [String], origin: String) -> CUDALibrarySearch {
        CUDALibrarySearch(locations: paths.map { .folder($0, origin: origin) })
    }

    /// The folder names NVIDIA's wheels install their libraries in, relative to site-packages.
    public static let wheelLibraryFolders = ["nvidia/cu13/lib", "nvidia/cublas/lib", "nvidia/cuda_nvrtc/lib"]

    /// The order described above. `home`, `systemPythonPrefixes` and `toolkitFolder` exist so that tests can
    /// build the whole order inside a temporary folder.
    public static func standard(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        home: String? = nil,
        systemPythonPrefixes: [String] = ["/usr/local", "/usr"],
        toolkitFolder: String = "/usr/local/cuda/lib64"
    ) -> CUDALibrarySearch {
        var locations: [Location] = []
        if let list = environment["MOE_EVAL_CUDA_LIB_DIR"] {
            for folder in list.split(separator: ":") where !folder.isEmpty {
                locations.append(.folder(String(folder), origin: "MOE_EVAL_CUDA_LIB_DIR"))
            }
        }
        locations.append(.dynamicLoaderPath)
        if let venv = environment["VIRTUAL_ENV"], !venv.isEmpty {
            locations += wheelFolders(sitePackages: sitePackages(prefix: venv), origin: "VIRTUAL_ENV wheel")
        }
        if let conda = environment["CONDA_PREFIX"], !conda.isEmpty {
            locations += wheelFolders(sitePackages: sitePackages(prefix: conda), origin: "CONDA_PREFIX wheel")
            locations.append(.folder((conda as NSString).appendingPathComponent("lib"), origin: "CONDA_PREFIX"))
        }
        if let home = home ?? environment["HOME"], !home.isEmpty {
            let userPrefix = (home as NSString).appendingPathComponent(".local")
            locations += wheelFolders(sitePackages: sitePackages(prefix: userPrefix), origin: "user Python wheel")
        }
        for prefix in systemPythonPrefixes {
            locations += wheelFolders(sitePackages: sitePackages(prefix: prefix), origin: "system Python wheel")
        }
        locations.append(.folder(toolkitFolder, origin: "CUDA toolkit"))
        var seen = Set<Location>()
        return CUDALibrarySearch(locations: locations.filter { seen.insert($0).inserted })
    }

    /// `PREFIX/lib/python3*/{site,dist}-packages` and Debian's `PREFIX/lib/python3/dist-packages` that exist, newest
    /// Python first.
    static func sitePackages(prefix: String) -> [String] {
        let lib = (prefix as NSString).appendingPathComponent("lib")
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: lib) else { return [] }
        let pythons = names.filter { $0.hasPrefix("python3") }.sorted { pythonOrder($0) > pythonOrder($1) }
        var found: [String] = []
        for python in pythons {
            for kind in ["site-packages", "dist-packages"] {
                let path = "\(lib)/\(python)/\(kind)"
                var isFolder: ObjCBool = false
                if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue {
                    found.append(path)
                }
            }
        }
        return found
    }

    /// python3.12 after python3.9: numeric minor version, 0 for `python3`.
    private static func pythonOrder(_ name: String) -> Int {
        Int(name.dropFirst("python3.".count)) ?? 0
    }

    private static func wheelFolders(sitePackages: [String], origin: String) -> [Location] {
        sitePackages.flatMap { site in wheelLibraryFolders.map { .folder("\(site)/\($0)", origin: origin) } }
    }
}
