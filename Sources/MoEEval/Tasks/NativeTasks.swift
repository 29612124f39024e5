import Foundation
import MoETokenizer

/// Benchmark tasks run natively with lm-eval 0.4.13's prompts, few-shot sampling and metrics.
///
/// ```swift
/// let scorer = NativeScorer(model: loaded.model)
/// let run = try NativeTasks.run(tasks: ["hellaswag", "mmlu"], limit: 20, numFewshot: nil,
///                               data: .directory(URL(fileURLWithPath: "data")), tokenizer: tokenizer,
///                               scorer: scorer, logSamples: true, progress: { print($0) })
/// run.results["hellaswag"]?["acc_norm,none"]
/// ```
public enum NativeTasks {
    /// The task names `run` accepts (groups expand to their subjects).
    public static var names: [String] {
        ["hellaswag", "arc_easy", "arc_challenge", "mmlu"] + MMLU.Category.allCases.map(\.groupName)
            + MMLU.subjects.map { "mmlu_" + $0.name }
            + ["winogrande", "piqa", "boolq", "openbookqa", "lambada_openai", "wikitext"]
    }

    /// One evaluated document, for `--log-samples` and paired comparisons.
    public struct Sample: Codable, Sendable, Equatable {
        public var docId: Int
        /// `str(doc_to_target(doc))` as the harness logs it: the gold index for multiple choice, the
        /// completion for winogrande and lambada; absent for wikitext.
        public var target: String?
        /// One per request (choice); a single entry for lambada and wikitext.
        public var loglikelihoods: [Double]
        /// Greedy flags in the same order; empty for wikitext (rolling scores have none).
        public var isGreedy: [Bool]
        /// The task's primary 0/1 score, what `moe-eval compare` pairs: `acc` (absent for wikitext).
        public var correct: Double?
        public var acc: Double?
        public var accNorm: Double?
        /// wikitext: the document's words and UTF-8 bytes (the perplexity denominators).
        public var words: Int?
        public var bytes: Int?

        enum CodingKeys: String, CodingKey {
            case docId = "doc_id", target, loglikelihoods, isGreedy = "is_greedy", correct, acc, accNorm = "acc_norm", words, bytes
        }
    }

    public struct Output: Sendable {
        /// Per task and group: `"<metric>,none"`, `"<metric>_stderr,none"` (absent where the harness writes
        /// "N/A") and `"sample_len"`, keyed like lm-eval's results.
        public var results: [String: [String: Double]]
        /// Per task, every document in order (empty unless `logSamples`).
        public var samples: [String: [Sample]]
        /// Few-shot examples per prompt, per task.
        public var nShot: [String: Int]
        /// Groups and the tasks each aggregates.
        public var groups: [String: [String]]
        public var requests: Int
        public var scoringSeconds: Double
        /// Tasks that could not run (missing or bad data) and why, when asked to go on without them.
        public var errors: [String: String] = [:]
    }

    /// Runs `tasks` (names or groups, space- or comma-separated entries) with the model behind `scorer`,
    /// tokenizing as lm-eval's API backend does (no BOS; see `RequestEncoder`).
    public static func run(
        tasks: [String], limit: Int?, numFewshot: Int?, dataDir: URL, tokenizer: Tokenizer,
        scorer: LanguageModelScorer, logSamples: Bool, progress: ((String) -> Void)?
    ) throws -> Output {
        try run(
            tasks: tasks, limit: limit, numFewshot: numFewshot, data: .directory(dataDir), tokenizer: tokenizer,
            scorer: scorer, logSamples: logSamples, progress: progress)
    }

    /// `run` with data from wherever `data` finds it (see `BenchmarkDataSources`).
    /// `skipFailedTasks`: a task whose data is missing or bad is left out and its reason kept in
    /// `Output.errors` instead of failing the whole run.
    /// `taskRouting`: told the task of every request before scoring (give the same collector to the scorer).
    public static func run(
        tasks: [String], limit: Int?, numFewshot: Int?, data: BenchmarkDataSources, tokenizer: Tokenizer,
        scorer: LanguageModelScorer, logSamples: Bool, skipFailedTasks: Bool = false,
        taskRouting: TaskRoutingCollector? = nil, progress: ((String) -> Void)?
    ) throws -> Output {
        try evaluate(
            tasks: tasks, limit: limit, numFewshot: numFewshot, data: data,
            scorer: TokenizedScorer(encoder: RequestEncoder(tokenizer: tokenizer), scorer: scorer),
            logSamples: logSamples, skipFailedTasks: skipFailedTasks, taskRouting: taskRouting, progress: progress)
    }

    /// `run` over any text-level scorer.
    public static func evaluate(
        tasks: [String], limit: Int?, numFewshot: Int?, dataDir: URL, scorer: TextScorer,
        logSamples: Bool, progress: ((String) -> Void)? = nil
    ) throws -> Output {
        try evaluate(
            tasks: tasks, limit: limit, numFewshot: numFewshot, data: .directory(dataDir), scorer: scorer,
            logSamples: logSamples, progress: progress)
    }

    public static func evaluate(
        tasks: [String], limit: Int?, numFewshot: Int?, data: BenchmarkDataSources, scorer: TextScorer,
        logSamples: Bool, skipFailedTasks: Bool = false, taskRouting: TaskRoutingCollector? = nil,
        progress: ((String) -> Void)? = nil
    ) throws -> Output {
        let (resolved, groups) = try resolve(tasks, data: data)
        return try evaluate(
            resolved, groups: groups, limit: limit, numFewshot: numFewshot, scorer: scorer,
            logSamples: logSamples, skipFailedTasks: skipFailedTasks, taskRouting: taskRouting, progress: progress)
    }

    /// Task names → task definitions and the groups to report, in the order first named.
    static func resolve(_ entries: [String], dataDir: URL) throws -> ([BenchmarkTask], [TaskGroup]) {
        try resolve(entries, data: .directory(dataDir))
    }

    static func resolve(_ entries: [String], data: BenchmarkDataSources) throws -> ([BenchmarkTask], [TaskGroup]) {
        let names = entries.flatMap { $0.split(whereSeparator: { $0 == "," || $0.isWhitespace }).map(String.init) }
        guard !names.isEmpty else { throw TaskDataError(description: "no benchmark task named") }
        var tasks: [BenchmarkTask] = [], groups: [TaskGroup] = []
        var seen = Set<String>()
        func add(_ task: BenchmarkTask) {
            if seen.insert(task.name).inserted { tasks.append(task) }
        }
        for name in names {
            switch name {
            case "hellaswag": add(Hellaswag.task(data: data))
            case "arc_easy": add(ARC.task(.easy, data: data))
            case "arc_challenge": add(ARC.task(.challenge, data: data))
            case "winogrande": add(Winogrande.task(data: data))
            case "piqa": add(PIQA.task(data: data))
            case "boolq": add(BoolQ.task(data: data))
            case "openbookqa": add(OpenBookQA.task(data: data))
            case "lambada_openai": add(Lambada.task(data: data))
            case "wikitext": add(Wikitext.task(data: data))
            case "mmlu":
                let subjects = MMLU.subjects.map(\.name)
                subjects.forEach { add(MMLU.task(subject: $0, data: data)) }
                groups += MMLU.groups(for: subjects) + [TaskGroup(name: "mmlu", leaves: subjects.map { "mmlu_" + $0 })]
            default:
                if let category = MMLU.Category.allCases.first(where: { $0.groupName == name }) {
                    let subjects = MMLU.subjects.filter { $0.category == category }.map(\.name)
                    subjects.forEach { add(MMLU.task(subject: $0, data: data)) }
                    groups += MMLU.groups(for: subjects)
                } else if name.hasPrefix("mmlu_"), MMLU.subjects.contains(where: { "mmlu_" + $0.name == name }) {
                    add(MMLU.task(subject: String(name.dropFirst(5)), data: data))
                } else {
                    throw TaskDataError(
                        description:
                            "unknown benchmark task '\(name)' (known: hellaswag, arc_easy, arc_challenge, mmlu, mmlu_stem, mmlu_other, mmlu_social_sciences, mmlu_humanities, mmlu_<subject>, winogrande, piqa, boolq, openbookqa, lambada_openai, wikitext)"
                    )
                }
            }
        }
        var seenGroups = Set<String>()
        return (tasks, groups.filter { seenGroups.insert($0.name).inserted })
    }

    /// One document's requests and where their answers go.
    struct PreparedDocument {
        var document: TaskDocument
        var requests: [LoglikelihoodRequest]
        var fewShot: [Int]
    }

    /// Few-shot contexts and requests for every document of `task` (the first `limit`), in order.
    static func prepare(_ task: BenchmarkTask, limit: Int?, numFewshot: Int) throws -> [PreparedDocument] {
        var documents = try task.documents()
        // lm-eval treats a limit of 0 as none.
        if let limit, limit > 0 { documents = Array(documents.prefix(limit)) }
        let rolling = documents.contains { if case .rolling = $0.content { return true } else { return false } }
        var sampler: FewShotSampler?
        if numFewshot > 0 && !rolling {
            sampler = FewShotSampler(sampling: task.sampling, pool: try task.fewShotPool(), taskName: task.name)
        }
        return try documents.map { document in
            let fewShot = try sampler?.draw(numFewshot, for: document) ?? []
            var preamble = task.description
            for index in fewShot { preamble += try PromptBuilder.example(sampler!.pool[index]) }
            return PreparedDocument(
                document: document, requests: PromptBuilder.requests(for: document, after: preamble),
                fewShot: fewShot)
        }
    }

    static func evaluate(
        _ requestedTasks: [BenchmarkTask], groups: [TaskGroup], limit: Int?, numFewshot: Int?, scorer: TextScorer,
        logSamples: Bool, skipFailedTasks: Bool = false, taskRouting: TaskRoutingCollector? = nil,
        progress: ((String) -> Void)?
    ) throws -> Output {
        let shots = max(0, numFewshot ?? 0)
        var prepared: [[PreparedDocument]] = []
        var requests: [LoglikelihoodRequest] = [], texts: [String] = []
        var tasks: [BenchmarkTask] = [], failures: [String: String] = [:]
        var requestTasks: [String] = [], rollingTasks: [String] = []
        for task in requestedTasks {
            let documents: [PreparedDocument]
            do {
                documents = try prepare(task, limit: limit, numFewshot: shots)
                guard !documents.isEmpty else { throw TaskDataError(description: "\(task.name): no documents to evaluate") }
            } catch let error as TaskDataError where skipFailedTasks {
                failures[task.name] = error.description
                progress?("\(task.name) cannot run: \(error.description)")
                continue
            }
            tasks.append(task)
            for d in documents {
                requests += d.requests
                requestTasks += Array(repeating: task.name, count: d.requests.count)
                if case .rolling(let text, _, _) = d.document.content {
                    texts.append(text)
                    rollingTasks.append(task.name)
                }
            }
            prepared.append(documents)
            progress?("\(task.name): \(documents.count) documents, \(shots)-shot")
        }
        progress?("scoring \(requests.count) loglikelihood requests and \(texts.count) rolling documents")
        let start = Date()
        taskRouting?.label(requests: requestTasks)
        let answers = try requests.isEmpty ? [] : scorer.loglikelihood(requests)
        // The scorer splits rolling documents into windows it alone counts: they share one label.
        let rollingLabels = Set(rollingTasks)
        taskRouting?.label(requests: [], otherwise: rollingLabels.count == 1 ? rollingLabels.first : "rolling documents")
        let rollingAnswers = try texts.isEmpty ? [] : scorer.loglikelihoodRolling(texts)
        guard answers.count == requests.count, rollingAnswers.count == texts.count else {
            throw ScoringError(
                description:
                    "the scorer answered \(answers.count) of \(requests.count) requests and \(rollingAnswers.count) of \(texts.count) rolling documents"
            )
        }
        let seconds = Date().timeIntervalSince(start)

        var output = Output(
            results: [:], samples: [:], nShot: [:], groups: [:], requests: requests.count + texts.count,
            scoringSeconds: seconds, errors: failures)
        var nextAnswer = 0, nextRolling = 0
        for (task, documents) in zip(tasks, prepared) {
            var metrics: [DocumentMetrics] = []
            var samples: [Sample] = []
            for (docId, d) in documents.enumerated() {
                let results = Array(answers[nextAnswer..<(nextAnswer + d.requests.count)])
                nextAnswer += d.requests.count
                var sample = Sample(
                    docId: docId, target: d.document.targetDescription,
                    loglikelihoods: results.map(\.logprob), isGreedy: results.map(\.isGreedy))
                let m: DocumentMetrics
                switch d.document.content {
                case .choices(_, let choices, let gold):
                    m = DocumentMetrics.multipleChoice(logLikelihoods: sample.loglikelihoods, choices: choices, gold: gold)
                case .filledBlank(let contexts, _, let gold):
                    m = DocumentMetrics.multipleChoice(logLikelihoods: sample.loglikelihoods, choices: contexts, gold: gold)
                case .continuation:
                    m = DocumentMetrics(acc: results[0].isGreedy ? 1 : 0, logLikelihood: results[0].logprob)
                case .rolling(_, let words, let bytes):
                    let ll = rollingAnswers[nextRolling]
                    nextRolling += 1
                    sample.loglikelihoods = [ll]
                    m = DocumentMetrics(logLikelihood: ll, words: words, bytes: bytes)
                }
                sample.acc = task.metrics.contains(.acc) ? m.acc : nil
                sample.correct = sample.acc
                sample.accNorm = task.metrics.contains(.accNorm) ? m.accNorm : nil
                sample.words = m.words
                sample.bytes = m.bytes
                metrics.append(m)
                if logSamples { samples.append(sample) }
            }
            output.results[task.name] = aggregate(task.metrics, metrics)
            output.nShot[task.name] = shots
            if logSamples { output.samples[task.name] = samples }
        }
        for group in groups {
            let leaves = group.leaves.compactMap { output.results[$0] }
            guard leaves.count == group.leaves.count else { continue }
            output.results[group.name] = aggregateGroup(leaves)
            output.groups[group.name] = group.leaves
        }
        return output
    }

    /// The task-level numbers: mean metrics with `mean_stderr`, lambada's perplexity with its bootstrap
    /// stderr, wikitext's weighted perplexities (no stderr); stderrs need more than one document.
    static func aggregate(_ wanted: [BenchmarkTask.Metric], _ documents: [DocumentMetrics]) -> [String: Double] {
        var out: [String: Double] = ["sample_len": Double(documents.count)]
        let many = documents.count > 1
        func mean(_ key: String, _ values: [Double]) {
            out[key + ",none"] = TaskMetrics.mean(values)
            if many { out[key + "_stderr,none"] = TaskMetrics.meanStderr(values) }
        }
        for metric in wanted {
            switch metric {
            case .acc: mean("acc", documents.map { $0.acc ?? 0 })
            case .accNorm: mean("acc_norm", documents.map { $0.accNorm ?? 0 })
            case .perplexity:
                let lls = documents.map { $0.logLikelihood ?? 0 }
                out["perplexity,none"] = TaskMetrics.perplexity(lls)
                if many { out["perplexity_stderr,none"] = TaskMetrics.bootstrapPerplexityStderr(lls) }
            case .wordPerplexity:
                out["word_perplexity,none"] = TaskMetrics.weightedPerplexity(documents.map { ($0.logLikelihood ?? 0, $0.words ?? 0) })
            case .bytePerplexity:
                out["byte_perplexity,none"] = TaskMetrics.weightedPerplexity(documents.map { ($0.logLikelihood ?? 0, $0.bytes ?? 0) })
            case .bitsPerByte:
                out["bits_per_byte,none"] = TaskMetrics.bitsPerByte(documents.map { ($0.logLikelihood ?? 0, $0.bytes ?? 0) })
            }
        }
        return out
    }

    /// `Group.aggregate` with `weight_by_size`: acc = Σ accᵢ·nᵢ / Σ nᵢ over the leaves; stderr pooled
    /// (`pooled_sample_stderr`), absent when a leaf has none.
    static func aggregateGroup(_ leaves: [[String: Double]]) -> [String: Double] {
        let sizes = leaves.map { Int($0["sample_len"] ?? 0) }
        var out: [String: Double] = ["sample_len": Double(sizes.reduce(0, +))]
        let values = leaves.compactMap { $0["acc,none"] }
        guard values.count == leaves.count else { return out }
        out["acc,none"] = TaskMetrics.sizeWeightedMean(values, sizes: sizes)
        let stderrs = leaves.compactMap { $0["acc_stderr,none"] }
        if stderrs.count == leaves.count { out["acc_stderr,none"] = TaskMetrics.pooledStderr(stderrs, sizes: sizes) }
        return out
    }
}
