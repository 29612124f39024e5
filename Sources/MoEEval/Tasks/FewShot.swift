/// lm-eval's prompt assembly (`ConfigurableTask.fewshot_context` / `build_qa_turn` without a chat template):
///
///     description + Σ_examples (text + " " + answer + "\n\n") + text_of_the_evaluated_document
///
/// An example whose answer is the empty string contributes its text alone, with no delimiters (the
/// harness's `has_answer` test).
enum PromptBuilder {
    static let targetDelimiter = " "
    static let fewShotDelimiter = "\n\n"

    /// The example text of a few-shot document.
    static func example(_ document: TaskDocument) throws -> String {
        let question: String, answer: String
        switch document.content {
        case .choices(let text, let choices, let gold):
            guard choices.indices.contains(gold) else {
                throw TaskDataError(
                    description: "\(document.origin): a few-shot example's answer index \(gold) is outside its \(choices.count) choices")
            }
            question = text
            answer = choices[gold]
            // An int answer always counts as present, even when its choice text is empty.
            return question + targetDelimiter + answer + fewShotDelimiter
        case .filledBlank(let contexts, let continuation, let gold):
            guard contexts.indices.contains(gold) else {
                throw TaskDataError(
                    description: "\(document.origin): a few-shot example's answer index \(gold) is outside its \(contexts.count) options")
            }
            question = contexts[gold]
            answer = continuation
        case .continuation(let context, let target):
            question = context
            answer = target
        case .rolling(let text, _, _):
            return text
        }
        return answer.isEmpty ? question : question + targetDelimiter + answer + fewShotDelimiter
    }

    /// The requests of one document given the text that precedes it (description and examples).
    static func requests(for document: TaskDocument, after preamble: String) -> [LoglikelihoodRequest] {
        switch document.content {
        case .choices(let question, let choices, _):
            let context = preamble + question
            return choices.map { LoglikelihoodRequest(context: context, continuation: targetDelimiter + $0) }
        case .filledBlank(let contexts, let continuation, _):
            return contexts.map { LoglikelihoodRequest(context: preamble + $0, continuation: targetDelimiter + continuation) }
        case .continuation(let context, let target):
            return [LoglikelihoodRequest(context: preamble + context, continuation: target)]
        case .rolling:
            return []
        }
    }
}

/// Draws few-shot examples exactly as lm-eval's samplers do, one generator per task seeded with the
/// harness's `fewshot_random_seed` (1234), advanced document by document in evaluation order.
struct FewShotSampler {
    static let seed = 1234

    let sampling: FewShotSampling
    let pool: [TaskDocument]
    let taskName: String
    private var random = PythonRandom(seed: FewShotSampler.seed)

    init(sampling: FewShotSampling, pool: [TaskDocument], taskName: String) {
        self.sampling = sampling
        self.pool = pool
        self.taskName = taskName
    }

    /// Indices into `pool` of the k examples for `document`, in prompt order.
    mutating func draw(_ k: Int, for document: TaskDocument) throws -> [Int] {
        guard k > 0 else { return [] }
        switch sampling {
        case .firstN:
            guard k <= pool.count else { throw tooFew(k) }
            return Array(0..<k)
        case .random(let passesEvalDoc):
            guard passesEvalDoc else {
                guard k <= pool.count else { throw tooFew(k) }
                return random.sample(populationSize: pool.count, count: k)
            }
            guard k + 1 <= pool.count else { throw tooFew(k + 1) }
            let kept = random.sample(populationSize: pool.count, count: k + 1)
                .filter { pool[$0].identity != document.identity }
            if kept.count >= k { return Array(kept.prefix(k)) }
            // More than one copy of the evaluated document was drawn: the harness redraws from the pool
            // without any copy of it.
            let others = pool.indices.filter { pool[$0].identity != document.identity }
            guard k <= others.count else {
                throw TaskDataError(
                    description:
                        "\(taskName): \(k) few-shot examples are needed but the few-shot split has only \(others.count) documents besides the evaluated one"
                )
            }
            return random.sample(populationSize: others.count, count: k).map { others[$0] }
        }
    }

    private func tooFew(_ needed: Int) -> TaskDataError {
        TaskDataError(description: "\(taskName): \(needed) few-shot examples are needed but the few-shot split has \(pool.count) documents")
    }
}
