import Foundation
import MoEData

/// `hellaswag` (lm_eval/tasks/hellaswag): evaluates on validation, few-shot examples from train;
/// acc and acc_norm. The query is `preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize())`,
/// the choices are the preprocessed endings.
enum Hellaswag {
    static let obtain =
        "https://github.com/rowanz/hellaswag/tree/master/data (hellaswag_val.jsonl, hellaswag_train.jsonl) or the HF dataset Rowan/hellaswag exported as JSON Lines"
    static let validation = TaskData.Split(
        candidates: ["hellaswag/hellaswag_val.jsonl", "hellaswag/validation.jsonl", "hellaswag/*val*.jsonl"], obtain: obtain)
    static let train = TaskData.Split(
        candidates: ["hellaswag/hellaswag_train.jsonl", "hellaswag/train.jsonl", "hellaswag/*train*.jsonl"], obtain: obtain)

    /// The fields the harness reads, in the rowanz layout (int label) or the HF one (string label).
    struct Record: Decodable {
        var activity_label: String
        var ctx_a: String
        var ctx_b: String
        var endings: [String]
        var label: FlexibleValue
    }

    static let hubValidation = HubDatasetSplit(repo: "Rowan/hellaswag", split: "validation")
    static let hubTrain = HubDatasetSplit(repo: "Rowan/hellaswag", split: "train")

    static func task(data: BenchmarkDataSources) -> BenchmarkTask {
        BenchmarkTask(
            name: "hellaswag", metrics: [.acc, .accNorm], sampling: .random(passesEvalDoc: true),
            documents: { try documents(data.locate(validation, hub: hubValidation, task: "hellaswag", purpose: "validation")) },
            fewShotPool: { try documents(data.locate(train, hub: hubTrain, task: "hellaswag", purpose: "few-shot (train)")) })
    }

    static func documents(_ url: URL) throws -> [TaskDocument] { try documents(.file(url)) }

    static func documents(_ source: TaskData.Source) throws -> [TaskDocument] {
        let (lines, origin) = try source.records()
        return try lines.map { line in
            let record = try TaskData.decode(Record.self, line, in: origin)
            let context = record.ctx_a + " " + PythonText.capitalize(record.ctx_b)
            let choices = record.endings.map(preprocess)
            return TaskDocument(
                content: .choices(
                    question: preprocess(record.activity_label + ": " + context), choices: choices,
                    gold: goldIndex(rendered: record.label.rendered, choices: choices)),
                identity: line.bytes, origin: "\(origin):\(line.number)")
        }
    }

    /// `utils.preprocess`: strip; " [title]" → ". "; drop `[...]` (not across lines); one pass of "  " → " ".
    static func preprocess(_ text: String) -> String {
        var s = Array(PythonText.strip(PythonText.scalars(text)))
        s = PythonText.replace(s, " [title]", ". ")
        s = PythonText.removeBracketed(s)
        s = PythonText.replace(s, "  ", " ")
        return PythonText.string(s)
    }
}
