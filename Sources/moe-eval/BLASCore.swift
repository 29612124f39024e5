import CBLAS
import Foundation

/// OpenBLAS picks its kernels from the CPU model number when the library loads. Releases older than the
/// CPU (Debian 12's 0.3.21 on Sapphire/Emerald Rapids, model 0x8F/0xCF) fall back to the SSE3 "Prescott"
/// kernels, which run sgemm 3–4× slower than the AVX-512 ones the CPU supports. The choice cannot be changed
/// after loading, so when that fallback happened on a CPU with the needed instruction sets, moe-eval restarts
/// itself once with `OPENBLAS_CORETYPE` set. A `OPENBLAS_CORETYPE` the user set is always left alone.
enum BLASCore {
    static let restartedMarker = "MOE_EVAL_BLAS_CORE_SELECTED"

    static func selectFastKernels() {
        #if os(Linux)
        let environment = ProcessInfo.processInfo.environment
        guard environment["OPENBLAS_CORETYPE"] == nil, environment[restartedMarker] == nil,
            let name = openblas_get_corename().map({ String(cString: $0) }),
            ["prescott", "core2", "nehalem", "atom", "katmai", "coppermine", "northwood", "banias"].contains(name.lowercased()),
            let wanted = bestCore(flags: cpuFlags())
        else { return }
        setenv("OPENBLAS_CORETYPE", wanted, 1)
        setenv(restartedMarker, "\(name)→\(wanted)", 1)
        let arguments = CommandLine.arguments.map { strdup($0) } + [nil]
        execv("/proc/self/exe", arguments)
        // execv returns only on failure: carry on with the slower kernels.
        #endif
    }

    /// The OpenBLAS core whose kernels need only instruction sets this CPU reports.
    static func bestCore(flags: Set<String>) -> String? {
        if flags.isSuperset(of: ["avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"]) { return "SkylakeX" }
        if flags.isSuperset(of: ["avx2", "fma"]) { return "Haswell" }
        return nil
    }

    static func cpuFlags() -> Set<String> {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }),
            let colon = line.firstIndex(of: ":")
        else { return [] }
        return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
    }
}
