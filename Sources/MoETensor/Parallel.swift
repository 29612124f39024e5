import CBLAS
import CKernels
import Dispatch
import Foundation

/// Thread control. moe-eval owns all compute threads: BLAS always runs single-threaded and the kernels
/// split work across `threads` workers themselves (GEMMs by output columns, attention by heads, experts by
/// bucket), so BLAS's own pool never competes with ours and `threads` is the whole budget. A parallel loop
/// started inside another one runs serially on its worker.
public enum Compute {
    nonisolated(unsafe) private static var threadCount = defaultThreadCount()
    /// Pins BLAS to one thread and tunes the allocator the first time a tensor or kernel is used.
    static let blasPinned: Void = {
        #if !os(macOS)
        openblas_set_num_threads(1)
        #endif
        moe_tune_allocator()
    }()

    /// Compute threads for loops started on this thread: `withThreads`'s count inside it, else the process-wide one.
    public static var threads: Int {
        let override = Int(moe_threads_override())
        return override > 0 ? override : threadCount
    }

    /// Runs `body` with `n` compute threads for the loops it starts on this thread, leaving the process-wide count
    /// (`setThreads`) alone, so that work running side by side in one process (tests) does not change each
    /// other's thread splits.
    public static func withThreads<T>(_ n: Int, _ body: () throws -> T) rethrows -> T {
        _ = blasPinned
        let saved = moe_threads_override()
        moe_set_threads_override(Int32(max(1, n)))
        defer { moe_set_threads_override(saved) }
        return try body()
    }

    /// Sets the number of compute threads.
    public static func setThreads(_ n: Int) {
        threadCount = max(1, n)
        _ = blasPinned
    }

    /// All cores, shared evenly among the processes a launcher (mpirun) started on this host, so that
    /// `mpirun -np N` on one machine does not run N × cores threads.
    static func defaultThreadCount() -> Int {
        #if canImport(Glibc)
        let cores = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        #else
        let cores = 4
        #endif
        let environment = ProcessInfo.processInfo.environment
        let local =
            ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "PMIX_LOCAL_SIZE"].lazy
            .compactMap { environment[$0].flatMap { Int($0) } }.first ?? 1
        return max(1, cores / max(1, local))
    }

    /// Workers a loop of `n` items would use on this thread (1 inside another parallel loop).
    public static func workers(for n: Int, minChunk: Int = 1) -> Int {
        if moe_parallel_depth() > 0 { return 1 }
        return min(threads, max(1, n / max(minChunk, 1)))
    }

    /// Runs `body(i)` for i in 0..<n over at most `threads` workers, each taking a contiguous range.
    public static func parallelFor(_ n: Int, minChunk: Int = 1, _ body: @Sendable (Int) -> Void) {
        if n <= 0 { return }
        let workers = workers(for: n, minChunk: minChunk)
        if workers <= 1 {
            for i in 0..<n { body(i) }
            return
        }
        perform(workers) { w in
            moe_parallel_depth_add(1)
            defer { moe_parallel_depth_add(-1) }
            let lo = n * w / workers, hi = n * (w + 1) / workers
            for i in lo..<hi { body(i) }
        }
    }

    /// A buffer of at least `count` floats owned by the calling thread and reused by later calls with the
    /// same `slot` (1–3; slot 0 belongs to `Linear`), so per-layer loops allocate nothing. Contents undefined.
    @inline(__always)
    public static func threadScratch(_ slot: Int, _ count: Int) -> UnsafeMutablePointer<Float>? {
        moe_thread_scratch(Int32(slot), count)
    }

    /// Memory read bandwidth in bytes/s with `threads` workers: best of `repeats` passes over a buffer far
    /// larger than the caches (the decode roofline's denominator).
    public static func measureReadBandwidth(bytes: Int = 1 << 30, repeats: Int = 3) -> Double {
        let count = bytes / 4
        // On the pages the weights get (HugePages), so the roofline is what their reads could reach.
        let raw = HugePages.allocate(byteCount: count * 4)
        defer { raw.deallocate() }
        let buffer = raw.bindMemory(to: Float.self, capacity: count)
        let bp = SendablePointer(buffer)
        parallelFor(64) { chunk in
            (bp.pointer + count * chunk / 64).update(repeating: 1, count: count * (chunk + 1) / 64 - count * chunk / 64)
        }
        var best = Double.infinity
        for _ in 0..<repeats {
            let start = DispatchTime.now().uptimeNanoseconds
            parallelRanges(threads) { _, parts in
                for part in parts {
                    let lo = count * part / threads, hi = count * (part + 1) / threads
                    if moe_sum_f32(bp.pointer + lo, hi - lo) < 0 { print("") }
                }
            }
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        return Double(count * 4) / best
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension Compute {
    /// Splits 0..<n into at most `threads` contiguous ranges and runs `body(worker, range)` on each,
    /// so each worker can own one scratch buffer.
    public static func parallelRanges(_ n: Int, _ body: @Sendable (_ worker: Int, _ range: Range<Int>) -> Void) {
        if n <= 0 { return }
        let workers = workers(for: n)
        if workers <= 1 { body(0, 0..<n); return }
        perform(workers) { w in
            moe_parallel_depth_add(1)
            defer { moe_parallel_depth_add(-1) }
            body(w, (n * w / workers)..<(n * (w + 1) / workers))
        }
    }

    /// Like `parallelRanges`, but workers take `chunk`-sized pieces from a shared counter, for items of
    /// uneven cost (causal attention blocks, experts with different bucket sizes).
    public static func parallelChunks(_ n: Int, chunk: Int = 1, _ body: @Sendable (_ range: Range<Int>) -> Void) {
        if n <= 0 { return }
        let chunk = max(chunk, 1)
        let pieces = (n + chunk - 1) / chunk
        let workers = workers(for: pieces)
        if workers <= 1 { body(0..<n); return }
        let counter = AtomicCounter()
        perform(workers) { _ in
            moe_parallel_depth_add(1)
            defer { moe_parallel_depth_add(-1) }
            while true {
                let piece = counter.next()
                if piece >= pieces { break }
                body((piece * chunk)..<min(n, (piece + 1) * chunk))
            }
        }
    }
}

extension Compute {
    /// `body(i)` for i in 0..<n at the same time: on the spinning compute pool (`moe_pool_run`, CKernels/pool.c) when
    /// it is free, else (another thread's loop holds it) on libdispatch. On virtual machines libdispatch's wake-up of
    /// a parked thread cost tens of microseconds per loop (docs/PERFORMANCE.md, "Compute threads"), and decode runs
    /// dozens of short loops per token.
    static func perform(_ n: Int, _ body: @Sendable (Int) -> Void) {
        let ran = withoutActuallyEscaping(body) { escapable -> Int32 in
            var job = PoolJob(body: escapable)
            return withUnsafeMutablePointer(to: &job) { pointer in
                moe_pool_run(n, n, { context, index in
                    context!.assumingMemoryBound(to: PoolJob.self).pointee.body(index)
                }, pointer)
            }
        }
        if ran == 0 { DispatchQueue.concurrentPerform(iterations: n, execute: body) }
    }
}

/// A loop body handed to the C pool through its context pointer.
private struct PoolJob {
    let body: @Sendable (Int) -> Void
}

/// A shared work counter for `parallelChunks`.
final class AtomicCounter: @unchecked Sendable {
    private var value = 0
    private var lock = pthread_mutex_t()
    init() { pthread_mutex_init(&lock, nil) }
    deinit { pthread_mutex_destroy(&lock) }
    func next() -> Int {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        let v = value
        value += 1
        return v
    }
}
