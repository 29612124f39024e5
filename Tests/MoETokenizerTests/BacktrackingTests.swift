import Foundation
import Testing

@testable import MoETokenizer

/// Split patterns that Swift Regex could backtrack on for ever are refused when the tokenizer loads, naming the file
/// and the pattern; the patterns real tokenizers use pass the check.
@Suite struct BacktrackingTests {
    static func split(_ pattern: String) -> String {
        let escaped = pattern.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        return #"{"type": "Split", "pattern": {"Regex": "\#(escaped)"}, "behavior": "Isolated", "invert": false}"#
    }

    @Test(arguments: [
        #"(a+)+$"#, #"(a*)*b"#, #"(a|a)*$"#, #"(a|aa)+$"#, #"(?:\w+\s?)+$"#, #"((ab)*)+c"#, #"(x?y?)+z"#,
        #"(a+){2,}"#, #"(?<name>a+)+"#,
    ])
    func exponentialPatternsAreRefused(pattern: String) {
        let message = BadInputTests.loadError(BadInputTests.tokenizerJSON(preTokenizer: Self.split(pattern)))
        #expect(
            message?.hasPrefix("tokenizer.json: pre_tokenizer.pattern: regex '\(pattern)' is not supported: the repeated group") == true,
            "\(message ?? "loaded")")
    }

    @Test(arguments: [
        SplitPatterns.gpt2, SplitPatterns.llama3, SplitPatterns.cl100k, SplitPatterns.qwen2,
        SplitPatterns.deepSeekMain, SplitPatterns.deepSeekCJK, SplitPatterns.numbers1to3,
        #"\s+(?!\S)|\s+"#, #"(?:ab|cd)+"#, #"(?>a+)+$"#, #"(a++)+$"#, #"(a+)?"#, #"[(a+)+]"#, #"\(a+\)+"#,
        #"(a|b)+"#, #"(?i:'s|'t|'re)"#, #"\p{L}+|\p{N}{1,3}"#, #" ?[^\s\p{L}\p{N}]+[\r\n]*"#,
    ])
    func ordinaryPatternsPass(pattern: String) throws {
        #expect(BacktrackingCheck.exponentialGroup(in: pattern) == nil)
        _ = try RegexMatcher(pattern: pattern)
    }

    /// The message names the file when the tokenizer is loaded from disk.
    @Test func refusalNamesTheFile() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("backtracking-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("tokenizer.json")
        try Data(BadInputTests.tokenizerJSON(preTokenizer: Self.split("(a+)+$")).utf8).write(to: file)
        do {
            _ = try Tokenizer.load(from: folder)
            Issue.record("loaded")
        } catch {
            #expect(String(describing: error).hasPrefix("\(file.path): pre_tokenizer.pattern: regex '(a+)+$'"), "\(error)")
        }
    }
}
