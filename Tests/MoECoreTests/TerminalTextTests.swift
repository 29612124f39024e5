import Testing

@testable import MoECore

@Suite struct TerminalTextTests {
    @Test func controlCharactersAreShownNotSent() {
        #expect(TerminalText.sanitized("a\u{1B}[31mred\u{07}") == "a\\x1b[31mred\\x07")
        #expect(TerminalText.sanitized("line\nnext\ttab") == "line\nnext\ttab")
        #expect(TerminalText.sanitized("line\nnext", keepingLineBreaks: false) == "line\\x0anext")
        #expect(TerminalText.sanitized("c1\u{9B}x \u{202E}rtl") == "c1\\x9bx \\u{202e}rtl")
        #expect(TerminalText.sanitized("plain ü 漢") == "plain ü 漢")
    }
}
