import Foundation
import MoETensor

/// The collectives expert parallelism needs, over the processes of one group (MPI in `MoEDistributed`).
/// Every rank must make the same calls in the same order. Counts are in bytes; buffers are laid out rank by
/// rank, rank 0 first.
public protocol ExpertParallelCommunicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// Sends `send[r·countPerRank ..< (r+1)·countPerRank]` to rank r; returns what each rank sent here, rank-major.
    func allToAll(_ send: [Int64], countPerRank: Int) throws -> [Int64]
    /// Sends `sendCounts[r]` bytes to rank r; receives `receiveCounts[s]` bytes from rank s.
    func allToAllV(send: UnsafeRawPointer, sendCounts: [Int], receive: UnsafeMutableRawPointer, receiveCounts: [Int]) throws
    /// Every rank's block, concatenated in rank order, on every rank (`counts[r]` bytes from rank r).
    func allGatherV(send: UnsafeRawPointer, receive: UnsafeMutableRawPointer, counts: [Int]) throws
    /// Every rank's block, concatenated in rank order, on rank 0 only (`receive` is ignored elsewhere).
    func gatherV(send: UnsafeRawPointer, receive: UnsafeMutableRawPointer?, counts: [Int]) throws
    /// Each rank's values side by side: `[rank 0's values…, rank 1's values…, …]`.
    func allGather(_ values: [Double]) throws -> [Double]
    /// The sub-group of `groupSize` consecutive ranks this rank belongs to (ranks `g·groupSize ..< (g+1)·groupSize`),
    /// with ranks renumbered from 0. A collective: every rank calls it.
    func split(groupSize: Int) throws -> any ExpertParallelCommunicator
}

/// A refusal or failure of expert parallelism, as one line.
public struct ExpertParallelError: Error, CustomStringConvertible, LocalizedError {
    public let description: String
    public init(_ description: String) { self.description = description }
    public var errorDescription: String? { description }
}

/// One expert-parallel group, as TorchTitan places experts: rank r of R holds experts
/// `r·E/R ..< (r+1)·E/R`; dense weights are replicated; each forward's sequences are split across ranks.
///
/// Per MoE layer each rank routes its own tokens, sends every expert's rows to the expert's owner (all-to-all),
/// runs its local experts on the rows it received, and returns the outputs (all-to-all). A forward that
/// continues a KV cache cannot be split by sequence (the cache holds the caller's rows), so there every rank
/// runs the whole batch and only the experts are divided; their outputs are all-gathered.
public final class ExpertParallelGroup: @unchecked Sendable {
    /// All processes: sequences are split, routing decisions and logits gathered across these.
    public let communicator: any ExpertParallelCommunicator
    /// The `degree` consecutive ranks that together hold every expert once and exchange tokens with each other.
    /// With fewer experts-holding ranks than processes (`degree` < `size`), the processes form `size/degree`
    /// data-parallel replicas of this group, each serving its own share of the sequences.
    public let expertCommunicator: any ExpertParallelCommunicator
    public let numExperts: Int
    public var rank: Int { communicator.rank }
    public var size: Int { communicator.size }
    /// The expert-parallel degree: ranks per expert group.
    public var degree: Int { expertCommunicator.size }
    /// Data-parallel replicas of the expert group.
    public var replicas: Int { size / degree }
    public var expertsPerRank: Int { numExperts / degree }
    /// Experts this rank holds and computes.
    public var localExperts: Range<Int> { experts(ofRank: rank) }
    /// Experts rank `r` (of all processes) holds.
    public func experts(ofRank r: Int) -> Range<Int> {
        let index = r % degree
        return (index * expertsPerRank)..<((index + 1) * expertsPerRank)
    }

    /// What this rank did since the last `resetStatistics()`.
    public struct Statistics: Sendable, Equatable {
        /// Seconds in the collectives of the MoE layers (waiting for slower ranks included).
        public var allToAllSeconds = 0.0
        /// Seconds computing local experts.
        public var expertComputeSeconds = 0.0
        /// Seconds in gathering routing decisions and logits.
        public var gatherSeconds = 0.0
        /// Seconds in whole forwards (everything above included).
        public var forwardSeconds = 0.0
        public var forwards = 0
        /// Token-expert assignments this rank computed, by MoE layer (L_{ℓ,r}).
        public var receivedAssignments: [Int: Int] = [:]
        public var tokensRun = 0
    }
    public internal(set) var statistics = Statistics()

    enum Mode {
        /// One batch split by sequence across ranks; an expert's rows from all ranks form one bucket, in global
        /// token order, as in a single process running the whole batch.
        case splitBySequence
        /// Every rank runs the same batch (a KV-cached continuation); experts' outputs are all-gathered.
        case replicatedTokens
        /// Every rank runs a batch of its own; each rank's rows are computed apart from the others', so each
        /// batch's numbers are those of a single process running it alone.
        case ownBatches
    }
    var mode = Mode.splitBySequence
    /// True inside the local share's forward, so that it runs as a plain forward.
    var runningLocalShare = false

    /// Refuses a degree that does not divide the experts (TorchTitan's requirement), before anything loads.
    public static func check(numExperts: Int, degree: Int) throws {
        guard degree >= 1 else { throw ExpertParallelError("expert-parallel degree \(degree) must be ≥ 1") }
        guard numExperts % degree == 0 else {
            throw ExpertParallelError(
                "expert-parallel degree \(degree) does not divide num_experts \(numExperts): each rank must hold the same number of experts (use a process count that divides \(numExperts))"
            )
        }
    }

    /// `degree` (default: every process) ranks per expert group; it must divide the process count and the experts.
    public init(communicator: any ExpertParallelCommunicator, numExperts: Int, degree: Int? = nil) throws {
        let degree = degree ?? communicator.size
        try Self.check(numExperts: numExperts, degree: degree)
        guard communicator.size % degree == 0 else {
            throw ExpertParallelError(
                "expert-parallel degree \(degree) does not divide the \(communicator.size) processes: the processes must form whole expert groups (use --ep with a divisor of the process count)"
            )
        }
        self.communicator = communicator
        self.expertCommunicator = degree == communicator.size ? communicator : try communicator.split(groupSize: degree)
        self.numExperts = numExperts
    }

    public func resetStatistics() { statistics = Statistics() }

    /// Rows `lower..<upper` of a batch of `batch` sequences that this rank (or `rank`) runs: contiguous,
    /// sizes differing by at most one, earlier ranks first (so rank 0 always has work).
    public func share(ofBatch batch: Int, rank: Int? = nil) -> Range<Int> {
        let r = rank ?? self.rank
        let base = batch / size, extra = batch % size
        let lower = r * base + min(r, extra)
        return lower..<(lower + base + (r < extra ? 1 : 0))
    }

    func timed<T>(_ keyPath: WritableKeyPath<Statistics, Double>, _ body: () throws -> T) rethrows -> T {
        let start = DispatchTime.now().uptimeNanoseconds
        defer { statistics[keyPath: keyPath] += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        return try body()
    }

    // MARK: - Experts across ranks

    /// Runs `batches` (bucketed by global expert) on the ranks owning the experts and returns the outputs in the
    /// same bucketed order. `compute` runs this rank's experts on batches indexed by *local* expert.
    func runExperts(
        _ batches: ExpertBatches, layer: Int,
        compute: (ExpertBatches) -> Tensor
    ) throws -> Tensor {
        switch mode {
        case .splitBySequence, .ownBatches: return try exchange(batches, layer: layer, compute: compute)
        case .replicatedTokens: return try computeOwnAndGather(batches, layer: layer, compute: compute)
        }
    }

    /// Dispatch all-to-all → local experts → combine all-to-all. Because dispatch buckets rows by expert and
    /// experts are placed contiguously, the rows for rank r are one contiguous block of `batches.input`.
    private func exchange(
        _ batches: ExpertBatches, layer: Int,
        compute: (ExpertBatches) -> Tensor
    ) throws -> Tensor {
        // Ranks below are those of this rank's expert group; experts are placed on them contiguously.
        let local = expertsPerRank, ranks = degree, d = batches.width
        let exchangeGroup = expertCommunicator
        let rowBytes = d * MemoryLayout<Float>.size
        let countsPerExpert = (0..<numExperts).map { Int64(batches.rows(of: $0).count) }
        // received[s·local + j]: rows rank s sends for my local expert j.
        let received = try timed(\.allToAllSeconds) { try exchangeGroup.allToAll(countsPerExpert, countPerRank: local) }
        let sendRows = (0..<ranks).map { r in batches.offsets[(r + 1) * local] - batches.offsets[r * local] }
        let receiveRows = (0..<ranks).map { s in Int(received[(s * local)..<((s + 1) * local)].reduce(0, +)) }
        let totalReceived = receiveRows.reduce(0, +)
        let arrived = Tensor(shape: [totalReceived, d])
        try timed(\.allToAllSeconds) {
            try exchangeGroup.allToAllV(
                send: batches.input.data, sendCounts: sendRows.map { $0 * rowBytes },
                receive: arrived.data, receiveCounts: receiveRows.map { $0 * rowBytes })
        }

        var blockStart = [Int](repeating: 0, count: ranks * local) // in `arrived`, (s, j) order
        var position = 0
        for s in 0..<ranks {
            for j in 0..<local { blockStart[s * local + j] = position; position += Int(received[s * local + j]) }
        }
        if mode == .ownBatches {
            timed(\.expertComputeSeconds) {
                for s in 0..<ranks where receiveRows[s] > 0 {
                    var offsets = [0]
                    for j in 0..<local { offsets.append(offsets[j] + Int(received[s * local + j])) }
                    let input = Tensor(shape: [receiveRows[s], d])
                    let first = blockStart[s * local]
                    input.data.update(from: arrived.row(first), count: receiveRows[s] * d)
                    let outputs = compute(ExpertBatches(experts: local, width: d, offsets: offsets, assignment: [], input: input))
                    arrived.row(first).update(from: outputs.data, count: receiveRows[s] * d)
                }
            }
            statistics.receivedAssignments[layer, default: 0] += totalReceived
            let combined = Tensor(shape: [batches.input.rows, d])
            try timed(\.allToAllSeconds) {
                try exchangeGroup.allToAllV(
                    send: arrived.data, sendCounts: receiveRows.map { $0 * rowBytes },
                    receive: combined.data, receiveCounts: sendRows.map { $0 * rowBytes })
            }
            return combined
        }

        // Regroup (source, expert) blocks into one bucket per local expert, sources in rank order: the bucket
        // then holds its rows in global token order, exactly as a single process would have bucketed them.
        var offsets = [Int](repeating: 0, count: local + 1)
        for j in 0..<local {
            offsets[j + 1] = offsets[j] + (0..<ranks).reduce(0) { $0 + Int(received[$1 * local + j]) }
        }
        let bucketed = Tensor(shape: [totalReceived, d])
        var bucketStart = [Int](repeating: 0, count: ranks * local) // in `bucketed`, for each (s, j) block
        for j in 0..<local {
            var row = offsets[j]
            for s in 0..<ranks {
                let n = Int(received[s * local + j])
                bucketStart[s * local + j] = row
                bucketed.row(row).update(from: arrived.row(blockStart[s * local + j]), count: n * d)
                row += n
            }
        }
        let outputs = timed(\.expertComputeSeconds) {
            // The assignment list stays behind with the sender: outputs travel back in arrival order.
            compute(ExpertBatches(experts: local, width: d, offsets: offsets, assignment: [], input: bucketed))
        }
        statistics.receivedAssignments[layer, default: 0] += totalReceived

        for s in 0..<ranks {
            for j in 0..<local {
                arrived.row(blockStart[s * local + j]).update(
                    from: outputs.row(bucketStart[s * local + j]),
                    count: Int(received[s * local + j]) * d)
            }
        }
        let combined = Tensor(shape: [batches.input.rows, d])
        try timed(\.allToAllSeconds) {
            try exchangeGroup.allToAllV(
                send: arrived.data, sendCounts: receiveRows.map { $0 * rowBytes },
                receive: combined.data, receiveCounts: sendRows.map { $0 * rowBytes })
        }
        return combined
    }

    /// Every rank holds the same batches: each computes its own experts' buckets, then all are gathered.
    private func computeOwnAndGather(
        _ batches: ExpertBatches, layer: Int,
        compute: (ExpertBatches) -> Tensor
    ) throws -> Tensor {
        let local = expertsPerRank, d = batches.width, index = expertCommunicator.rank
        let rowBytes = d * MemoryLayout<Float>.size
        let first = batches.offsets[index * local], last = batches.offsets[(index + 1) * local]
        let mine = Tensor(shape: [last - first, d])
        mine.data.update(from: batches.input.row(first), count: (last - first) * d)
        let offsets = batches.offsets[(index * local)...((index + 1) * local)].map { $0 - first }
        let outputs = timed(\.expertComputeSeconds) {
            compute(ExpertBatches(experts: local, width: d, offsets: offsets, assignment: [], input: mine))
        }
        statistics.receivedAssignments[layer, default: 0] += last - first
        let combined = Tensor(shape: [batches.input.rows, d])
        let counts = (0..<degree).map { r in (batches.offsets[(r + 1) * local] - batches.offsets[r * local]) * rowBytes }
        try timed(\.allToAllSeconds) {
            try expertCommunicator.allGatherV(send: outputs.data, receive: combined.data, counts: counts)
        }
        return combined
    }

    // MARK: - Routing decisions to rank 0

    /// Gathers each MoE layer's routing decision from every rank's share to rank 0, in global token order, and
    /// hands the whole decision to `inner` there — the decision a single process would have made.
    final class DecisionGatherer: RoutingObserver {
        let group: ExpertParallelGroup
        let inner: RoutingObserver?
        /// Hand rank 0's observer one decision per rank (each rank ran a batch of its own) instead of one whole.
        let decisionPerRank: Bool
        var failure: Error?

        init(group: ExpertParallelGroup, inner: RoutingObserver?, decisionPerRank: Bool = false) {
            self.group = group
            self.inner = inner
            self.decisionPerRank = decisionPerRank
        }

        func observe(_ decision: RoutingDecision) {
            gather(decision, layer: decision.layer)
        }

        /// An idle rank's part: no tokens.
        func contributeNothing(layer: Int) { gather(nil, layer: layer) }

        private func gather(_ decision: RoutingDecision?, layer: Int) {
            guard failure == nil else { return }
            do {
                try group.timed(\.gatherSeconds) { try gatherOrThrow(decision, layer: layer) }
            } catch {
                failure = error
            }
        }

        private func gatherOrThrow(_ decision: RoutingDecision?, layer: Int) throws {
            let c = group.communicator
            let header: [Double] =
                decision.map {
                    [
                        Double($0.tokenCount), Double($0.topK), Double($0.numExperts), $0.scores.isEmpty ? 0 : 1,
                        $0.gateLogits.isEmpty ? 0 : 1,
                    ]
                } ?? [0, 0, 0, 0, 0]
            let all = try c.allGather(header)
            let tokens = (0..<c.size).map { Int(all[$0 * 5]) }
            guard let reference = (0..<c.size).first(where: { tokens[$0] > 0 }) else { return }
            let k = Int(all[reference * 5 + 1]), e = Int(all[reference * 5 + 2])
            let hasScores = all[reference * 5 + 3] > 0, hasLogits = all[reference * 5 + 4] > 0
            let total = tokens.reduce(0, +)
            let isRoot = c.rank == 0
            func collect<T>(_ type: T.Type, perToken: Int, _ local: UnsafeBufferPointer<T>?) throws -> UnsafeMutableBufferPointer<T> {
                let out = UnsafeMutableBufferPointer<T>.allocate(capacity: isRoot ? max(total * perToken, 1) : 1)
                let size = MemoryLayout<T>.stride * perToken
                let mine = UnsafeRawPointer(local?.baseAddress) ?? UnsafeRawPointer(out.baseAddress!)
                try c.gatherV(
                    send: mine, receive: isRoot ? UnsafeMutableRawPointer(out.baseAddress!) : nil,
                    counts: tokens.map { $0 * size })
                return out
            }
            let experts = try collect(Int32.self, perToken: k, decision?.experts)
            let weights = try collect(Float.self, perToken: k, decision?.weights)
            let scores = try hasScores ? collect(Float.self, perToken: e, decision?.scores) : nil
            let logits = try hasLogits ? collect(Float.self, perToken: e, decision?.gateLogits) : nil
            defer {
                experts.deallocate(); weights.deallocate(); scores?.deallocate(); logits?.deallocate()
            }
            guard isRoot, let inner, let decision else { return }
            func hand(_ first: Int, _ count: Int) {
                guard count > 0 else { return }
                func part<T>(_ buffer: UnsafeMutableBufferPointer<T>?, _ width: Int) -> UnsafeBufferPointer<T> {
                    guard let buffer else { return UnsafeBufferPointer(start: nil, count: 0) }
                    return UnsafeBufferPointer(rebasing: buffer[(first * width)..<((first + count) * width)])
                }
                inner.observe(
                    RoutingDecision(
                        layer: layer, tokenCount: count, topK: k, numExperts: e,
                        experts: part(experts, k), weights: part(weights, k), scores: part(scores, e), gateLogits: part(logits, e),
                        expertBias: decision.expertBias))
            }
            if decisionPerRank {
                var first = 0
                for n in tokens { hand(first, n); first += n }
            } else {
                hand(0, total)
            }
        }
    }
}

extension CausalLanguageModel {
    /// A forward under expert parallelism: see `ExpertParallelGroup`. Every rank gets the whole batch's logits.
    public func forwardExpertParallel(
        _ group: ExpertParallelGroup, tokens: [Int32], batch: Int, seqLen: Int, cache: KVCache?,
        logits selection: LogitsSelection, observer: RoutingObserver?
    ) throws -> Tensor {
        _ = try selection.hiddenRows(batch: batch, seqLen: seqLen)
        let start = DispatchTime.now().uptimeNanoseconds
        group.runningLocalShare = true
        defer {
            group.runningLocalShare = false
            group.mode = .splitBySequence
            group.statistics.forwards += 1
            group.statistics.forwardSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }
        if cache != nil {
            group.mode = .replicatedTokens
            group.statistics.tokensRun += batch * seqLen
            return try forward(tokens: tokens, batch: batch, seqLen: seqLen, cache: cache, logits: selection, observer: observer)
        }
        group.mode = .splitBySequence
        let share = group.share(ofBatch: batch)
        let gatherer = observer.map { _ in ExpertParallelGroup.DecisionGatherer(group: group, inner: group.rank == 0 ? observer : nil) }
        let vocab = shape.vocabSize
        var local: Tensor?
        if share.isEmpty {
            try participateWithoutTokens(group, gatherer: gatherer)
        } else {
            group.statistics.tokensRun += share.count * seqLen
            local = try forward(
                tokens: Array(tokens[(share.lowerBound * seqLen)..<(share.upperBound * seqLen)]),
                batch: share.count, seqLen: seqLen, cache: nil, logits: selection.forBatchRows(share), observer: gatherer)
        }
        if let failure = gatherer?.failure { throw failure }
        let result = Tensor(shape: [selection.logitsRowCount(batchRows: 0..<batch, seqLen: seqLen), vocab])
        let counts = (0..<group.size).map {
            selection.logitsRowCount(batchRows: group.share(ofBatch: batch, rank: $0), seqLen: seqLen) * vocab * MemoryLayout<Float>.size
        }
        try group.timed(\.gatherSeconds) {
            try group.communicator.allGatherV(send: local?.data ?? result.data, receive: result.data, counts: counts)
        }
        return result
    }

    /// Every rank runs a batch of its own (`batch` may be 0: the rank then only serves its experts), with the
    /// numbers a single process running that batch alone would produce. Rank 0's observer receives each rank's
    /// decision in rank order, as if the batches had run one after another. Returns this rank's logits
    /// (nil for an empty batch). A collective: every rank of the group calls it.
    public func forwardOwnBatches(
        tokens: [Int32], batch: Int, seqLen: Int, logits selection: LogitsSelection = .all,
        observer: RoutingObserver? = nil
    ) throws -> Tensor? {
        guard let group = expertParallel else {
            return batch > 0
                ? try forward(tokens: tokens, batch: batch, seqLen: seqLen, cache: nil, logits: selection, observer: observer) : nil
        }
        let start = DispatchTime.now().uptimeNanoseconds
        group.runningLocalShare = true
        group.mode = .ownBatches
        defer {
            group.runningLocalShare = false
            group.mode = .splitBySequence
            group.statistics.forwards += 1
            group.statistics.forwardSeconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }
        let gatherer = observer.map { _ in
            ExpertParallelGroup.DecisionGatherer(group: group, inner: group.rank == 0 ? observer : nil, decisionPerRank: true)
        }
        var result: Tensor?
        if batch > 0 {
            group.statistics.tokensRun += batch * seqLen
            result = try forward(tokens: tokens, batch: batch, seqLen: seqLen, cache: nil, logits: selection, observer: gatherer)
        } else {
            try participateWithoutTokens(group, gatherer: gatherer)
        }
        if let failure = gatherer?.failure { throw failure }
        return result
    }

    /// A rank with no sequences in this forward still serves its experts and joins every layer's collectives.
    private func participateWithoutTokens(_ group: ExpertParallelGroup, gatherer: ExpertParallelGroup.DecisionGatherer?) throws {
        for (layer, moe) in moeBlocks {
            let d = moe.dim, e = moe.router.numExperts
            gatherer?.contributeNothing(layer: layer)
            let empty = ExpertBatches(
                experts: e, width: d, offsets: [Int](repeating: 0, count: e + 1), assignment: [],
                input: Tensor(shape: [0, d]))
            _ = try group.runExperts(empty, layer: layer) { moe.computeExperts($0) }
        }
    }
}
