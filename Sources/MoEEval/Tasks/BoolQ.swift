import Foundation
import MoEData

/// `boolq` (lm_eval/tasks/super_glue/boolq): evaluates on validation, few-shot examples from train; prompt
/// `"{passage}\nQuestion: {question}?\nAnswer:"`, choices `["no", "yes"]`; acc. Reads the SuperGLUE layout
/// (`label`: true/false, "true"/"false" or 0/1) and the HF boolq layout (`answer`: bool).
enum BoolQ {
    static let obtain =
        "SuperGLUE's BoolQ.zip (https://dl.fbaipublicfiles.com/glue/superglue/data/v2/BoolQ.zip: val.jsonl, train.jsonl) or the HF dataset aps/super_glue (boolq) exported as JSON Lines"
    static let validation = TaskData.Split(
        candidates: [
            "boolq/val.jsonl", "boolq/validation.jsonl", "boolq/superglue_boolq_val.jsonl",
            "boolq/hf_boolq_validation.jsonl", "boolq/dev.jsonl", "boolq/*val*.jsonl",
        ], obtain: obtain)
    static let train = TaskData.Split(candidates: ["boolq/train.jsonl", "boolq/*train*.jsonl"], obtain: obtain)

    struct Record: Decodable {
        var question: String
        var passage: String
        var label: FlexibleValue?
        var answer: FlexibleValue?
    }

    static func hub(_ split: String) -> HubDatasetSplit { HubDatasetSplit(repo: "aps/super_glue", config: "boolq", split: split) }

    static func task(data: BenchmarkDataSources) -> BenchmarkTask {
        BenchmarkTask(
            name: "boolq", metrics: [.acc], sampling: .random(passesEvalDoc: true),
            documents: { try documents(data.locate(validation, hub: hub("validation"), task: "boolq", purpose: "validation")) },
            fewShotPool: { try documents(data.locate(train, hub: hub("train"), task: "boolq", purpose: "few-shot (train)")) })
    }

    static func documents(_ source: TaskData.Source) throws -> [TaskDocument] {
        let (lines, file) = try source.records()
        return try lines.map { line in
            let record = try TaskData.decode(Record.self, line, in: file)
            let origin = "\(file):\(line.number)"
            let gold: Int
            switch record.label ?? record.answer {
            case .bool(let v)?: gold = v ? 1 : 0
            case .int(let v)? where v == 0 || v == 1: gold = v
            case .string("true")?, .string("True")?: gold = 1
            case .string("false")?, .string("False")?: gold = 0
            case nil: throw TaskDataError(description: "\(origin): neither a 'label' nor an 'answer' field")
            case let other?: throw TaskDataError(description: "\(origin): label '\(other.rendered)' is not true/false or 0/1")
            }
            return TaskDocument(
                content: .choices(
                    question: record.passage + "\nQuestion: " + record.question + "?\nAnswer:",
                    choices: ["no", "yes"], gold: gold),
                identity: line.bytes, origin: origin)
        }
    }
}
