import Foundation

/// `lambada_openai` (lm_eval/tasks/lambada): the test split only; context = the text without its last
/// space-separated word, target = `" " + that word` (Python `split(' ')`, so double spaces stay);
/// acc = whether greedy decoding gives the target, perplexity = exp(−mean document log-likelihood).
/// Few-shot examples come from the test split itself, without excluding the evaluated document.
enum Lambada {
    static let obtain = "https://openaipublic.blob.core.windows.net/gpt-2/data/lambada_test.jsonl or the HF dataset EleutherAI/lambada_openai (default) exported as JSON Lines"
    static let test = TaskData.Split(candidates: ["lambada/lambada_test.jsonl", "lambada/test.jsonl"], obtain: obtain)

    struct Record: Decodable { var text: String }

    static func task(dataDir: URL) -> BenchmarkTask {
        BenchmarkTask(
            name: "lambada_openai", metrics: [.perplexity, .acc], sampling: .random(passesEvalDoc: false),
            documents: { try documents(TaskData.locate(test, in: dataDir, task: "lambada_openai", purpose: "test")) },
            fewShotPool: { try documents(TaskData.locate(test, in: dataDir, task: "lambada_openai", purpose: "test")) })
    }

    static func documents(_ url: URL) throws -> [TaskDocument] {
        try TaskData.jsonLines(url).map { line in
            let record = try TaskData.decode(Record.self, line, in: url)
            let words = PythonText.splitOnSpace(record.text)
            return TaskDocument(content: .continuation(context: words.dropLast().joined(separator: " "), target: " " + words[words.count - 1]),
                                identity: line.bytes, origin: "\(url.path):\(line.number)")
        }
    }
}
