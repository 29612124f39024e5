import CBLAS
import Dispatch

/// Thread control. BLAS threads and our own parallel loops share one budget: a parallel loop never
/// calls multi-threaded BLAS inside its iterations (see `Compute.serialBLAS`).
public enum Compute {
    nonisolated(unsafe) private static var threadCount = defaultThreadCount()

    public static var threads: Int { threadCount }

    /// Sets the number of compute threads for BLAS and for `parallelFor`.
    public static func setThreads(_ n: Int) {
        threadCount = max(1, n)
        #if !os(macOS)
        openblas_set_num_threads(Int32(threadCount))
        #endif
    }

    static func defaultThreadCount() -> Int {
        #if canImport(Glibc)
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        #else
        return 4
        #endif
    }

    /// Runs `body(i)` for i in 0..<n over at most `threads` workers, each taking a contiguous range.
    public static func parallelFor(_ n: Int, minChunk: Int = 1, _ body: @Sendable (Int) -> Void) {
        if n <= 0 { return }
        let workers = min(threadCount, max(1, n / max(minChunk, 1)))
        if workers <= 1 {
            for i in 0..<n { body(i) }
            return
        }
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            let lo = n * w / workers, hi = n * (w + 1) / workers
            for i in lo..<hi { body(i) }
        }
    }

    /// Runs `body` with BLAS single-threaded (for BLAS calls made inside `parallelFor`).
    public static func serialBLAS<R>(_ body: () throws -> R) rethrows -> R {
        #if !os(macOS)
        if threadCount == 1 { return try body() }
        openblas_set_num_threads(1)
        defer { openblas_set_num_threads(Int32(threadCount)) }
        #endif
        return try body()
    }
}

#if canImport(Glibc)
import Glibc
#endif

extension Compute {
    /// Splits 0..<n into at most `threads` contiguous ranges and runs `body(worker, range)` on each,
    /// so each worker can own one scratch buffer.
    public static func parallelRanges(_ n: Int, _ body: @Sendable (_ worker: Int, _ range: Range<Int>) -> Void) {
        if n <= 0 { return }
        let workers = min(threads, n)
        if workers <= 1 { body(0, 0..<n); return }
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            body(w, (n * w / workers)..<(n * (w + 1) / workers))
        }
    }
}
