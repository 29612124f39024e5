import Foundation
import Testing

@testable import MoEEval

/// Native tasks against lm-eval 0.4.13 itself (Fixtures/lmeval/case_*.json, written by
/// tools/reference/lmeval_goldens.py): the same documents must give the same request strings, the same
/// few-shot examples, and — with the same fake model answering — the same per-document and task metrics.
@Suite(.enabled(if: TaskPaths.sharedDataAvailable, "../shared/data is absent: no benchmark data to compare on"))
struct TaskTestsHarnessAgreement {
    static let cases = [
        "hellaswag_0shot", "hellaswag_3shot", "arc_easy_0shot", "arc_easy_5shot", "mmlu_pair_0shot", "mmlu_pair_5shot",
        "winogrande_0shot", "winogrande_4shot", "piqa_0shot", "piqa_2shot", "boolq_superglue_0shot", "boolq_hf_0shot",
        "boolq_superglue_1shot", "openbookqa_0shot", "lambada_0shot", "lambada_2shot", "wikitext_0shot",
    ]

    static let loaders: [String: @Sendable (TaskData.Source) throws -> [TaskDocument]] = [
        "hellaswag": Hellaswag.documents, "arc_easy": ARC.documents, "winogrande": Winogrande.documents,
        "piqa": PIQA.documents, "boolq": BoolQ.documents, "openbookqa": OpenBookQA.documents,
        "lambada_openai": Lambada.documents, "wikitext": Wikitext.documents,
    ]

    static func dataURL(_ path: String) -> URL {
        path.hasPrefix("@")
            ? TaskPaths.fixtures.appendingPathComponent(String(path.dropFirst()))
            : TaskPaths.sharedData.appendingPathComponent(path)
    }

    static func nativeName(_ harnessTask: String) -> String {
        let base = harnessTask.hasSuffix("_local") ? String(harnessTask.dropLast(6)) : harnessTask
        return ["boolq_superglue": "boolq", "boolq_hf": "boolq"][base] ?? base
    }

    /// The native definitions the case ran, reading the files the harness read.
    static func nativeTasks(_ golden: [String: Any]) throws -> (tasks: [BenchmarkTask], groups: [TaskGroup]) {
        let native = try #require(golden["native_task"] as? String)
        let harnessTasks = try #require(golden["tasks"] as? [String: Any]).keys.sorted()
        if native == "mmlu" {
            let names = harnessTasks.map(nativeName)
            let (tasks, _) = try NativeTasks.resolve(names, dataDir: TaskPaths.sharedData)
            let groups = (golden["groups"] as? [String: Any])?.keys.map { TaskGroup(name: $0, leaves: names) } ?? []
            return (tasks, groups)
        }
        let data = try #require(golden["data"] as? [String: Any])
        let loader = try #require(loaders[native])
        var task = try #require(try NativeTasks.resolve([native], dataDir: TaskPaths.sharedData).0.first)
        if let eval = data["eval"] as? String {
            let url = dataURL(eval)
            task.documents = { try loader(.file(url)) }
        }
        if let pool = data["fewshot"] as? String {
            let url = dataURL(pool)
            task.fewShotPool = { try loader(.file(url)) }
        }
        return ([task], [])
    }

    @Test(arguments: cases)
    func requestsFewShotAndMetricsMatchTheHarness(_ name: String) throws {
        try check(try loadGolden("case_\(name).json"), name: name)
    }

    /// Every document of every task (`lmeval_goldens.py --full DIR`, not committed: tens of MB).
    @Test(.enabled(if: ProcessInfo.processInfo.environment["MOE_EVAL_LMEVAL_FULL"] != nil))
    func everyDocumentMatchesTheHarness() throws {
        let folder = URL(fileURLWithPath: ProcessInfo.processInfo.environment["MOE_EVAL_LMEVAL_FULL"] ?? "")
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasPrefix("case_") }.sorted()
        #expect(!names.isEmpty, "no case files in \(folder.path)")
        for name in names {
            try check(try loadGolden(name, in: folder), name: name)
        }
    }

    func check(_ golden: [String: Any], name: String) throws {
        let shots = try #require(golden["num_fewshot"] as? Int)
        let limit = golden["limit"] as? Int
        let (tasks, groups) = try Self.nativeTasks(golden)
        let goldenTasks = try #require(golden["tasks"] as? [String: [String: Any]])
        let output = try NativeTasks.evaluate(
            tasks, groups: groups, limit: limit, numFewshot: shots, scorer: FakeScorer(),
            logSamples: true, progress: nil)

        for task in tasks {
            let harnessName = try #require(goldenTasks.keys.first { Self.nativeName($0) == task.name }, "no golden for \(task.name)")
            let expected = try #require(goldenTasks[harnessName])
            let documents = try #require(expected["docs"] as? [[String: Any]])
            let prepared = try NativeTasks.prepare(task, limit: limit, numFewshot: shots)
            let samples = try #require(output.samples[task.name])
            try #require(
                prepared.count == documents.count,
                "\(name)/\(task.name): \(prepared.count) documents, the harness evaluated \(documents.count)")
            #expect(output.nShot[task.name] == expected["n_shot"] as? Int)
            for (d, (doc, mine)) in zip(documents, prepared).enumerated() {
                try compareDocument(doc, mine, samples[d], label: "\(name)/\(task.name) doc \(d)")
            }
            try compareResults(
                try #require(expected["results"] as? [String: Any]), output.results[task.name] ?? [:],
                label: "\(name)/\(task.name)")
        }
        if let expectedGroups = golden["groups"] as? [String: [String: Any]] {
            for (group, values) in expectedGroups {
                try compareResults(values.filter { $0.key != "sample_count" }, output.results[group] ?? [:], label: "\(name)/\(group)")
            }
        }
    }

    func compareDocument(
        _ doc: [String: Any], _ mine: NativeTasks.PreparedDocument, _ sample: NativeTasks.Sample,
        label: String
    ) throws {
        if let indices = doc["fewshot_indices"] as? [Int] {
            #expect(mine.fewShot == indices, "\(label): few-shot examples \(mine.fewShot), the harness drew \(indices)")
        } else {
            #expect(mine.fewShot.isEmpty, "\(label): few-shot examples drawn for a 0-shot case")
        }
        let metrics = try #require(doc["metrics"] as? [String: Any])
        if case .rolling(let text, let words, let bytes) = mine.document.content {
            let fnv = String(format: "%016llx", FakeModel.fnv1a64(Array(text.utf8)))
            #expect(
                fnv == doc["text_fnv"] as? String && text.unicodeScalars.count == doc["text_scalars"] as? Int,
                "\(label): the detokenized document differs from the harness's (fnv \(fnv), \(text.unicodeScalars.count) code points)")
            let resps = try #require(doc["resps"] as? [Double])
            #expect(resps == [FakeModel.rolling(text)], "\(label): the fake model disagrees with the Python one")
            #expect((metrics["word_perplexity"] as? [Any])?.last as? Int == words, "\(label): word count \(words)")
            #expect((metrics["byte_perplexity"] as? [Any])?.last as? Int == bytes, "\(label): byte count \(bytes)")
            #expect(sample.words == words && sample.bytes == bytes)
            return
        }
        let contexts = try #require(doc["contexts"] as? [String])
        let requests = try #require(doc["requests"] as? [[Any]])
        try #require(mine.requests.count == requests.count, "\(label): \(mine.requests.count) requests, the harness made \(requests.count)")
        for (r, (pair, request)) in zip(requests, mine.requests).enumerated() {
            let context = contexts[try #require(pair[0] as? Int)], continuation = try #require(pair[1] as? String)
            let (sameContext, contextDiff) = sameText(request.context, context)
            let (sameContinuation, continuationDiff) = sameText(request.continuation, continuation)
            try #require(sameContext, "\(label) request \(r) context: \(contextDiff)")
            try #require(sameContinuation, "\(label) request \(r) continuation: \(continuationDiff)")
        }
        let resps = try #require(doc["resps"] as? [[Any]])
        for (resp, request) in zip(resps, mine.requests) {
            let fake = FakeModel.loglikelihood(request.context, request.continuation)
            #expect(
                fake.logprob == resp[0] as? Double && fake.isGreedy == resp[1] as? Bool,
                "\(label): the fake model disagrees with the Python one")
        }
        #expect(sample.target == doc["target"] as? String, "\(label): target \(sample.target ?? "nil") vs \(doc["target"] ?? "nil")")
        if let acc = goldenNumber(metrics["acc"]) { #expect(sample.acc == acc, "\(label): acc") }
        if let accNorm = goldenNumber(metrics["acc_norm"]) { #expect(sample.accNorm == accNorm, "\(label): acc_norm") }
        if let perplexityItem = metrics["perplexity"] as? Double {
            #expect(sample.loglikelihoods == [perplexityItem], "\(label): perplexity item")
        }
    }

    func compareResults(_ expected: [String: Any], _ mine: [String: Double], label: String) throws {
        for (key, value) in expected {
            if let number = goldenNumber(value) {
                let actual = try #require(mine[key], "\(label): \(key) missing (harness: \(number))")
                #expect(closeEnough(actual, number), "\(label): \(key) = \(actual), the harness reports \(number)")
            } else {
                #expect(mine[key] == nil, "\(label): \(key) = \(mine[key] ?? 0), the harness reports N/A")
            }
        }
        let extra = Set(mine.keys).subtracting(expected.keys)
        #expect(extra.isEmpty, "\(label): keys the harness does not report: \(extra.sorted())")
    }
}
