import Foundation
import MoEData

/// `wikitext` (lm_eval/tasks/wikitext, wikitext-2-raw-v1 document level): every test document scored in
/// full by rolling windows; word_perplexity, byte_perplexity and bits_per_byte over all documents, with
/// words and bytes counted on the original page (the log-likelihood is of the detokenized one).
enum Wikitext {
    static let obtain =
        "wikitext-2-raw-v1.zip (wikitext-2-raw/wiki.test.raw) from https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-raw-v1.zip, or the HF dataset EleutherAI/wikitext_document_level (wikitext-2-raw-v1) exported as JSON Lines (test.jsonl with a 'page' field)"
    static let test = TaskData.Split(
        candidates: ["wikitext2/wiki.test.raw", "wikitext2/wikitext-2-raw/wiki.test.raw", "wikitext2/*test*.raw", "wikitext2/test.jsonl"],
        obtain: obtain)

    struct Record: Decodable { var page: String }

    static let hubTest = HubDatasetSplit(repo: "EleutherAI/wikitext_document_level", config: "wikitext-2-raw-v1", split: "test")

    static func task(data: BenchmarkDataSources) -> BenchmarkTask {
        BenchmarkTask(
            name: "wikitext", metrics: [.wordPerplexity, .bytePerplexity, .bitsPerByte], sampling: .random(passesEvalDoc: false),
            documents: { try documents(data.locate(test, hub: hubTest, task: "wikitext", purpose: "test")) },
            fewShotPool: { [] })
    }

    static func documents(_ source: TaskData.Source) throws -> [TaskDocument] {
        guard case .file(let url) = source, url.pathExtension != "jsonl" else {
            let (lines, file) = try source.records()
            return try lines.map { line in
                document(page: try TaskData.decode(Record.self, line, in: file).page, origin: "\(file):\(line.number)")
            }
        }
        return try pages(rawText: TaskData.text(url)).enumerated().map { i, page in
            document(page: page, origin: "\(url.path): document \(i)")
        }
    }

    static func document(page: String, origin: String) -> TaskDocument {
        TaskDocument(
            content: .rolling(text: detokenize(page), words: PythonText.whitespaceSplitCount(page), bytes: page.utf8.count),
            identity: Array(page.utf8), origin: origin)
    }

    /// The HF `wikitext_document_level` loader: text read with universal newlines, split on "\n"; a page
    /// starts at each line whose `replace("= = =", "===").replace("= =", "==").strip()` starts with "= " and
    /// ends with " ="; pages are their lines joined by "\n"; whitespace-only pages are dropped, except the last.
    static func pages(rawText: String) -> [String] {
        var lines: [String] = []
        var line = String.UnicodeScalarView()
        var previousWasCR = false
        for s in rawText.unicodeScalars {
            if s == "\n" && previousWasCR { previousWasCR = false; continue }
            previousWasCR = s == "\r"
            if s == "\n" || s == "\r" {
                lines.append(String(line))
                line = String.UnicodeScalarView()
            } else {
                line.append(s)
            }
        }
        lines.append(String(line))
        var pages: [String] = []
        var current: [String] = []
        for line in lines {
            var heading = PythonText.replace(PythonText.scalars(line), "= = =", "===")
            heading = PythonText.replace(heading, "= =", "==")
            let stripped = PythonText.strip(heading)
            if stripped.starts(with: ["=", " "]), stripped.count >= 2, stripped.suffix(2).elementsEqual([" ", "="]) {
                let page = current.joined(separator: "\n")
                if !PythonText.strip(PythonText.scalars(page)).isEmpty { pages.append(page) }
                current = []
            }
            current.append(line)
        }
        pages.append(current.joined(separator: "\n"))
        return pages
    }

    /// `preprocess_wikitext.wikitext_detokenizer`, step by step.
    static func detokenize(_ page: String) -> String {
        var s = PythonText.scalars(page)
        s = PythonText.replace(s, "s '", "s'")
        s = PythonText.wikitextSlashQuoteDigit(s)
        for (old, new) in [
            (" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."), (" : ", ": "), (" ; ", "; "), (" . ", ". "),
            (" ! ", "! "), (" ? ", "? "), (" , ", ", "),
        ] {
            s = PythonText.replace(s, old, new)
        }
        s = PythonText.tightenDelimited(s, open: "(", close: ")")
        s = PythonText.tightenDelimited(s, open: "[", close: "]")
        s = PythonText.tightenDelimited(s, open: "{", close: "}")
        s = PythonText.tightenDelimited(s, open: "\"", close: "\"")
        s = PythonText.tightenDelimited(s, open: "'", close: "'")
        for (old, new) in [
            ("= = = =", "===="), ("= = =", "==="), ("= =", "=="), (" \u{B0} ", "\u{B0}"), (" \n", "\n"),
            ("\n ", "\n"), (" N ", " 1 "), (" 's", "'s"),
        ] {
            s = PythonText.replace(s, old, new)
        }
        return PythonText.string(s)
    }
}
