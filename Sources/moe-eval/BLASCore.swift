import CBLAS
import Foundation
import MoETensor

/// OpenBLAS chooses its kernels when the library loads and cannot change them afterwards, so when it loaded a core
/// narrower than the CPU allows (`OpenBLASCore.coreToRestartWith`), moe-eval restarts itself once with
/// `OPENBLAS_CORETYPE` set. A `OPENBLAS_CORETYPE` the user set is always left alone.
enum BLASCore {
    static let restartedMarker = "MOE_EVAL_BLAS_CORE_SELECTED"

    static func selectFastKernels() {
        #if os(Linux)
        let environment = ProcessInfo.processInfo.environment
        guard environment[restartedMarker] == nil,
            let loaded = openblas_get_corename().map({ String(cString: $0) }),
            let wanted = OpenBLASCore.coreToRestartWith(
                loaded: loaded, flags: cpuFlags(), userChoice: environment["OPENBLAS_CORETYPE"])
        else { return }
        setenv("OPENBLAS_CORETYPE", wanted, 1)
        setenv(restartedMarker, "\(loaded)→\(wanted)", 1)
        let arguments = CommandLine.arguments.map { strdup($0) } + [nil]
        execv("/proc/self/exe", arguments)
        // execv returns only on failure: carry on with the slower kernels.
        #endif
    }

    static func cpuFlags() -> Set<String> {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }),
            let colon = line.firstIndex(of: ":")
        else { return [] }
        return Set(line[line.index(after: colon)...].split(separator: " ").map(String.init))
    }
}
