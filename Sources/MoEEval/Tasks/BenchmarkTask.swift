/// One evaluation or few-shot document as lm-eval's `doc_to_text` / `doc_to_choice` / `doc_to_target`
/// render it for its task.
struct TaskDocument: Sendable {
    enum Content: Sendable {
        /// `multiple_choice`: one context, each choice scored as `" " + choice`. `gold` may lie outside the
        /// choices (the harness then scores the document 0).
        case choices(question: String, choices: [String], gold: Int)
        /// `multiple_choice` with one context per choice and one shared continuation (winogrande's
        /// partial scoring: the blank filled with each option, then the rest of the sentence).
        case filledBlank(contexts: [String], continuation: String, gold: Int)
        /// `loglikelihood`: the target scored as it is (it carries its own leading space).
        case continuation(context: String, target: String)
        /// `loglikelihood_rolling`: `text` scored in full; words and bytes counted on the original document.
        case rolling(text: String, words: Int, bytes: Int)
    }

    var content: Content
    /// What Python's `==` on the harness's document dict compares, for dropping the evaluated document
    /// from a few-shot draw of its own split (the source line's bytes).
    var identity: [UInt8]
    /// "file:line", for errors.
    var origin: String

    /// `str(doc_to_target(doc))` as the harness logs it (nil for rolling documents: the text itself).
    var targetDescription: String? {
        switch content {
        case .choices(_, _, let gold): return String(gold)
        case .filledBlank(_, let continuation, _): return continuation
        case .continuation(_, let target): return target
        case .rolling: return nil
        }
    }
}

/// How a task draws its few-shot examples.
enum FewShotSampling: Sendable {
    /// `ContextSampler`: `Random(1234).sample(pool, k)`, one generator per task used document by document.
    /// `passesEvalDoc` when the harness's `fewshot_split == test_split` holds (two unset splits count as
    /// equal): it then draws k+1 and drops the evaluated document.
    case random(passesEvalDoc: Bool)
    /// `FirstNSampler`: the pool's first k documents.
    case firstN
}

/// A benchmark task: its documents, prompt pieces and metrics, as the lm-eval 0.4.13 task file defines them.
struct BenchmarkTask: Sendable {
    enum Metric: String, Sendable, CaseIterable {
        case acc, accNorm = "acc_norm", perplexity
        case wordPerplexity = "word_perplexity", bytePerplexity = "byte_perplexity", bitsPerByte = "bits_per_byte"
    }

    var name: String
    var metrics: [Metric]
    /// Prepended to every prompt with no separator (MMLU's carries its own "\n\n").
    var description = ""
    var sampling: FewShotSampling
    /// The evaluation split, in file order.
    var documents: @Sendable () throws -> [TaskDocument]
    /// The few-shot split; read only when examples are asked for.
    var fewShotPool: @Sendable () throws -> [TaskDocument]
}

/// A group whose metric is the size-weighted mean of its leaf tasks (`weight_by_size: true`), like `mmlu`.
struct TaskGroup: Sendable {
    var name: String
    var leaves: [String]
}
