import Foundation
import MoECheckpoint
import MoETokenizer
import Testing

@testable import MoEEval
@testable import MoEModels

/// Native scoring on the tiny TorchTitan checkpoint of MoEModelsTests (vocab 160, max_seq_len 64), with
/// requests built from token ids. The reference is a plain batch-1 forward per request with a
/// log-softmax written here, independent of the scorer's batching, sharing and gathering.
@Suite struct TaskTestsScorer {
    static func fixtureModel() throws -> any CausalLanguageModel {
        let dir = TaskPaths.dsv3Fixtures.appendingPathComponent("v022_softmax_basic")
        return try ModelLoader.load(
            ModelSpec(
                checkpoint: dir.appendingPathComponent("checkpoint"),
                modelArgs: dir.appendingPathComponent("model_args.json"))
        ).model
    }

    /// Deterministic ids in 0..<vocab.
    struct Tokens {
        var state: UInt64
        mutating func next(_ count: Int, vocab: Int = 160) -> [Int] {
            (0..<count).map { _ in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return Int((state >> 33) % UInt64(vocab))
            }
        }
    }

    /// Questions with shared contexts and choices of mixed lengths (1 to 7 tokens), MMLU-like one-token
    /// choices, plus a few lone requests.
    static func requests() -> [TokenRequest] {
        var t = Tokens(state: 42)
        var out: [TokenRequest] = []
        for (contextLength, choiceLengths) in [
            (7, [3, 1, 5, 2]), (13, [1, 1, 1, 1]), (22, [4, 6, 7, 2]), (30, [2, 2]),
            (5, [1, 3, 2, 4]), (40, [5, 1, 1, 6]),
        ] {
            let context = t.next(contextLength)
            for n in choiceLengths { out.append(TokenRequest(context: context, continuation: t.next(n))) }
        }
        out.append(TokenRequest(context: t.next(9), continuation: t.next(4)))
        out.append(TokenRequest(context: [7], continuation: t.next(11)))
        return out
    }

    /// Σ log_softmax over the continuation of `(context + continuation)` cut as the scorer cuts it, from a
    /// batch-1 forward, and whether every continuation token is its row's argmax.
    static func reference(_ model: any CausalLanguageModel, _ r: TokenRequest, maxLength: Int) throws -> LoglikelihoodResult {
        let whole = r.context + r.continuation
        let inputs = Array(whole.suffix(maxLength + 1).dropLast())
        let logits = try model.forward(tokens: inputs.map(Int32.init), batch: 1, seqLen: inputs.count, logits: .all)
        let vocab = model.shape.vocabSize
        var total = 0.0, greedy = true
        for (k, target) in r.continuation.enumerated() {
            let row = Array(UnsafeBufferPointer(start: logits.data + (inputs.count - r.continuation.count + k) * vocab, count: vocab))
            let top = row.max() ?? 0
            let logSum = log(row.reduce(0.0) { $0 + exp(Double($1) - Double(top)) })
            total += Double(row[target]) - Double(top) - logSum
            greedy = greedy && row[target] == top
        }
        return LoglikelihoodResult(logprob: total, isGreedy: greedy)
    }

    static func expectClose(
        _ a: [LoglikelihoodResult], _ b: [LoglikelihoodResult], tolerance: Double = 1e-5,
        _ label: String
    ) {
        #expect(a.count == b.count, "\(label): \(a.count) vs \(b.count) results")
        for (i, (x, y)) in zip(a, b).enumerated() {
            #expect(abs(x.logprob - y.logprob) <= tolerance, "\(label) request \(i): \(x.logprob) vs \(y.logprob)")
        }
    }

    @Test func sharedContextScoringEqualsSeparateScoring() throws {
        let model = try Self.fixtureModel()
        let requests = Self.requests()
        let shared = NativeScorer(model: model, sharesContext: true)
        let separate = NativeScorer(model: model, sharesContext: false)
        let a = try shared.loglikelihood(requests), b = try separate.loglikelihood(requests)
        Self.expectClose(a, b, "shared vs separate")
        #expect(a.map(\.isGreedy) == b.map(\.isGreedy))
        #expect(shared.statistics.sharedRequests == 22, "every question's choices share one context pass")
        #expect(!shared.statistics.sharingDisabled)
        #expect((shared.statistics.sharingCheckDifference ?? 1) <= 1e-5)
        #expect(shared.statistics.positions < separate.statistics.positions)
        let reference = try requests.map { try Self.reference(model, $0, maxLength: 64) }
        Self.expectClose(b, reference, "separate vs batch-1 reference")
        #expect(b.map(\.isGreedy) == reference.map(\.isGreedy))
        #expect(a.allSatisfy { $0.logprob < 0 })
    }

    @Test func sharingSwitchesOffWhenTheCheckFails() throws {
        let model = try Self.fixtureModel()
        let scorer = NativeScorer(model: model, sharesContext: true)
        scorer.sharingTolerance = -1
        let results = try scorer.loglikelihood(Self.requests())
        #expect(scorer.statistics.sharingDisabled && !scorer.sharesContext)
        let reference = try Self.requests().map { try Self.reference(model, $0, maxLength: 64) }
        Self.expectClose(results, reference, "after switching sharing off")
    }

    @Test func longRequestsLoseTheirOldestTokens() throws {
        let model = try Self.fixtureModel()
        var t = Tokens(state: 7)
        let context = t.next(100)
        let requests = [
            TokenRequest(context: context, continuation: t.next(5)),
            TokenRequest(context: context, continuation: t.next(3)),
            TokenRequest(context: t.next(70), continuation: t.next(64)),
        ]
        let scorer = NativeScorer(model: model)
        #expect(scorer.maxLength == 64)
        let results = try scorer.loglikelihood(requests)
        Self.expectClose(results, try requests.map { try Self.reference(model, $0, maxLength: 64) }, "truncated to 64")
        let short = NativeScorer(model: model, maxLength: 16)
        Self.expectClose(
            try short.loglikelihood(requests.prefix(2).map { $0 }),
            try requests.prefix(2).map { try Self.reference(model, $0, maxLength: 16) }, "truncated to 16")
        #expect(throws: ScoringError.self) { try short.loglikelihood([requests[2]]) }
    }

    @Test func chunkedScoringEqualsOnePass() throws {
        let model = try Self.fixtureModel()
        let requests = Self.requests()
        let chunked = NativeScorer(model: model, sharesContext: false)
        chunked.logitsBudgetBytes = 160 * 4 * 5
        let results = try chunked.loglikelihood(requests)
        Self.expectClose(results, try requests.map { try Self.reference(model, $0, maxLength: 64) }, "five rows at a time")
    }

    @Test func rollingLoglikelihoodSumsItsWindows() throws {
        let model = try Self.fixtureModel()
        var t = Tokens(state: 99)
        let documents = [t.next(150), t.next(64), t.next(1), []]
        let scorer = NativeScorer(model: model)
        let totals = try scorer.loglikelihoodRolling(documents, prefixToken: 3)
        for (d, tokens) in documents.enumerated() {
            let windows = rollingWindows(tokens: tokens, prefixToken: 3, maxLength: 64)
            #expect(windows.reduce(0) { $0 + $1.continuation.count } == tokens.count, "every token predicted once")
            let expected = try windows.reduce(0.0) { $0 + (try Self.reference(model, $1, maxLength: 64)).logprob }
            #expect(abs(totals[d] - expected) <= 1e-4, "document \(d): \(totals[d]) vs \(expected)")
        }
        #expect(totals[3] == 0)
    }

    @Test func badRequestsAreErrors() throws {
        let model = try Self.fixtureModel()
        let scorer = NativeScorer(model: model)
        #expect(throws: ScoringError.self) { try scorer.loglikelihood([TokenRequest(context: [1, 2], continuation: [160])]) }
        #expect(throws: ScoringError.self) { try scorer.loglikelihood([TokenRequest(context: [-1], continuation: [2])]) }
        #expect(throws: ScoringError.self) { try scorer.loglikelihood([TokenRequest(context: [], continuation: [2])]) }
        let empty = try scorer.loglikelihood([TokenRequest(context: [1], continuation: [])])
        #expect(empty == [LoglikelihoodResult(logprob: 0, isGreedy: true)])
    }
}
