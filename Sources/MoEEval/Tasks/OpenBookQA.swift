import Foundation
import MoEData

/// `openbookqa` (lm_eval/tasks/openbookqa): evaluates on test, few-shot examples from train; the prompt
/// is the bare question stem; gold = the index of `answerKey.lstrip()` among the labels; acc and acc_norm.
enum OpenBookQA {
    static let obtain =
        "AI2's OpenBookQA-V1-Sep2018 release (Data/Main/test.jsonl, train.jsonl) or the HF dataset allenai/openbookqa (main) exported as JSON Lines"
    static let test = TaskData.Split(candidates: ["openbookqa/test.jsonl", "openbookqa/main/test.jsonl"], obtain: obtain)
    static let train = TaskData.Split(candidates: ["openbookqa/train.jsonl", "openbookqa/main/train.jsonl"], obtain: obtain)

    /// The AI2 layout (`question: {stem, choices}`) or the HF one (`question_stem`, `choices: {text, label}`).
    struct Record: Decodable {
        var stem: String
        var texts: [String]
        var labels: [String]
        var answerKey: String

        enum Keys: String, CodingKey { case question, question_stem, choices, answerKey, stem, text, label }
        struct Choice: Decodable { var text: String; var label: String }

        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: Keys.self)
            answerKey = try c.decode(String.self, forKey: .answerKey)
            if c.contains(.question_stem) {
                stem = try c.decode(String.self, forKey: .question_stem)
                let choices = try c.nestedContainer(keyedBy: Keys.self, forKey: .choices)
                texts = try choices.decode([String].self, forKey: .text)
                labels = try choices.decode([String].self, forKey: .label)
            } else {
                let q = try c.nestedContainer(keyedBy: Keys.self, forKey: .question)
                stem = try q.decode(String.self, forKey: .stem)
                let choices = try q.decode([Choice].self, forKey: .choices)
                texts = choices.map(\.text)
                labels = choices.map(\.label)
            }
        }
    }

    static func hub(_ split: String) -> HubDatasetSplit { HubDatasetSplit(repo: "allenai/openbookqa", config: "main", split: split) }

    static func task(data: BenchmarkDataSources) -> BenchmarkTask {
        BenchmarkTask(
            name: "openbookqa", metrics: [.acc, .accNorm], sampling: .random(passesEvalDoc: false),
            documents: { try documents(data.locate(test, hub: hub("test"), task: "openbookqa", purpose: "test")) },
            fewShotPool: { try documents(data.locate(train, hub: hub("train"), task: "openbookqa", purpose: "few-shot (train)")) })
    }

    static func documents(_ source: TaskData.Source) throws -> [TaskDocument] {
        let (lines, origin) = try source.records()
        return try lines.map { line in
            let record = try TaskData.decode(Record.self, line, in: origin)
            let key = PythonText.lstrip(record.answerKey)
            guard let gold = record.labels.firstIndex(where: { PythonText.same($0, key) }) else {
                throw TaskDataError(
                    description:
                        "\(origin):\(line.number): answerKey '\(record.answerKey)' is not one of the choice labels \(record.labels)")
            }
            return TaskDocument(
                content: .choices(question: record.stem, choices: record.texts, gold: gold),
                identity: line.bytes, origin: "\(origin):\(line.number)")
        }
    }
}
