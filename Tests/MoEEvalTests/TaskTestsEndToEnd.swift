import Foundation
import MoECheckpoint
import MoETensor
import MoETokenizer
import Testing

@testable import MoEEval
@testable import MoEModels

/// Deterministic random fp32 weights for the shapes of `args` (a model whose vocabulary fits a real
/// tokenizer; the numbers mean nothing, only that every path computes them the same way).
final class TestRandomWeights: WeightSource, @unchecked Sendable {
    let tensorInfos: [String: TensorInfo]
    var namingEra: NamingEra { .v0_2 }
    var description: String { "test random weights" }

    init(args: ModelArgs) {
        tensorInfos = args.expectedShapes().mapValues { TensorInfo(dtype: .float32, shape: $0) }
    }

    func load(_ name: String) throws -> StoredTensor {
        let info = try #require(tensorInfos[name])
        var state = FakeModel.fnv1a64(Array(name.utf8))
        let values: [Float] = (0..<info.elementCount).map { _ in
            if name.hasSuffix("norm.weight") { return 1 }
            if name.hasSuffix("expert_bias") { return 0 }
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return (Float(state >> 40) / Float(1 << 24) * 2 - 1) * 0.08
        }
        return try values.withUnsafeBytes { try StoredTensor(name: name, dtype: .float32, shape: info.shape, copying: $0) }
    }
}

/// `NativeTasks.run` from data files to results, with a real tokenizer (the demo tokenizer) and a
/// random-weight model with its vocabulary. The requests' log-likelihoods are recomputed here from the
/// request strings with the tokenizer and a batch-1 forward, independently of the encoder and scorer.
@Suite(.enabled(if: TaskPaths.sharedDataAvailable, "../shared/data is absent: no benchmark data"))
struct TaskTestsEndToEnd {
    static func model(vocab: Int, maxSeqLen: Int, dim: Int = 32, layers: Int = 3) throws -> DeepSeekV3 {
        var args = try ModelArgs.load(jsonFile: TaskPaths.dsv3Fixtures.appendingPathComponent("v022_softmax_basic/model_args.json"))
        args.vocabSize = vocab
        args.maxSeqLen = maxSeqLen
        args.dim = dim
        args.nLayers = layers
        return try DeepSeekV3(
            args: args, weights: TestRandomWeights(args: args),
            numerics: Numerics(yarn: false, finalNormEps: 1e-5, origin: "test"))
    }

    static func tokenizer() throws -> Tokenizer {
        try Tokenizer.load(from: TaskPaths.repositoryRoot.appendingPathComponent("assets/tokenizers/demo-dsv3"))
    }

    @Test func tasksRunFromFilesToResults() throws {
        let tokenizer = try Self.tokenizer()
        let model = try Self.model(vocab: tokenizer.vocabSize, maxSeqLen: 128)
        let scorer = NativeScorer(model: model)
        var messages: [String] = []
        let run = try NativeTasks.run(
            tasks: ["hellaswag,arc_easy", "lambada_openai mmlu_anatomy", "wikitext"], limit: 3,
            numFewshot: nil, dataDir: TaskPaths.sharedData, tokenizer: tokenizer, scorer: scorer,
            logSamples: true, progress: { messages.append($0) })
        #expect(Set(run.results.keys) == ["hellaswag", "arc_easy", "lambada_openai", "mmlu_anatomy", "wikitext"])
        #expect(
            Set(run.results["hellaswag"]?.keys.map { $0 } ?? []) == [
                "acc,none", "acc_stderr,none", "acc_norm,none", "acc_norm_stderr,none", "sample_len",
            ])
        #expect(
            Set(run.results["lambada_openai"]?.keys.map { $0 } ?? []) == [
                "perplexity,none", "perplexity_stderr,none", "acc,none", "acc_stderr,none", "sample_len",
            ])
        #expect(
            Set(run.results["wikitext"]?.keys.map { $0 } ?? []) == [
                "word_perplexity,none", "byte_perplexity,none", "bits_per_byte,none", "sample_len",
            ])
        #expect(run.samples.values.allSatisfy { $0.count == 3 })
        #expect(run.nShot["hellaswag"] == 0 && messages.count >= 5)
        #expect(scorer.statistics.sharedRequests > 0)

        let encoder = RequestEncoder(tokenizer: tokenizer)
        func reference(_ context: String, _ continuation: String) throws -> Double {
            let whole = tokenizer.encode(context + continuation, addSpecialTokens: false)
            let contextTokens = tokenizer.encode(context, addSpecialTokens: false)
            let request = TokenRequest(context: contextTokens, continuation: Array(whole[contextTokens.count...]))
            return try TaskTestsScorer.reference(model, request, maxLength: 128).logprob
        }
        for name in ["hellaswag", "arc_easy", "lambada_openai", "mmlu_anatomy"] {
            let (tasks, _) = try NativeTasks.resolve([name], dataDir: TaskPaths.sharedData)
            let prepared = try NativeTasks.prepare(try #require(tasks.first), limit: 3, numFewshot: 0)
            for (d, doc) in prepared.enumerated() {
                let sample = try #require(run.samples[name]?[d])
                for (r, request) in doc.requests.enumerated() {
                    let expected = try reference(request.context, request.continuation)
                    #expect(abs(sample.loglikelihoods[r] - expected) <= 1e-4, "\(name) doc \(d) request \(r)")
                }
                if case .choices(_, let choices, let gold) = doc.document.content {
                    let m = DocumentMetrics.multipleChoice(logLikelihoods: sample.loglikelihoods, choices: choices, gold: gold)
                    #expect(sample.acc == m.acc && sample.correct == m.acc && sample.target == String(gold))
                }
            }
        }
        let wikitext = try NativeTasks.prepare(
            try #require(try NativeTasks.resolve(["wikitext"], dataDir: TaskPaths.sharedData).0.first),
            limit: 1, numFewshot: 0)
        guard case .rolling(let text, let words, _) = try #require(wikitext.first).document.content else {
            Issue.record("wikitext document is not rolling"); return
        }
        let tokens = tokenizer.encode(text, addSpecialTokens: false)
        let prefix = try #require(encoder.prefixTokenId)
        // The remote-tokenizer backend's `bos_token_id or eos_token_id`: this tokenizer's BOS is id 0, so EOS.
        #expect(tokenizer.bosTokenId == 0 && prefix == tokenizer.eosTokenId)
        let expected = try rollingWindows(tokens: tokens, prefixToken: prefix, maxLength: 128)
            .reduce(0.0) { $0 + (try TaskTestsScorer.reference(model, $1, maxLength: 128)).logprob }
        let sample = try #require(run.samples["wikitext"]?.first)
        #expect(abs(sample.loglikelihoods[0] - expected) <= 1e-3 && sample.words == words && sample.isGreedy.isEmpty)
    }

    @Test func samplesEncodeAsDocumented() throws {
        let sample = NativeTasks.Sample(
            docId: 3, target: "1", loglikelihoods: [-1.5, -2.25], isGreedy: [false, true],
            correct: 0, acc: 0, accNorm: 1)
        let json = try #require(String(data: try JSONEncoder().encode(sample), encoding: .utf8))
        for key in [
            "\"doc_id\":3", "\"target\":\"1\"", "\"loglikelihoods\":[-1.5,-2.25]", "\"is_greedy\":[false,true]",
            "\"correct\":0", "\"acc\":0", "\"acc_norm\":1",
        ] {
            #expect(json.contains(key), "\(json) lacks \(key)")
        }
        #expect(try JSONDecoder().decode(NativeTasks.Sample.self, from: Data(json.utf8)) == sample)
    }

    /// Native scoring speed (not a timed test: run with MOE_EVAL_TASK_SPEED=1 and read the output).
    @Test(.enabled(if: ProcessInfo.processInfo.environment["MOE_EVAL_TASK_SPEED"] != nil))
    func nativeScoringSpeed() throws {
        let lls = (0..<5153).map { -Double($0 % 97) / 10 - 1 }
        let bootstrapStart = Date()
        let stderr = TaskMetrics.bootstrapPerplexityStderr(lls)
        print(
            "speed bootstrap: lambada-sized perplexity stderr (5153 documents, 100000 resamples) in \(String(format: "%.2f", Date().timeIntervalSince(bootstrapStart))) s (\(stderr))"
        )
        let tokenizer = try Self.tokenizer()
        for (label, dim, layers) in [("fixture-sized (dim 32, 3 layers)", 32, 3), ("debugmodel-sized (dim 256, 6 layers)", 256, 6)] {
            let model = try Self.model(vocab: tokenizer.vocabSize, maxSeqLen: 512, dim: dim, layers: layers)
            for sharing in [true, false] {
                let scorer = NativeScorer(model: model, sharesContext: sharing)
                let start = Date()
                let run = try NativeTasks.run(
                    tasks: ["hellaswag"], limit: 100, numFewshot: nil, dataDir: TaskPaths.sharedData,
                    tokenizer: tokenizer, scorer: scorer, logSamples: false, progress: nil)
                let seconds = Date().timeIntervalSince(start)
                let s = scorer.statistics
                _ = run
                print(
                    "speed \(label) sharing=\(sharing): hellaswag 100 docs, \(run.requests) requests in \(String(format: "%.2f", seconds)) s (scoring \(String(format: "%.2f", s.seconds)) s, \(String(format: "%.0f", Double(run.requests) / s.seconds)) requests/s), \(s.forwardCalls) forwards, \(s.positions) positions, check difference \(s.sharingCheckDifference ?? -1)"
                )
            }
        }
    }
}
