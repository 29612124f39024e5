import Foundation
import MoEData

/// `lambada_openai` (lm_eval/tasks/lambada): the test split only; context = the text without its last
/// space-separated word, target = `" " + that word` (Python `split(' ')`, so double spaces stay);
/// acc = whether greedy decoding gives the target, perplexity = exp(−mean document log-likelihood).
/// Few-shot examples come from the test split itself, without excluding the evaluated document.
enum Lambada {
    static let obtain =
        "https://openaipublic.blob.core.windows.net/gpt-2/data/lambada_test.jsonl or the HF dataset EleutherAI/lambada_openai (default) exported as JSON Lines"
    static let test = TaskData.Split(candidates: ["lambada/lambada_test.jsonl", "lambada/test.jsonl"], obtain: obtain)

    struct Record: Decodable { var text: String }

    static let hubTest = HubDatasetSplit(repo: "EleutherAI/lambada_openai", config: "default", split: "test")

    static func task(data: BenchmarkDataSources) -> BenchmarkTask {
        BenchmarkTask(
            name: "lambada_openai", metrics: [.perplexity, .acc], sampling: .random(passesEvalDoc: false),
            documents: { try documents(data.locate(test, hub: hubTest, task: "lambada_openai", purpose: "test")) },
            fewShotPool: { try documents(data.locate(test, hub: hubTest, task: "lambada_openai", purpose: "test")) })
    }

    static func documents(_ source: TaskData.Source) throws -> [TaskDocument] {
        let (lines, origin) = try source.records()
        return try lines.map { line in
            let record = try TaskData.decode(Record.self, line, in: origin)
            let words = PythonText.splitOnSpace(record.text)
            return TaskDocument(
                content: .continuation(context: words.dropLast().joined(separator: " "), target: " " + words[words.count - 1]),
                identity: line.bytes, origin: "\(origin):\(line.number)")
        }
    }
}
