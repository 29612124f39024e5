import Foundation
import MoEData

/// `piqa` (lm_eval/tasks/piqa): evaluates on validation, few-shot examples from train; prompt
/// `"Question: {goal}\nAnswer:"`, choices `[sol1, sol2]`; acc and acc_norm. Reads the original release
/// (`dev.jsonl` without labels + `dev-labels.lst`, one label per line) or an HF export with a `label` field.
enum PIQA {
    static let obtain =
        "the original release https://yonatanbisk.com/piqa/data/ (physicaliqa-train-dev.zip: dev.jsonl, dev-labels.lst) or the HF dataset baber/piqa exported as JSON Lines"
    static let validation = TaskData.Split(
        candidates: ["piqa/dev.jsonl", "piqa/valid.jsonl", "piqa/validation.jsonl"], obtain: obtain)
    static let train = TaskData.Split(candidates: ["piqa/train.jsonl"], obtain: obtain)

    struct Record: Decodable {
        var goal: String
        var sol1: String
        var sol2: String
        var label: FlexibleValue?
    }

    static func hub(_ split: String) -> HubDatasetSplit { HubDatasetSplit(repo: "baber/piqa", split: split) }

    static func task(data: BenchmarkDataSources) -> BenchmarkTask {
        BenchmarkTask(
            name: "piqa", metrics: [.acc, .accNorm], sampling: .random(passesEvalDoc: true),
            documents: { try documents(data.locate(validation, hub: hub("validation"), task: "piqa", purpose: "validation")) },
            fewShotPool: { try documents(data.locate(train, hub: hub("train"), task: "piqa", purpose: "few-shot (train)")) })
    }

    /// `X.jsonl` takes its labels from `X-labels.lst` beside it when that file exists.
    static func documents(_ source: TaskData.Source) throws -> [TaskDocument] {
        let (lines, file) = try source.records()
        var labelsURL = URL(fileURLWithPath: "-labels.lst"), labels: [String]?
        if case .file(let url) = source {
            labelsURL = url.deletingLastPathComponent().appendingPathComponent(
                url.deletingPathExtension().lastPathComponent + "-labels.lst")
        }
        if case .file(let url) = source, FileManager.default.fileExists(atPath: labelsURL.path) {
            let text = try TaskData.text(labelsURL)
            let values = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            guard values.count == lines.count else {
                throw TaskDataError(
                    description: "\(labelsURL.path): \(values.count) labels for the \(lines.count) records of \(url.lastPathComponent)")
            }
            labels = values
        }
        return try lines.enumerated().map { i, line in
            let record = try TaskData.decode(Record.self, line, in: file)
            let origin = "\(file):\(line.number)"
            let rendered: String
            if let labels {
                rendered = labels[i]
            } else if let label = record.label {
                rendered = label.rendered
            } else {
                throw TaskDataError(description: "\(origin): no 'label' field and no \(labelsURL.lastPathComponent) beside the file")
            }
            guard let gold = Int(rendered) else {
                throw TaskDataError(description: "\(origin): label '\(rendered)' is not an integer")
            }
            let choices = [record.sol1, record.sol2]
            var identity = line.bytes
            if let labels { identity += Array("\u{1F}\(labels[i])".utf8) }
            return TaskDocument(
                content: .choices(
                    question: "Question: " + record.goal + "\nAnswer:", choices: choices,
                    gold: gold < choices.count ? gold : -100),
                identity: identity, origin: origin)
        }
    }
}
