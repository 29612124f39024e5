import Foundation
import MoEData

/// `mmlu` (lm_eval/tasks/mmlu/default): 57 subject tasks `mmlu_<subject>`, evaluated on test with the
/// dev split's first k questions as few-shot examples; grouped into `mmlu_stem`, `mmlu_other`,
/// `mmlu_social_sciences`, `mmlu_humanities` and `mmlu`, each the size-weighted mean of its subjects.
enum MMLU {
    enum Category: String, Sendable, CaseIterable {
        case stem, other, socialSciences = "social_sciences", humanities
        var groupName: String { "mmlu_" + rawValue }
    }

    /// lm-eval's subjects with the category tag of their task file.
    static let subjects: [(name: String, category: Category)] = [
        ("abstract_algebra", .stem),
        ("anatomy", .stem),
        ("astronomy", .stem),
        ("business_ethics", .other),
        ("clinical_knowledge", .other),
        ("college_biology", .stem),
        ("college_chemistry", .stem),
        ("college_computer_science", .stem),
        ("college_mathematics", .stem),
        ("college_medicine", .other),
        ("college_physics", .stem),
        ("computer_security", .stem),
        ("conceptual_physics", .stem),
        ("econometrics", .socialSciences),
        ("electrical_engineering", .stem),
        ("elementary_mathematics", .stem),
        ("formal_logic", .humanities),
        ("global_facts", .other),
        ("high_school_biology", .stem),
        ("high_school_chemistry", .stem),
        ("high_school_computer_science", .stem),
        ("high_school_european_history", .humanities),
        ("high_school_geography", .socialSciences),
        ("high_school_government_and_politics", .socialSciences),
        ("high_school_macroeconomics", .socialSciences),
        ("high_school_mathematics", .stem),
        ("high_school_microeconomics", .socialSciences),
        ("high_school_physics", .stem),
        ("high_school_psychology", .socialSciences),
        ("high_school_statistics", .stem),
        ("high_school_us_history", .humanities),
        ("high_school_world_history", .humanities),
        ("human_aging", .other),
        ("human_sexuality", .socialSciences),
        ("international_law", .humanities),
        ("jurisprudence", .humanities),
        ("logical_fallacies", .humanities),
        ("machine_learning", .stem),
        ("management", .other),
        ("marketing", .other),
        ("medical_genetics", .other),
        ("miscellaneous", .other),
        ("moral_disputes", .humanities),
        ("moral_scenarios", .humanities),
        ("nutrition", .other),
        ("philosophy", .humanities),
        ("prehistory", .humanities),
        ("professional_accounting", .other),
        ("professional_law", .humanities),
        ("professional_medicine", .other),
        ("professional_psychology", .socialSciences),
        ("public_relations", .socialSciences),
        ("security_studies", .socialSciences),
        ("sociology", .socialSciences),
        ("us_foreign_policy", .socialSciences),
        ("virology", .other),
        ("world_religions", .humanities),
    ]

    static let obtain =
        "the original release https://people.eecs.berkeley.edu/~hendrycks/data.tar (data/{dev,val,test}/<subject>_<split>.csv) or the HF dataset cais/mmlu exported as JSON Lines"

    static func split(_ subject: String, _ name: String) -> TaskData.Split {
        TaskData.Split(
            candidates: [
                "mmlu/data/\(name)/\(subject)_\(name).csv", "mmlu/\(name)/\(subject)_\(name).csv",
                "mmlu/\(subject)/\(name).jsonl",
            ], obtain: obtain)
    }

    /// The HF export's fields (`answer` an index, or a letter in some exports).
    struct Record: Decodable {
        var question: String
        var choices: [String]
        var answer: FlexibleValue
    }

    static let letters = ["A", "B", "C", "D"]

    static func hub(_ subject: String, _ split: String) -> HubDatasetSplit {
        HubDatasetSplit(repo: "cais/mmlu", config: subject, split: split)
    }

    static func task(subject: String, data: BenchmarkDataSources) -> BenchmarkTask {
        let name = "mmlu_" + subject
        return BenchmarkTask(
            name: name, metrics: [.acc],
            description:
                "The following are multiple choice questions (with answers) about \(subject.replacingOccurrences(of: "_", with: " ")).\n\n",
            sampling: .firstN,
            documents: { try documents(data.locate(split(subject, "test"), hub: hub(subject, "test"), task: name, purpose: "test")) },
            fewShotPool: {
                try documents(data.locate(split(subject, "dev"), hub: hub(subject, "dev"), task: name, purpose: "few-shot (dev)"))
            })
    }

    static func documents(_ source: TaskData.Source) throws -> [TaskDocument] {
        guard case .file(let url) = source, url.pathExtension != "jsonl" else {
            let (lines, file) = try source.records()
            return try lines.map { line in
                let record = try TaskData.decode(Record.self, line, in: file)
                let origin = "\(file):\(line.number)"
                guard record.choices.count == 4 else {
                    throw TaskDataError(description: "\(origin): expected 4 choices, found \(record.choices.count)")
                }
                return try document(
                    question: record.question, choices: record.choices, answer: record.answer.rendered,
                    identity: line.bytes, origin: origin)
            }
        }
        return try TaskData.csvRecords(url).map { line, fields in
            let origin = "\(url.path):\(line)"
            guard fields.count == 6 else {
                throw TaskDataError(description: "\(origin): expected 6 columns (question,A,B,C,D,answer), found \(fields.count)")
            }
            return try document(
                question: fields[0], choices: Array(fields[1...4]), answer: fields[5],
                identity: Array(fields.joined(separator: "\u{1F}").utf8), origin: origin)
        }
    }

    /// `"{{question.strip()}}\nA. {{choices[0]}}\nB. …\nD. {{choices[3]}}\nAnswer:"`, choices " A" … " D".
    static func document(question: String, choices: [String], answer: String, identity: [UInt8], origin: String) throws -> TaskDocument {
        let gold: Int
        if let letter = letters.firstIndex(of: answer) {
            gold = letter
        } else if let index = Int(answer), (0..<4).contains(index) {
            gold = index
        } else {
            throw TaskDataError(description: "\(origin): answer '\(answer)' is not one of A, B, C, D")
        }
        var text = PythonText.strip(question)
        for (letter, choice) in zip(letters, choices) { text += "\n\(letter). \(choice)" }
        text += "\nAnswer:"
        return TaskDocument(content: .choices(question: text, choices: letters, gold: gold), identity: identity, origin: origin)
    }

    static func groups(for subjects: [String]) -> [TaskGroup] {
        var groups: [TaskGroup] = []
        for category in Category.allCases {
            let members = subjects.filter { s in self.subjects.contains { $0.name == s && $0.category == category } }
            if !members.isEmpty { groups.append(TaskGroup(name: category.groupName, leaves: members.map { "mmlu_" + $0 })) }
        }
        return groups
    }
}
