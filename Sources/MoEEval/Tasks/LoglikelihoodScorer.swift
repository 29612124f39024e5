import Foundation
import MoEModels
import MoETensor

/// Scores token-level loglikelihood requests with a language model, answers in input order.
public protocol LanguageModelScorer: AnyObject {
    /// The most tokens one sequence may hold; longer requests lose their oldest context tokens, and
    /// rolling windows are this long.
    var maxLength: Int { get }
    func loglikelihood(_ requests: [TokenRequest]) throws -> [LoglikelihoodResult]
    /// Total log-likelihood of each token list, every token predicted, the first one from `prefixToken`.
    func loglikelihoodRolling(_ documents: [[Int]], prefixToken: Int) throws -> [Double]
}

extension LanguageModelScorer {
    /// The harness's rolling scheme: disjoint windows of `maxLength` predicted tokens, their sums added.
    public func loglikelihoodRolling(_ documents: [[Int]], prefixToken: Int) throws -> [Double] {
        var windows: [TokenRequest] = [], owners: [Int] = []
        for (d, tokens) in documents.enumerated() {
            for window in rollingWindows(tokens: tokens, prefixToken: prefixToken, maxLength: maxLength) {
                windows.append(window)
                owners.append(d)
            }
        }
        let results = try loglikelihood(windows)
        var sums = [Double](repeating: 0, count: documents.count)
        for (result, owner) in zip(results, owners) { sums[owner] += result.logprob }
        return sums
    }
}

public struct ScoringError: Error, CustomStringConvertible, LocalizedError {
    public let description: String
    public var errorDescription: String? { description }
}

/// What a native scoring run did, for progress lines and speed reports.
public struct ScoringStatistics: Sendable, Equatable {
    public var requests = 0
    public var forwardCalls = 0
    /// Token positions run through the model, padding included.
    public var positions = 0
    public var scoredTokens = 0
    public var seconds = 0.0
    /// Requests answered from a shared context pass.
    public var sharedRequests = 0
    /// Largest |shared − separate| log-likelihood seen when the sharing was checked; nil before a check.
    public var sharingCheckDifference: Double?
    public var sharingDisabled = false
}

/// lm-eval's loglikelihood scoring on a native model: inputs `(context + continuation)` without its
/// last token, cut on the left to `maxLength` (the HF backend's truncation); log-softmax in Double over the
/// fp32 logits; the continuation's sum; greedy when each continuation token's logit equals its row's
/// maximum (what the API backend's `token_logprob == max(top_logprobs)` test sees; ties count as greedy).
///
/// Requests whose inputs share everything up to the first continuation token (the choices of a question)
/// run that prefix once and continue it for every choice from a copied KV cache. The numbers differ from
/// separate passes only by fp32 summation order; the first shared group of a run is also scored
/// separately, and if the two disagree by more than `sharingTolerance` sharing is switched off.
public final class NativeScorer: LanguageModelScorer {
    public let model: any CausalLanguageModel
    public let maxLength: Int
    /// Token positions (rows × padded length) per batched forward.
    public var batchTokens: Int
    /// Bytes of fp32 logits one forward may produce; longer single sequences run in KV-cached chunks.
    public var logitsBudgetBytes: Int
    public var sharesContext: Bool
    public var sharingTolerance = 1e-4
    public private(set) var statistics = ScoringStatistics()
    /// Called with (requests done, requests total) about every 1% of the requests.
    public var progress: ((Int, Int) -> Void)?
    /// Receives the routing of every scoring forward, told first which request each row scores.
    public var routingObserver: RequestRoutingObserver?
    /// The same observer as the forward takes it.
    var forwardObserver: RoutingObserver? { routingObserver }

    public init(
        model: any CausalLanguageModel, maxLength: Int? = nil, batchTokens: Int = 2048,
        logitsBudgetBytes: Int = 256 << 20, sharesContext: Bool = true
    ) {
        self.model = model
        self.maxLength = max(1, maxLength ?? model.shape.maxSeqLen)
        self.batchTokens = batchTokens
        self.logitsBudgetBytes = logitsBudgetBytes
        self.sharesContext = sharesContext
    }

    /// One request as the model sees it: `inputs` are fed, the last `targets.count` rows predict `targets`.
    struct Prepared {
        let index: Int
        let inputs: [Int32]
        let targets: [Int32]
        var prefixLength: Int { inputs.count - targets.count + 1 }
    }

    private var vocab: Int { model.shape.vocabSize }
    private var rowsPerBudget: Int { max(1, logitsBudgetBytes / max(1, vocab * MemoryLayout<Float>.size)) }

    public func loglikelihood(_ requests: [TokenRequest]) throws -> [LoglikelihoodResult] {
        let start = Date()
        defer { statistics.seconds += Date().timeIntervalSince(start) }
        var results = [LoglikelihoodResult?](repeating: nil, count: requests.count)
        var prepared: [Prepared] = []
        prepared.reserveCapacity(requests.count)
        for (i, request) in requests.enumerated() {
            if request.continuation.isEmpty {
                results[i] = LoglikelihoodResult(logprob: 0, isGreedy: true)
                continue
            }
            prepared.append(try prepare(request, index: i))
        }
        statistics.requests += requests.count
        var done = requests.count - prepared.count, reported = 0
        let step = max(1, requests.count / 100)
        func report() {
            if done - reported >= step || done == requests.count {
                reported = done
                progress?(done, requests.count)
            }
        }

        var plain: [Prepared] = []
        if sharesContext {
            var groups: [[Int32]: [Prepared]] = [:]
            for p in prepared { groups[Array(p.inputs.prefix(p.prefixLength)), default: []].append(p) }
            for group in groups.values.sorted(by: { $0[0].index < $1[0].index }) {
                let tail = group.map { $0.targets.count - 1 }.max() ?? 0
                guard sharesContext, group.count > 1, tail <= rowsPerBudget else {
                    plain += group
                    continue
                }
                var shared = try scoreSharedPrefix(group)
                if statistics.sharingCheckDifference == nil {
                    var separate = [LoglikelihoodResult](repeating: LoglikelihoodResult(logprob: 0, isGreedy: true), count: group.count)
                    // The check re-scores the group under local indices: its routing is already counted once.
                    let observer = routingObserver
                    routingObserver = nil
                    defer { routingObserver = observer }
                    try scoreSeparately(
                        group.enumerated().map { Prepared(index: $0.offset, inputs: $0.element.inputs, targets: $0.element.targets) }
                    ) {
                        separate[$0] = $1
                    }
                    let difference = zip(shared, separate).map { abs($0.logprob - $1.logprob) }.max() ?? 0
                    let scale = separate.map { max(1, abs($0.logprob)) }.max() ?? 1
                    statistics.sharingCheckDifference = difference
                    if difference > sharingTolerance * scale {
                        sharesContext = false
                        statistics.sharingDisabled = true
                        shared = separate
                    }
                }
                for (p, result) in zip(group, shared) { results[p.index] = result }
                if sharesContext { statistics.sharedRequests += group.count }
                done += group.count
                report()
            }
        } else {
            plain = prepared
        }
        try scoreSeparately(plain) { index, result in
            results[index] = result
            done += 1
            report()
        }
        return results.map { $0 ?? LoglikelihoodResult(logprob: 0, isGreedy: true) }
    }

    /// Every request on its own row, longest first as the harness's collator orders them (batches then
    /// hold similar lengths), as many rows per forward as the token and logits budgets allow.
    func scoreSeparately(_ list: [Prepared], _ deliver: (Int, LoglikelihoodResult) -> Void) throws {
        let sorted = list.sorted { $0.inputs.count != $1.inputs.count ? $0.inputs.count > $1.inputs.count : $0.index < $1.index }
        var start = 0
        while start < sorted.count {
            let longest = sorted[start].inputs.count
            let byTokens = max(1, batchTokens / longest), byLogits = rowsPerBudget / longest
            let count = min(sorted.count - start, max(1, min(byTokens, byLogits)))
            let batch = Array(sorted[start..<(start + count)])
            let batchResults = byLogits >= 1 ? try scoreBatched(batch) : [try scoreInChunks(batch[0])]
            for (p, result) in zip(batch, batchResults) { deliver(p.index, result) }
            start += count
        }
    }

    func prepare(_ request: TokenRequest, index: Int) throws -> Prepared {
        guard !request.context.isEmpty else {
            throw ScoringError(
                description: "a loglikelihood request has no context tokens (the prefix token should stand in for an empty context)")
        }
        guard request.continuation.count <= maxLength else {
            throw ScoringError(
                description: "a continuation of \(request.continuation.count) tokens does not fit the model's \(maxLength)-token context")
        }
        for token in request.context + request.continuation where token < 0 || token >= vocab {
            throw ScoringError(
                description:
                    "token id \(token) is outside the model's vocabulary (0..<\(vocab)); the tokenizer does not belong to this model")
        }
        let whole = request.context + request.continuation
        let inputs = whole.suffix(maxLength + 1).dropLast()
        return Prepared(index: index, inputs: inputs.map(Int32.init), targets: request.continuation.map(Int32.init))
    }

    /// Each row padded to the batch's longest (padding sits after the real tokens, which causal attention
    /// and per-token routing never let it influence).
    func scoreBatched(_ batch: [Prepared]) throws -> [LoglikelihoodResult] {
        let seqLen = batch.map(\.inputs.count).max() ?? 1
        var tokens = [Int32](repeating: 0, count: batch.count * seqLen)
        for (r, p) in batch.enumerated() {
            for (i, t) in p.inputs.enumerated() { tokens[r * seqLen + i] = t }
        }
        routingObserver?.beginForward(rows: batch.map { ForwardRow(request: $0.index, tokens: $0.inputs.count) }, seqLen: seqLen)
        // Only the continuation's positions are read: logits rows come back row after row, in position order.
        let continuations = batch.map { ($0.inputs.count - $0.targets.count)..<$0.inputs.count }
        let logits = try model.forward(
            tokens: tokens, batch: batch.count, seqLen: seqLen, cache: nil, logits: .positions(continuations),
            observer: forwardObserver)
        record(positions: batch.count * seqLen)
        var picks: [(row: Int, target: Int32, request: Int)] = []
        for (r, p) in batch.enumerated() {
            for target in p.targets { picks.append((picks.count, target, r)) }
        }
        return gather(logits, picks, requests: batch.count)
    }

    /// A sequence whose logits alone exceed the budget: fed through a KV cache a slice at a time.
    func scoreInChunks(_ p: Prepared) throws -> LoglikelihoodResult {
        let cache = KVCache(model: model, batch: 1, capacity: p.inputs.count)
        let chunk = rowsPerBudget, first = p.inputs.count - p.targets.count
        var logprob = 0.0, greedy = true
        var begin = 0
        while begin < p.inputs.count {
            let end = min(begin + chunk, p.inputs.count)
            let wanted = min(max(begin, first), end)..<end
            routingObserver?.beginForward(rows: [ForwardRow(request: p.index, tokens: end - begin)], seqLen: end - begin)
            let logits = try model.forward(
                tokens: Array(p.inputs[begin..<end]), batch: 1, seqLen: end - begin,
                cache: cache, logits: .positions([(wanted.lowerBound - begin)..<(wanted.upperBound - begin)]),
                observer: forwardObserver)
            record(positions: end - begin)
            if !wanted.isEmpty {
                let part = gather(logits, wanted.map { ($0 - wanted.lowerBound, p.targets[$0 - first], 0) }, requests: 1)[0]
                logprob += part.logprob
                greedy = greedy && part.isGreedy
            }
            begin = end
        }
        return LoglikelihoodResult(logprob: logprob, isGreedy: greedy)
    }

    /// The shared prefix once (last row only), then every choice's remaining tokens from copies of its cache.
    func scoreSharedPrefix(_ group: [Prepared]) throws -> [LoglikelihoodResult] {
        let prefix = Array(group[0].inputs.prefix(group[0].prefixLength))
        let cache = KVCache(model: model, batch: 1, capacity: prefix.count)
        routingObserver?.beginForward(rows: [ForwardRow(request: group[0].index, tokens: prefix.count)], seqLen: prefix.count)
        let last = try model.forward(tokens: prefix, batch: 1, seqLen: prefix.count, cache: cache, logits: .last, observer: forwardObserver)
        record(positions: prefix.count)
        var firsts = gather(last, group.enumerated().map { (0, $0.element.targets[0], $0.offset) }, requests: group.count)
        let continuing = group.indices.filter { group[$0].targets.count > 1 }
        guard !continuing.isEmpty else { return firsts }
        let tail = continuing.map { group[$0].targets.count - 1 }.max() ?? 1
        let rowsPerForward = max(1, min(batchTokens / tail, rowsPerBudget / tail))
        var begin = 0
        while begin < continuing.count {
            let members = Array(continuing[begin..<min(begin + rowsPerForward, continuing.count)])
            let copies = try KVCache(model: model, repeating: cache, row: 0, rows: members.count, capacity: prefix.count + tail)
            var tokens = [Int32](repeating: 0, count: members.count * tail)
            for (r, m) in members.enumerated() {
                for (i, t) in group[m].targets.dropLast().enumerated() { tokens[r * tail + i] = t }
            }
            routingObserver?.beginForward(
                rows: members.map { ForwardRow(request: group[$0].index, tokens: group[$0].targets.count - 1) },
                seqLen: tail)
            let logits = try model.forward(
                tokens: tokens, batch: members.count, seqLen: tail, cache: copies,
                logits: .positions(members.map { 0..<(group[$0].targets.count - 1) }), observer: forwardObserver)
            record(positions: members.count * tail)
            var picks: [(row: Int, target: Int32, request: Int)] = []
            for (r, m) in members.enumerated() {
                for target in group[m].targets.dropFirst() { picks.append((picks.count, target, r)) }
            }
            let rest = gather(logits, picks, requests: members.count)
            for (r, m) in members.enumerated() {
                firsts[m].logprob += rest[r].logprob
                firsts[m].isGreedy = firsts[m].isGreedy && rest[r].isGreedy
            }
            begin += members.count
        }
        return firsts
    }

    private func record(positions: Int) {
        statistics.forwardCalls += 1
        statistics.positions += positions
    }

    /// Sums, per request, the log-softmax of each pick's target token in its logits row (in pick order).
    func gather(_ logits: Tensor, _ picks: [(row: Int, target: Int32, request: Int)], requests: Int) -> [LoglikelihoodResult] {
        let vocab = self.vocab
        let values = UnsafeMutableBufferPointer<Double>.allocate(capacity: max(picks.count, 1))
        let greedy = UnsafeMutableBufferPointer<Bool>.allocate(capacity: max(picks.count, 1))
        defer { values.deallocate(); greedy.deallocate() }
        let base = SendableConstPointer(UnsafePointer(logits.data))
        let valuesOut = SendablePointer(values.baseAddress!), greedyOut = SendablePointer(greedy.baseAddress!)
        let rows = picks.map(\.row), targets = picks.map { Int($0.target) }
        Compute.parallelRanges(picks.count) { _, range in
            for i in range {
                let row = base.pointer + rows[i] * vocab
                let (value, isMax) = NativeScorer.logSoftmax(row, vocab: vocab, target: targets[i])
                valuesOut.pointer[i] = value
                greedyOut.pointer[i] = isMax
            }
        }
        var results = [LoglikelihoodResult](repeating: LoglikelihoodResult(logprob: 0, isGreedy: true), count: requests)
        for (i, pick) in picks.enumerated() {
            results[pick.request].logprob += values[i]
            results[pick.request].isGreedy = results[pick.request].isGreedy && greedy[i]
        }
        statistics.scoredTokens += picks.count
        return results
    }

    /// `log_softmax(row)[target]`, and whether the target's logit is the row's maximum. The shifted
    /// exponentials are fp32 (≤ 1 ulp each; the terms that matter are exact differences near the maximum),
    /// their sum and the logarithm Double.
    static func logSoftmax(_ row: UnsafePointer<Float>, vocab: Int, target: Int) -> (Double, Bool) {
        var maximum = -Float.infinity
        for j in 0..<vocab where row[j] > maximum { maximum = row[j] }
        var sum = 0.0
        for j in 0..<vocab { sum += Double(Foundation.expf(row[j] - maximum)) }
        return (Double(row[target]) - Double(maximum) - Foundation.log(sum), row[target] == maximum)
    }
}
