/// Which OpenBLAS kernels to ask for with `OPENBLAS_CORETYPE` (the restart itself is in the CLI's `BLASCore`).
/// OpenBLAS picks its core from the CPU model number when it loads; a release older than the CPU picks a core
/// whose kernels use fewer instruction sets than the CPU has (Debian 12's 0.3.21 gives Sapphire Rapids its SSE3
/// "Prescott" kernels and AMD Zen 4 its AVX2 "Zen"/Haswell ones: sgemm 133 GFLOP/s per thread against 258 with
/// the AVX-512 SkylakeX kernels, issue 15). The choice compares instruction-set levels of OpenBLAS's own core
/// names with the CPU's flags; it never looks at the CPU model.
public enum OpenBLASCore {
    /// Vector instruction set of a core's sgemm kernels, as OpenBLAS's kernel tables (KERNEL.<CORE>) define them.
    public enum KernelLevel: Int, Comparable, Sendable {
        case sse = 0, avx = 1, avx2 = 2, avx512 = 3
        public static func < (a: KernelLevel, b: KernelLevel) -> Bool { a.rawValue < b.rawValue }
    }

    /// The kernel level of an OpenBLAS core name (`openblas_get_corename`, case-insensitive); nil for names this
    /// table does not know (a newer OpenBLAS's core), which are left alone.
    public static func kernelLevel(ofCore name: String) -> KernelLevel? {
        switch name.lowercased() {
        case "prescott", "core2", "nehalem", "atom", "katmai", "coppermine", "northwood", "banias", "penryn", "dunnington",
            "opteron", "barcelona", "bobcat", "nano":
            return .sse
        case "sandybridge", "bulldozer", "piledriver", "steamroller", "excavator":
            return .avx
        case "haswell", "zen":
            return .avx2
        case "skylakex", "cooperlake", "sapphirerapids":
            return .avx512
        default:
            return nil
        }
    }

    /// The OpenBLAS core with the widest kernels whose instruction sets this CPU reports.
    public static func bestCore(flags: Set<String>) -> String? {
        if flags.isSuperset(of: ["avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"]) { return "SkylakeX" }
        if flags.isSuperset(of: ["avx2", "fma"]) { return "Haswell" }
        return nil
    }

    /// The core to restart with, or nil to keep the loaded one: only when the user did not choose one and the
    /// loaded core's kernels use a narrower instruction set than the best core the CPU's flags allow.
    public static func coreToRestartWith(loaded: String, flags: Set<String>, userChoice: String?) -> String? {
        guard userChoice == nil, let best = bestCore(flags: flags), let bestLevel = kernelLevel(ofCore: best) else { return nil }
        guard let loadedLevel = kernelLevel(ofCore: loaded), loadedLevel < bestLevel else { return nil }
        return best
    }
}
