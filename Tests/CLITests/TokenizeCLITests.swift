import Foundation
import Testing

/// `moe-eval tokenize`: one JSON array of ids per input line, and back.
@Suite struct TokenizeCLITests {
    static var demo: String { CLI.repoRoot.appendingPathComponent("assets/tokenizers/demo-dsv3").path }

    @Test func encodesLinesAndDecodesThemBack() throws {
        let text = "To be, or not to be: that is the question.\n\nWhat's 2025 + 17?\n"
        let encoded = try CLI.run(["tokenize", "--tokenizer", Self.demo], stdin: text)
        #expect(encoded.status == 0, "\(encoded.stderr)")
        let lines = encoded.stdout.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        #expect(lines.count == 3)
        let first = try #require(try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [Int])
        #expect(first.first == 0, "the demo tokenizer adds BOS (id 0) by default")
        let plain = try CLI.run(["tokenize", "--tokenizer", Self.demo, "--no-special"], stdin: text)
        let decoded = try CLI.run(["tokenize", "--tokenizer", Self.demo, "--decode"], stdin: plain.stdout)
        #expect(decoded.status == 0)
        #expect(decoded.stdout == text)
    }

    @Test func missingTokenizerIsOneClearLine() throws {
        let r = try CLI.run(["tokenize", "--tokenizer", "/nonexistent/tokenizer.json"], stdin: "hi\n")
        #expect(r.status != 0 && r.stderrLines.count == 1 && r.stderr.contains("/nonexistent/tokenizer.json"), "\(r.stderr)")
    }
}
