import Foundation
import MoEData

/// `arc_easy` / `arc_challenge` (lm_eval/tasks/arc): evaluate on test, few-shot examples from train;
/// prompt `"Question: {question}\nAnswer:"`, choices scored as `" " + text`; acc and acc_norm.
enum ARC {
    enum Level: String, Sendable {
        case easy = "Easy", challenge = "Challenge"
        var taskName: String { self == .easy ? "arc_easy" : "arc_challenge" }
    }

    static let obtain =
        "AI2's ARC-V1-Feb2018 release (https://allenai.org/data/arc) or the HF dataset allenai/ai2_arc exported as JSON Lines"

    static func split(_ level: Level, _ name: String, hf: String) -> TaskData.Split {
        TaskData.Split(candidates: ["arc/ARC-\(level.rawValue)-\(name).jsonl", "arc/ARC-\(level.rawValue)/\(hf).jsonl"], obtain: obtain)
    }

    /// The AI2 layout (`question: {stem, choices: [{text, label}]}`) or the HF one (`question` text,
    /// `choices: {text: [...], label: [...]}`).
    struct Record: Decodable {
        var question: String
        var texts: [String]
        var labels: [String]
        var answerKey: String

        enum Keys: String, CodingKey { case question, choices, answerKey, stem, text, label }
        struct Choice: Decodable { var text: String; var label: String }

        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: Keys.self)
            answerKey = try c.decode(String.self, forKey: .answerKey)
            if let stem = try? c.decode(String.self, forKey: .question) {
                question = stem
                let choices = try c.nestedContainer(keyedBy: Keys.self, forKey: .choices)
                texts = try choices.decode([String].self, forKey: .text)
                labels = try choices.decode([String].self, forKey: .label)
            } else {
                let q = try c.nestedContainer(keyedBy: Keys.self, forKey: .question)
                question = try q.decode(String.self, forKey: .stem)
                let choices = try q.decode([Choice].self, forKey: .choices)
                texts = choices.map(\.text)
                labels = choices.map(\.label)
            }
        }
    }

    static func hub(_ level: Level, _ split: String) -> HubDatasetSplit {
        HubDatasetSplit(repo: "allenai/ai2_arc", config: "ARC-\(level.rawValue)", split: split)
    }

    static func task(_ level: Level, data: BenchmarkDataSources) -> BenchmarkTask {
        let name = level.taskName
        return BenchmarkTask(
            name: name, metrics: [.acc, .accNorm], sampling: .random(passesEvalDoc: false),
            documents: {
                try documents(data.locate(split(level, "Test", hf: "test"), hub: hub(level, "test"), task: name, purpose: "test"))
            },
            fewShotPool: {
                try documents(
                    data.locate(split(level, "Train", hf: "train"), hub: hub(level, "train"), task: name, purpose: "few-shot (train)"))
            })
    }

    static func documents(_ source: TaskData.Source) throws -> [TaskDocument] {
        let (lines, origin) = try source.records()
        return try lines.map { line in
            let record = try TaskData.decode(Record.self, line, in: origin)
            guard let gold = record.labels.firstIndex(where: { PythonText.same($0, record.answerKey) }) else {
                throw TaskDataError(
                    description:
                        "\(origin):\(line.number): answerKey '\(record.answerKey)' is not one of the choice labels \(record.labels)")
            }
            return TaskDocument(
                content: .choices(question: "Question: " + record.question + "\nAnswer:", choices: record.texts, gold: gold),
                identity: line.bytes, origin: "\(origin):\(line.number)")
        }
    }
}
