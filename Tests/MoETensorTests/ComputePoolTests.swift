import CKernels
import Dispatch
import Foundation
import Testing

@testable import MoETensor

/// The spinning compute pool behind `Compute.perform` (CKernels/pool.c): every index of every job runs exactly once,
/// back-to-back jobs never mix (the generation/ticket handshake), callers on other threads and calls from inside a
/// job fall back to libdispatch instead of waiting, and the loops built on it give the same results.
@Suite struct ComputePoolTests {
    /// Per-index run counters written without locks: each index is owned by exactly one run of the body.
    final class Counts: @unchecked Sendable {
        let slots: UnsafeMutablePointer<Int>
        let count: Int
        init(_ count: Int) {
            self.count = count
            slots = .allocate(capacity: max(count, 1))
            slots.initialize(repeating: 0, count: max(count, 1))
        }
        deinit { slots.deallocate() }
        func reset() { slots.update(repeating: 0, count: count) }
        var allOnce: Bool { (0..<count).allSatisfy { slots[$0] == 1 } }
    }

    @Test(arguments: [1, 2, 3, 7, 64])
    func everyIndexRunsOnceInBackToBackJobs(count: Int) {
        let counts = Counts(count)
        for job in 0..<2_000 {
            counts.reset()
            Compute.perform(count) { index in counts.slots[index] += 1 }
            if !counts.allOnce {
                Issue.record("job \(job) of \(count) indices: run counts \((0..<count).map { counts.slots[$0] })")
                return
            }
        }
    }

    @Test func theCallerRunsTheLoopWhenThePoolIsBusy() {
        final class Flag: @unchecked Sendable { var nestedRan = 0; var nestedResult: Int32 = -1 }
        let flag = Flag()
        var context = flag
        let ran = withUnsafeMutablePointer(to: &context) { pointer in
            moe_pool_run(2, 2, { context, index in
                let flag = context!.assumingMemoryBound(to: Flag.self).pointee
                guard index == 0 else { return }
                // A job started from inside a job finds the pool busy: 0, nothing run.
                flag.nestedResult = moe_pool_run(1, 2, { context, _ in
                    context!.assumingMemoryBound(to: Flag.self).pointee.nestedRan += 1
                }, context)
            }, pointer)
        }
        #expect(ran == 1)
        #expect(flag.nestedResult == 0)
        #expect(flag.nestedRan == 0)
    }

    @Test func loopsOnManyThreadsAtOnceAllComplete() async {
        // Several test threads start loops at the same time: one holds the pool, the others use libdispatch.
        await withTaskGroup(of: Bool.self) { group in
            for caller in 0..<6 {
                group.addTask {
                    let n = 50 + caller
                    let counts = Counts(n)
                    for _ in 0..<300 {
                        counts.reset()
                        Compute.withThreads(2 + caller % 3) {
                            Compute.parallelFor(n) { index in counts.slots[index] += 1 }
                        }
                        if !counts.allOnce { return false }
                    }
                    return true
                }
            }
            for await ok in group { #expect(ok) }
        }
    }

    @Test func parallelLoopsMatchASerialSum() {
        let n = 10_007
        let values = (0..<n).map { Float($0 % 97) - 48 }
        let expected = values.reduce(0, +)
        for threads in [1, 2, 3, 5] {
            let partial = UnsafeMutablePointer<Float>.allocate(capacity: threads)
            defer { partial.deallocate() }
            partial.initialize(repeating: 0, count: threads)
            let out = SendablePointer(partial)
            values.withUnsafeBufferPointer { buffer in
                let input = SendableConstPointer(buffer.baseAddress!)
                Compute.withThreads(threads) {
                    Compute.parallelRanges(n) { worker, range in
                        var sum: Float = 0
                        for i in range { sum += input.pointer[i] }
                        out.pointer[worker] = sum
                    }
                }
            }
            let total = (0..<threads).reduce(Float(0)) { $0 + partial[$1] }
            #expect(total == expected, "\(threads) threads")
        }
    }
}
