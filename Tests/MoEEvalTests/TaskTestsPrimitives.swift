import Foundation
import MoETokenizer
import Testing

@testable import MoEEval

/// The pieces under the tasks, each against values printed by CPython 3.11 / lm-eval 0.4.13 itself
/// (Fixtures/lmeval/{rng,windows,metrics,text,encoding,mmlu_subjects}.json).
struct TaskTestsPrimitives {
    @Test func pythonRandomMatchesCPython() throws {
        let golden = try loadGolden("rng.json")
        for seedCase in try #require(golden["int_seeds"] as? [[String: Any]]) {
            let seed = try #require(seedCase["seed"] as? Int)
            var r = PythonRandom(seed: seed)
            let words = (0..<5).map { _ in Int(r.getrandbits(32)) }
            #expect(words == seedCase["getrandbits32"] as? [Int], "seed \(seed) getrandbits(32)")
            for pair in try #require(seedCase["getrandbits"] as? [[Int]]) {
                var fresh = PythonRandom(seed: seed)
                #expect(Int(fresh.getrandbits(pair[0])) == pair[1], "seed \(seed) getrandbits(\(pair[0]))")
            }
            var a = PythonRandom(seed: seed), b = PythonRandom(seed: seed)
            let randoms = [a.random()] + (0..<4).map { _ in b.random() }
            #expect(randoms == seedCase["random"] as? [Double], "seed \(seed) random()")
        }
        for sampleCase in try #require(golden["sample"] as? [[String: Any]]) {
            let seed = try #require(sampleCase["seed"] as? Int), n = try #require(sampleCase["n"] as? Int)
            let k = try #require(sampleCase["k"] as? Int)
            var r = PythonRandom(seed: seed)
            for draw in try #require(sampleCase["draws"] as? [[Int]]) {
                #expect(r.sample(populationSize: n, count: k) == draw, "Random(\(seed)).sample(range(\(n)), \(k))")
            }
        }
        for shuffleCase in try #require(golden["shuffle"] as? [[String: Any]]) {
            var r = PythonRandom(seed: try #require(shuffleCase["seed"] as? Int))
            var x = Array(0..<(try #require(shuffleCase["n"] as? Int)))
            r.shuffle(&x)
            #expect(x == shuffleCase["result"] as? [Int])
        }
        for choicesCase in try #require(golden["choices"] as? [[String: Any]]) {
            var r = PythonRandom(seed: try #require(choicesCase["seed"] as? Int))
            let n = try #require(choicesCase["n"] as? Int)
            #expect((0..<n).map { _ in r.choiceIndex(n) } == choicesCase["result"] as? [Int])
        }
    }

    /// The reference's own golden draws (lm-eval.md §4): the sampler over range(100, 120), n=5, three documents.
    @Test func contextSamplerDrawsOfTheReference() throws {
        let pool = (100..<120).map {
            TaskDocument(content: .continuation(context: "\($0)", target: ""), identity: Array("\($0)".utf8), origin: "")
        }
        var sampler = FewShotSampler(sampling: .random(passesEvalDoc: false), pool: pool, taskName: "t")
        let outside = TaskDocument(content: .continuation(context: "x", target: ""), identity: [1], origin: "")
        let draws = try (0..<3).map { _ in try sampler.draw(5, for: outside).map { 100 + $0 } }
        #expect(draws == [[114, 103, 100, 102, 101], [102, 103, 111, 107, 100], [100, 119, 111, 115, 114]])
        var quirk = FewShotSampler(sampling: .random(passesEvalDoc: true), pool: pool, taskName: "t")
        #expect(try quirk.draw(5, for: outside) == [14, 3, 0, 2, 1])
        var firstN = FewShotSampler(sampling: .firstN, pool: pool, taskName: "t")
        #expect(try firstN.draw(5, for: outside) == [0, 1, 2, 3, 4])
    }

    @Test func rollingWindowsMatchTheHarness() throws {
        let cases = try #require(try loadGoldenValue("windows.json") as? [[String: Any]])
        for c in cases {
            let n = try #require(c["tokens"] as? Int), maxLength = try #require(c["max_seq_len"] as? Int)
            let expected = try #require(c["windows"] as? [Any]).map { ($0 as? [Any] ?? []).map { $0 as? [Int] ?? [] } }
            let windows = rollingWindows(tokens: Array(0..<n), prefixToken: -1, maxLength: maxLength)
            #expect(windows.map { [$0.context, $0.continuation] } == expected, "\(n) tokens, max_seq_len \(maxLength)")
        }
    }

    @Test func metricFunctionsMatchTheHarness() throws {
        let golden = try loadGolden("metrics.json")
        let acc = try #require(golden["acc_items"] as? [Double]), lls = try #require(golden["ll_items"] as? [Double])
        #expect(closeEnough(TaskMetrics.mean(acc), try #require(golden["mean"] as? Double)))
        #expect(closeEnough(TaskMetrics.meanStderr(acc), try #require(golden["mean_stderr"] as? Double)))
        #expect(closeEnough(TaskMetrics.perplexity(lls), try #require(golden["perplexity"] as? Double)))
        #expect(
            closeEnough(
                TaskMetrics.bootstrapPerplexityStderr(lls, iterations: 1000),
                try #require(golden["perplexity_bootstrap_stderr_1000"] as? Double)))
        #expect(
            closeEnough(
                TaskMetrics.bootstrapPerplexityStderr(lls),
                try #require(golden["perplexity_bootstrap_stderr_100000"] as? Double)))
        let pooled = try #require(golden["pooled"] as? [String: Any])
        let sizes = try #require(pooled["sizes"] as? [Int]), stderrs = try #require(pooled["stderrs"] as? [Double])
        let values = try #require(pooled["values"] as? [Double])
        #expect(closeEnough(TaskMetrics.sizeWeightedMean(values, sizes: sizes), try #require(pooled["aggregate"] as? Double)))
        #expect(closeEnough(TaskMetrics.pooledStderr(stderrs, sizes: sizes), try #require(pooled["pooled_stderr"] as? Double)))
        let rolling = try #require(golden["rolling_items"] as? [[Any]]).map {
            (logLikelihood: goldenNumber($0[0]) ?? 0, count: $0[1] as? Int ?? 0)
        }
        #expect(closeEnough(TaskMetrics.weightedPerplexity(rolling), try #require(golden["weighted_perplexity"] as? Double)))
        #expect(closeEnough(TaskMetrics.bitsPerByte(rolling), try #require(golden["bits_per_byte"] as? Double)))
        // The reference's own examples (lm-eval.md §3).
        #expect(TaskMetrics.mean([1, 0, 1, 1, 0]) == 0.6)
        #expect(closeEnough(TaskMetrics.meanStderr([1, 0, 1, 1, 0]), 0.24494897427831783))
        #expect(closeEnough(TaskMetrics.weightedPerplexity([(-10, 5), (-20, 8)]), 10.05120278750086))
        #expect(closeEnough(TaskMetrics.bitsPerByte([(-10, 5), (-20, 8)]), 3.3292962482053))
    }

    @Test func argmaxAndAccNormFollowNumpyAndCodePoints() {
        #expect(TaskMetrics.argmax([-1, -0.5, -0.5]) == 1)
        #expect(TaskMetrics.argmax([-1, .nan, 0]) == 1)
        // acc_norm divides by code points: "é" has 1 (2 bytes), "e\u{301}" 2 (3 bytes, 1 grapheme); only
        // code points make the second choice win (-4/2 > -2.5/1; by bytes or graphemes the first wins).
        let m = DocumentMetrics.multipleChoice(logLikelihoods: [-2.5, -4], choices: ["é", "e\u{301}"], gold: 1)
        #expect(m.acc == 0 && m.accNorm == 1)
        let outOfRange = DocumentMetrics.multipleChoice(logLikelihoods: [-1, -2], choices: ["a", "b"], gold: 2)
        #expect(outOfRange.acc == 0 && outOfRange.gold == -100)
    }

    @Test func textFunctionsMatchPython() throws {
        let cases = try #require(try loadGoldenValue("text.json") as? [[String: Any]])
        func check(_ mine: String, _ key: String, _ c: [String: Any], _ text: String) {
            let (same, diff) = sameText(mine, c[key] as? String ?? "<missing>")
            #expect(same, "\(key) of \(String(reflecting: text)): \(diff)")
        }
        for c in cases {
            let text = try #require(c["text"] as? String)
            check(Hellaswag.preprocess(text), "hellaswag_preprocess", c, text)
            check(PythonText.capitalize(text), "capitalize", c, text)
            check(PythonText.strip(text), "strip", c, text)
            check(PythonText.lstrip(text), "lstrip", c, text)
            check(Wikitext.detokenize(text), "wikitext_detokenize", c, text)
            #expect(PythonText.trailingSpaceCount(PythonText.scalars(text)) == c["rstrip_count"] as? Int)
            #expect(PythonText.whitespaceSplitCount(text) == c["words"] as? Int, "words of \(String(reflecting: text))")
            #expect(PythonText.whitespaceSplitCount(text) == c["regex_split_count"] as? Int)
            #expect(text.utf8.count == c["bytes"] as? Int)
            let pieces = PythonText.splitOnSpace(text)
            let expected = try #require(c["split_space"] as? [String])
            #expect(
                pieces.count == expected.count && zip(pieces, expected).allSatisfy { sameText($0, $1).0 },
                "split(' ') of \(String(reflecting: text))")
        }
    }

    /// The reference's golden hellaswag document (lm-eval.md §2.1) and its 1-shot prompt start.
    @Test func hellaswagGoldenExampleOfTheReference() throws {
        let line =
            #"{"activity_label": "Removing ice from car", "ctx_a": "Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles.", "ctx_b": "then", "endings": [", the man adds wax to the windshield and cuts it.", ", a person board a ski lift, while two men supporting the head of the person wearing winter clothes snow as the we girls sled.", ", the man puts on a christmas coat, knitted with netting.", ", the man continues removing the snow on his car."], "label": "3"}"#
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("moe-eval-hs-\(UUID().uuidString).jsonl")
        try Data(line.utf8).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let doc = try #require(try Hellaswag.documents(url).first)
        guard case .choices(let query, let choices, let gold) = doc.content else { Issue.record("not multiple choice"); return }
        #expect(
            query
                == "Removing ice from car: Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles. Then"
        )
        #expect(choices[3] == ", the man continues removing the snow on his car." && gold == 3)
    }

    @Test func mmluSubjectsAndCategoriesMatchTheHarness() throws {
        let golden = try #require(try loadGolden("mmlu_subjects.json") as? [String: String])
        #expect(MMLU.subjects.count == 57)
        for (subject, category) in MMLU.subjects {
            #expect(golden[subject] == category.rawValue, "\(subject)")
        }
        #expect(Set(MMLU.subjects.map(\.name)) == Set(golden.keys))
    }

    /// `_encode_pair` and the empty-context rule, against lm-eval's `TemplateLM.loglikelihood` with the
    /// GPT-2 tokenizer (tokenizers 0.23.3) and prefix token 50256.
    @Test(.enabled(if: TaskPaths.sharedDataAvailable, "../shared/data is absent: no GPT-2 tokenizer"))
    func requestTokenizationMatchesTheHarness() throws {
        let golden = try loadGolden("encoding.json")
        let tokenizer = try Tokenizer.load(from: TaskPaths.sharedData.appendingPathComponent("tokenizers/gpt2_olmo_test_fixture"))
        let encoder = RequestEncoder(tokenizer: tokenizer, prefixTokenId: try #require(golden["prefix_token_id"] as? Int))
        let requests = try #require(golden["requests"] as? [[String: Any]])
        #expect(requests.count > 60)
        let mine = try encoder.encode(
            requests.map {
                LoglikelihoodRequest(context: $0["context"] as? String ?? "", continuation: $0["continuation"] as? String ?? "")
            })
        for (r, tokens) in zip(requests, mine) {
            #expect(
                tokens.context == r["context_tokens"] as? [Int] && tokens.continuation == r["continuation_tokens"] as? [Int],
                "\(String(reflecting: r["context"] as? String ?? "")) + \(String(reflecting: r["continuation"] as? String ?? ""))")
        }
    }
}
