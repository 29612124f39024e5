import Foundation
import MoEData

/// `winogrande` (lm_eval/tasks/winogrande, winogrande_xl): evaluates on validation, few-shot examples from
/// train; partial scoring — the two contexts are the sentence up to the blank with each option filled in,
/// the shared continuation is `" " + the rest of the sentence, stripped`; gold = answer − 1; acc.
enum Winogrande {
    static let obtain =
        "the HF dataset allenai/winogrande (winogrande_xl) exported as JSON Lines, or AI2's winogrande_1.1.zip (dev.jsonl, train_xl.jsonl)"
    static let validation = TaskData.Split(
        candidates: ["winogrande/winogrande_xl_validation.jsonl", "winogrande/validation.jsonl", "winogrande/dev.jsonl"], obtain: obtain)
    static let train = TaskData.Split(
        candidates: ["winogrande/winogrande_xl_train.jsonl", "winogrande/train_xl.jsonl", "winogrande/train.jsonl"], obtain: obtain)

    struct Record: Decodable {
        var sentence: String
        var option1: String
        var option2: String
        var answer: FlexibleValue
    }

    static func hub(_ split: String) -> HubDatasetSplit {
        HubDatasetSplit(repo: "allenai/winogrande", config: "winogrande_xl", split: split)
    }

    static func task(data: BenchmarkDataSources) -> BenchmarkTask {
        BenchmarkTask(
            name: "winogrande", metrics: [.acc], sampling: .random(passesEvalDoc: true),
            documents: { try documents(data.locate(validation, hub: hub("validation"), task: "winogrande", purpose: "validation")) },
            fewShotPool: { try documents(data.locate(train, hub: hub("train"), task: "winogrande", purpose: "few-shot (train)")) })
    }

    static func documents(_ source: TaskData.Source) throws -> [TaskDocument] {
        let (lines, file) = try source.records()
        return try lines.map { line in
            let record = try TaskData.decode(Record.self, line, in: file)
            let origin = "\(file):\(line.number)"
            let gold: Int
            switch record.answer.rendered {
            case "1": gold = 0
            case "2": gold = 1
            default: throw TaskDataError(description: "\(origin): answer '\(record.answer.rendered)' is not \"1\" or \"2\"")
            }
            let sentence = PythonText.scalars(record.sentence)
            guard let blank = sentence.firstIndex(of: "_") else {
                throw TaskDataError(description: "\(origin): the sentence has no '_' blank")
            }
            let before = PythonText.string(sentence[..<blank])
            let after = PythonText.string(PythonText.strip(Array(sentence[(blank + 1)...])))
            return TaskDocument(
                content: .filledBlank(
                    contexts: [before + record.option1, before + record.option2],
                    continuation: after, gold: gold),
                identity: line.bytes, origin: origin)
        }
    }
}
