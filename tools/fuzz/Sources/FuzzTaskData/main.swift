import Foundation
import FuzzSupport

@testable import MoEEval

/// Each benchmark task's record reader, by the file name its documents come from. The first input byte
/// picks one; the rest is the file.
let readers: [(file: String, read: (TaskData.Source) throws -> [TaskDocument])] = [
    ("arc.jsonl", ARC.documents), ("boolq.jsonl", BoolQ.documents), ("hellaswag.jsonl", Hellaswag.documents),
    ("lambada.jsonl", Lambada.documents), ("mmlu.csv", MMLU.documents), ("mmlu.jsonl", MMLU.documents),
    ("openbookqa.jsonl", OpenBookQA.documents), ("piqa.jsonl", PIQA.documents),
    ("wikitext.jsonl", Wikitext.documents), ("winogrande.jsonl", Winogrande.documents),
]

// Built with `@testable` (the fuzz build is a debug build): the task readers are internal to MoEEval.
runFuzzer { bytes in
    guard let selector = bytes.first else { return }
    let reader = readers[Int(selector) % readers.count]
    let documents = try reader.read(.file(ScratchFolder.write(Array(bytes.dropFirst()), as: reader.file)))
    for document in documents {
        _ = PromptBuilder.requests(for: document, after: "")
    }
}
