import Foundation
import MoETensor
import Testing

@testable import MoEModels

/// Ranks of one process exchanging bytes through shared memory, so that expert parallelism runs in a test
/// without MPI: every collective posts each rank's outgoing blocks, waits for all ranks, then reads.
final class InProcessExchange: @unchecked Sendable {
    let size: Int
    private let condition = NSCondition()
    private var arrived = 0, generation = 0
    private var posted: [[[UInt8]]]

    init(size: Int) {
        self.size = size
        posted = Array(repeating: Array(repeating: [], count: size), count: size)
    }

    private func barrier() {
        condition.lock()
        let current = generation
        arrived += 1
        if arrived == size {
            arrived = 0
            generation += 1
            condition.broadcast()
        } else {
            while current == generation { condition.wait() }
        }
        condition.unlock()
    }

    /// `outgoing[r]` goes to rank r; returns what each rank sent to `rank`.
    func exchange(rank: Int, _ outgoing: [[UInt8]]) -> [[UInt8]] {
        condition.lock(); posted[rank] = outgoing; condition.unlock()
        barrier()
        condition.lock(); let incoming = (0..<size).map { posted[$0][rank] }; condition.unlock()
        barrier()
        return incoming
    }
}

final class InProcessCommunicator: ExpertParallelCommunicator {
    let rank: Int
    let exchange: InProcessExchange
    var size: Int { exchange.size }

    init(rank: Int, exchange: InProcessExchange) { self.rank = rank; self.exchange = exchange }

    private static func bytes(_ p: UnsafeRawPointer, _ count: Int) -> [UInt8] { Array(UnsafeRawBufferPointer(start: p, count: count)) }

    private func place(_ blocks: [[UInt8]], into receive: UnsafeMutableRawPointer) {
        var offset = 0
        for block in blocks {
            block.withUnsafeBytes { (receive + offset).copyMemory(from: $0.baseAddress!, byteCount: block.count) }
            offset += block.count
        }
    }

    func allToAll(_ send: [Int64], countPerRank: Int) throws -> [Int64] {
        let outgoing = (0..<size).map { r in send[(r * countPerRank)..<((r + 1) * countPerRank)].withUnsafeBytes { Array($0) } }
        return exchange.exchange(rank: rank, outgoing).flatMap { block in
            block.withUnsafeBytes { Array($0.bindMemory(to: Int64.self)) }
        }
    }

    func allToAllV(send: UnsafeRawPointer, sendCounts: [Int], receive: UnsafeMutableRawPointer, receiveCounts: [Int]) throws {
        var offset = 0
        var outgoing: [[UInt8]] = []
        for count in sendCounts { outgoing.append(Self.bytes(send + offset, count)); offset += count }
        let incoming = exchange.exchange(rank: rank, outgoing)
        #expect(incoming.map(\.count) == receiveCounts)
        place(incoming, into: receive)
    }

    func allGatherV(send: UnsafeRawPointer, receive: UnsafeMutableRawPointer, counts: [Int]) throws {
        place(exchange.exchange(rank: rank, Array(repeating: Self.bytes(send, counts[rank]), count: size)), into: receive)
    }

    func gatherV(send: UnsafeRawPointer, receive: UnsafeMutableRawPointer?, counts: [Int]) throws {
        let incoming = exchange.exchange(rank: rank, Array(repeating: Self.bytes(send, counts[rank]), count: size))
        if rank == 0, let receive { place(incoming, into: receive) }
    }

    func allGather(_ values: [Double]) throws -> [Double] {
        let mine = values.withUnsafeBytes { Array($0) }
        return exchange.exchange(rank: rank, Array(repeating: mine, count: size)).flatMap { block in
            block.withUnsafeBytes { Array($0.bindMemory(to: Double.self)) }
        }
    }

    func split(groupSize: Int) throws -> any ExpertParallelCommunicator {
        guard groupSize == size else { throw ExpertParallelError("in-process test communicator: no sub-groups") }
        return self
    }
}

/// gpt-oss with its experts split over two ranks (threads of this process standing in for `mpirun -np 2`) gives
/// the single-process logits and routing, prefill and cached decode.
@Suite struct GptOssExpertParallelTests {
    @Test func twoRanksMatchOneProcess() throws {
        let variant = "v030_gptoss_fp32"
        let rows = try GptOssFixtures.tokens(variant), expected = try GptOssFixtures.expected(variant)
        let batch = rows.count, seqLen = rows[0].count, tokens = rows.flatMap { $0 }
        let args = try GptOssFixtures.args(variant)
        let checkpoint = GptOssFixtures.root.appendingPathComponent("\(variant)/checkpoint")
        let single = try GptOss(args: args, checkpoint: checkpoint).forward(tokens: tokens, batch: batch, seqLen: seqLen)

        let exchange = InProcessExchange(size: 2)
        let results = UnsafeMutablePointer<(Tensor?, [Int: [[Int]]], String?)>.allocate(capacity: 2)
        results.initialize(repeating: (nil, [:], nil), count: 2)
        defer { results.deinitialize(count: 2); results.deallocate() }
        let resultsP = SendablePointer(results)
        DispatchQueue.concurrentPerform(iterations: 2) { rank in
            do {
                let group = try ExpertParallelGroup(communicator: InProcessCommunicator(rank: rank, exchange: exchange), numExperts: 4)
                let model = try GptOss(args: args, checkpoint: checkpoint, expertParallel: group)
                #expect(model.moeBlocks[0].block.experts.w1.shape == [2, 8, 32], "rank \(rank) holds 2 of 4 experts")
                let log = ExpertLog()
                let logits = try model.forward(tokens: tokens, batch: batch, seqLen: seqLen, observer: log)
                // Cached decode runs the whole batch on every rank; only the experts are divided.
                let cache = KVCache(model: model, batch: batch, capacity: seqLen)
                _ = try model.forward(tokens: rows.flatMap { Array($0[0..<(seqLen - 1)]) }, batch: batch, seqLen: seqLen - 1, cache: cache)
                let step = try model.forward(tokens: rows.map { $0[seqLen - 1] }, batch: batch, seqLen: 1, cache: cache)
                for b in 0..<batch {
                    var c = LogitComparison()
                    c.add(step.row(b), expected.logits[b][seqLen - 1])
                    #expect(c.withinTolerance, "rank \(rank) decode row \(b): max |Δlogit| \(c.maxDiff)")
                }
                resultsP.pointer[rank] = (logits, log.experts, nil)
            } catch {
                resultsP.pointer[rank] = (nil, [:], "\(error)")
            }
        }
        for rank in 0..<2 {
            #expect(results[rank].2 == nil, "rank \(rank): \(results[rank].2 ?? "")")
            let logits = try #require(results[rank].0)
            var c = LogitComparison()
            for b in 0..<batch {
                for t in 0..<seqLen {
                    c.add(logits.row(b * seqLen + t), Array(UnsafeBufferPointer(start: single.row(b * seqLen + t), count: args.vocabSize)))
                }
            }
            #expect(c.maxDiff <= 1e-5 * max(1, c.maxLogit), "rank \(rank): max |Δlogit| \(c.maxDiff) against one process")
            var t = LogitComparison()
            for b in 0..<batch { for p in 0..<seqLen { t.add(logits.row(b * seqLen + p), expected.logits[b][p]) } }
            #expect(t.withinTolerance, "rank \(rank): max |Δlogit| \(t.maxDiff) against TorchTitan")
        }
        // Rank 0's observer sees the whole batch's decisions, gathered in token order.
        #expect(routingMismatches(results[0].1, expected.experts) == 0)
    }
}
