import Foundation
import Testing

@testable import MoEEval

/// Missing and malformed benchmark data, and unknown task names: one clear error line naming the file
/// (and line) or the task, never a crash.
@Suite struct TaskTestsBadInput {
    /// A scratch data folder with the given files (relative path → contents).
    final class DataFolder {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("moe-eval-tasks-\(UUID().uuidString)")
        init(_ files: [String: String] = [:]) throws {
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
            for (path, text) in files { try write(path, Data(text.utf8)) }
        }
        func write(_ path: String, _ data: Data) throws {
            let file = url.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
            try data.write(to: file)
        }
        deinit { try? FileManager.default.removeItem(at: url) }
    }

    func error(_ tasks: [String], in folder: DataFolder, fewShot: Int? = nil) -> String? {
        do {
            _ = try NativeTasks.evaluate(
                tasks: tasks, limit: 2, numFewshot: fewShot, dataDir: folder.url, scorer: FakeScorer(),
                logSamples: false)
            return nil
        } catch let e as TaskDataError {
            return e.description
        } catch {
            return "unexpected error type: \(error)"
        }
    }

    static let expectedFiles: [(task: String, path: String, source: String)] = [
        ("hellaswag", "hellaswag/hellaswag_val.jsonl", "rowanz/hellaswag"),
        ("arc_easy", "arc/ARC-Easy-Test.jsonl", "allenai/ai2_arc"),
        ("arc_challenge", "arc/ARC-Challenge-Test.jsonl", "allenai/ai2_arc"),
        ("mmlu", "mmlu/data/test/abstract_algebra_test.csv", "cais/mmlu"),
        ("mmlu_virology", "mmlu/data/test/virology_test.csv", "hendrycks"),
        ("winogrande", "winogrande/winogrande_xl_validation.jsonl", "allenai/winogrande"),
        ("piqa", "piqa/dev.jsonl", "dev-labels.lst"),
        ("boolq", "boolq/val.jsonl", "aps/super_glue"),
        ("openbookqa", "openbookqa/test.jsonl", "allenai/openbookqa"),
        ("lambada_openai", "lambada/lambada_test.jsonl", "EleutherAI/lambada_openai"),
        ("wikitext", "wikitext2/wiki.test.raw", "wikitext_document_level"),
    ]

    @Test(arguments: expectedFiles.map(\.task))
    func aMissingFileNamesItsPathAndWhereToGetIt(_ task: String) throws {
        let folder = try DataFolder()
        let expected = try #require(Self.expectedFiles.first { $0.task == task })
        let message = try #require(error([task], in: folder))
        #expect(
            message.contains(folder.url.appendingPathComponent(expected.path).path) && message.contains(expected.source)
                && !message.contains("\n"), "\(message)")
    }

    static let hellaswagLine = #"{"activity_label": "A", "ctx_a": "b.", "ctx_b": "c", "endings": ["d", "e", "f", "g"], "label": 1}"#

    @Test func aMissingFewShotSplitIsNamedOnlyWhenExamplesAreAskedFor() throws {
        let folder = try DataFolder(["hellaswag/hellaswag_val.jsonl": Self.hellaswagLine + "\n" + Self.hellaswagLine + "\n"])
        #expect(error(["hellaswag"], in: folder) == nil)
        let message = try #require(error(["hellaswag"], in: folder, fewShot: 1))
        #expect(message.contains("hellaswag/hellaswag_train.jsonl") && message.contains("few-shot"), "\(message)")
    }

    @Test func tooFewFewShotDocumentsIsAnError() throws {
        let folder = try DataFolder([
            "mmlu/data/test/anatomy_test.csv": "q,a,b,c,d,A\n",
            "mmlu/data/dev/anatomy_dev.csv": "q,a,b,c,d,B\nr,a,b,c,d,C\n",
            "hellaswag/hellaswag_val.jsonl": Self.hellaswagLine + "\n",
            "hellaswag/hellaswag_train.jsonl": Self.otherLine(1) + "\n" + Self.otherLine(2) + "\n",
        ])
        #expect(error(["mmlu_anatomy"], in: folder, fewShot: 2) == nil)
        #expect(
            error(["mmlu_anatomy"], in: folder, fewShot: 3)?.contains("3 few-shot examples are needed but the few-shot split has 2") == true
        )
        // hellaswag draws k+1 (its few-shot and evaluation splits are both unset test splits).
        #expect(error(["hellaswag"], in: folder, fewShot: 1) == nil)
        #expect(error(["hellaswag"], in: folder, fewShot: 2)?.contains("3 few-shot examples are needed") == true)
        // A pool holding only copies of the evaluated document cannot give any example.
        let copies = try DataFolder([
            "hellaswag/hellaswag_val.jsonl": Self.hellaswagLine + "\n",
            "hellaswag/hellaswag_train.jsonl": Self.hellaswagLine + "\n" + Self.hellaswagLine + "\n",
        ])
        #expect(error(["hellaswag"], in: copies, fewShot: 1)?.contains("only 0 documents besides the evaluated one") == true)
    }

    static func otherLine(_ i: Int) -> String { hellaswagLine.replacingOccurrences(of: "\"A\"", with: "\"A\(i)\"") }

    @Test(arguments: [
        ("{not json\n", "hellaswag_val.jsonl:1: malformed JSON at byte 1"),
        (hellaswagLine + "\n[1, 2]\n", "hellaswag_val.jsonl:2:"),
        (#"{"activity_label": "A", "ctx_a": "b", "ctx_b": "c", "label": 1}"# + "\n", "at endings: missing required key"),
        (#"{"activity_label": "A", "ctx_a": "b", "ctx_b": "c", "endings": "x", "label": 1}"# + "\n", "at endings: expected an array"),
        (
            #"{"activity_label": "A", "ctx_a": "b", "ctx_b": "c", "endings": ["x"], "label": [1]}"# + "\n",
            "at label: expected a number, string or bool"
        ),
        ("\n\n", "no records"),
    ])
    func malformedJSONLinesNameTheFileAndLine(_ content: String, _ expected: String) throws {
        let folder = try DataFolder(["hellaswag/hellaswag_val.jsonl": content])
        let message = try #require(error(["hellaswag"], in: folder))
        #expect(message.contains(expected) && message.contains(folder.url.path) && !message.contains("\n"), "\(message)")
    }

    @Test(arguments: [
        ("q,a,b,c,d\n", "anatomy_test.csv:1: expected 6 columns"),
        ("q,a,b,c,d,A\n\"unclosed,a,b,c,d,A\n", "anatomy_test.csv:2: a quoted field is not closed"),
        ("q,a,b,c,d,E\n", "answer 'E' is not one of A, B, C, D"),
        ("", "expected"),
    ])
    func malformedCSVNamesTheFileAndLine(_ content: String, _ expected: String) throws {
        let folder = try DataFolder(["mmlu/data/test/anatomy_test.csv": content])
        if content.isEmpty {
            // An empty subject file evaluates nothing: the task says so.
            #expect(error(["mmlu_anatomy"], in: folder)?.contains("mmlu_anatomy: no documents") == true)
            return
        }
        let message = try #require(error(["mmlu_anatomy"], in: folder))
        #expect(message.contains(expected) && !message.contains("\n"), "\(message)")
    }

    @Test func invalidUTF8InACSVIsAnError() throws {
        let folder = try DataFolder()
        try folder.write(
            "mmlu/data/test/anatomy_test.csv", Data([0x71, 0xFF, 0x2C, 0x61, 0x2C, 0x62, 0x2C, 0x63, 0x2C, 0x64, 0x2C, 0x41, 0x0A]))
        #expect(error(["mmlu_anatomy"], in: folder)?.contains("anatomy_test.csv:1: not valid UTF-8") == true)
    }

    @Test func quotedCSVFieldsKeepCommasQuotesAndLineBreaks() throws {
        let folder = try DataFolder(["mmlu/data/test/anatomy_test.csv": "\"a, \"\"b\"\"\r\nc\",x,\"y\",z,\"\",D\r\n\r\nq2,1,2,3,4,A"])
        let (tasks, _) = try NativeTasks.resolve(["mmlu_anatomy"], dataDir: folder.url)
        let docs = try #require(tasks.first).documents()
        #expect(docs.count == 2)
        guard case .choices(let question, _, let gold) = docs[0].content else { Issue.record("not a choice document"); return }
        #expect(question == "a, \"b\"\r\nc\nA. x\nB. y\nC. z\nD. \nAnswer:" && gold == 3)
    }

    @Test(arguments: [
        (
            "winogrande/winogrande_xl_validation.jsonl", #"{"sentence": "no blank here", "option1": "a", "option2": "b", "answer": "1"}"#,
            "no '_' blank"
        ),
        (
            "winogrande/winogrande_xl_validation.jsonl", #"{"sentence": "a _ b", "option1": "a", "option2": "b", "answer": "3"}"#,
            "answer '3'"
        ),
        (
            "arc/ARC-Easy-Test.jsonl",
            #"{"id": "x", "question": {"stem": "q", "choices": [{"text": "a", "label": "A"}]}, "answerKey": "B"}"#, "answerKey 'B'"
        ),
        (
            "openbookqa/test.jsonl", #"{"id": "x", "question": {"stem": "q", "choices": [{"text": "a", "label": "A"}]}, "answerKey": "C"}"#,
            "answerKey 'C'"
        ),
        ("boolq/val.jsonl", #"{"question": "q", "passage": "p", "label": "maybe"}"#, "label 'maybe'"),
        ("boolq/val.jsonl", #"{"question": "q", "passage": "p"}"#, "neither a 'label' nor an 'answer'"),
        ("piqa/dev.jsonl", #"{"goal": "g", "sol1": "a", "sol2": "b"}"#, "no 'label' field and no dev-labels.lst"),
        ("lambada/lambada_test.jsonl", #"{"txt": "a b"}"#, "at text: missing required key"),
        ("wikitext2/test.jsonl", #"{"text": "a b"}"#, "at page: missing required key"),
    ])
    func badRecordsOfEachTaskAreNamed(_ path: String, _ line: String, _ expected: String) throws {
        let folder = try DataFolder([path: line + "\n"])
        let task = [
            "winogrande": "winogrande", "arc": "arc_easy", "openbookqa": "openbookqa", "boolq": "boolq", "piqa": "piqa",
            "lambada": "lambada_openai", "wikitext2": "wikitext",
        ][String(path.prefix { $0 != "/" })]!
        let message = try #require(error([task], in: folder))
        #expect(message.contains(expected) && message.contains(path) && !message.contains("\n"), "\(message)")
    }

    @Test func piqaLabelsMustMatchTheRecords() throws {
        let folder = try DataFolder([
            "piqa/dev.jsonl": #"{"goal": "g", "sol1": "a", "sol2": "b"}"# + "\n",
            "piqa/dev-labels.lst": "0\n1\n",
        ])
        #expect(error(["piqa"], in: folder)?.contains("dev-labels.lst: 2 labels for the 1 records of dev.jsonl") == true)
    }

    @Test(arguments: [["mmlu_astrology"], ["hellaswag", "lambada"], [""], ["  , "]])
    func unknownTaskNamesAreErrors(_ names: [String]) throws {
        let folder = try DataFolder()
        let message = try #require(error(names, in: folder))
        #expect(message.contains("unknown benchmark task") || message.contains("no benchmark task named"), "\(message)")
    }

    @Test func taskListsSplitOnCommasAndSpacesAndExpandGroups() throws {
        let (tasks, groups) = try NativeTasks.resolve(
            ["hellaswag,arc_easy  mmlu_stem", "hellaswag"], dataDir: URL(fileURLWithPath: "/nonexistent"))
        #expect(tasks.map(\.name).prefix(2) == ["hellaswag", "arc_easy"] && tasks.count == 2 + 19)
        #expect(groups.map(\.name) == ["mmlu_stem"])
        let (all, allGroups) = try NativeTasks.resolve(["mmlu"], dataDir: URL(fileURLWithPath: "/nonexistent"))
        #expect(all.count == 57 && allGroups.map(\.name) == ["mmlu_stem", "mmlu_other", "mmlu_social_sciences", "mmlu_humanities", "mmlu"])
        #expect(NativeTasks.names.count == 4 + 4 + 57 + 6)
        for preset in Preset.all where !preset.lmEvalTasks.isEmpty {
            #expect(throws: Never.self, "preset \(preset.name)") {
                try NativeTasks.resolve(preset.lmEvalTasks, dataDir: URL(fileURLWithPath: "/x"))
            }
        }
    }

    /// ARC-Challenge is not among the shared files: the task must say which file is missing (or, where
    /// it is present, run).
    @Test(.enabled(if: TaskPaths.sharedDataAvailable, "../shared/data is absent"))
    func arcChallengeOnTheSharedData() throws {
        let file = TaskPaths.sharedData.appendingPathComponent("arc/ARC-Challenge-Test.jsonl")
        do {
            let run = try NativeTasks.evaluate(
                tasks: ["arc_challenge"], limit: 3, numFewshot: nil, dataDir: TaskPaths.sharedData,
                scorer: FakeScorer(), logSamples: false)
            #expect(FileManager.default.fileExists(atPath: file.path) && run.results["arc_challenge"]?["sample_len"] == 3)
        } catch let e as TaskDataError {
            #expect(!FileManager.default.fileExists(atPath: file.path) && e.description.contains(file.path), "\(e)")
        }
    }
}
