import Foundation
import Testing

@testable import MoETokenizer

/// The hand-written matchers must be the ones picked for the patterns real tokenizers use (the
/// Swift Regex fallback gives the same ids on most text but is ~8x slower), whichever way the
/// file writes CR/LF.
@Suite struct SplitPatternTests {
    static func matcherType(_ pattern: String) throws -> String {
        String(describing: type(of: try SplitPatterns.regex(pattern)))
    }

    static func rawLineBreaks(_ pattern: String) -> String {
        pattern.replacing(#"\r"#, with: "\r").replacing(#"\n"#, with: "\n")
    }

    @Test func knownPatternsUseHandWrittenMatchers() throws {
        #expect(try Self.matcherType(SplitPatterns.gpt2) == "GPT2Matcher")
        #expect(try Self.matcherType(SplitPatterns.llama3) == "Llama3Matcher")
        #expect(try Self.matcherType(Self.rawLineBreaks(SplitPatterns.llama3)) == "Llama3Matcher")
        #expect(try Self.matcherType(SplitPatterns.cl100k) == "Llama3Matcher")
        #expect(try Self.matcherType(SplitPatterns.qwen2) == "Llama3Matcher")
        #expect(try Self.matcherType(SplitPatterns.deepSeekMain) == "DeepSeekMatcher")
        #expect(try Self.matcherType(Self.rawLineBreaks(SplitPatterns.deepSeekMain)) == "DeepSeekMatcher")
        #expect(try Self.matcherType(SplitPatterns.deepSeekCJK) == "ScalarRangeRunMatcher")
        #expect(try Self.matcherType(#"\p{N}{1,3}"#) == "NumberRunMatcher")
        #expect(try Self.matcherType(#"\s+"#) == "RegexMatcher")
    }

    @Test func demoTokenizerUsesHandWrittenMatchers() throws {
        let url = Paths.repositoryRoot.appendingPathComponent("assets/tokenizers/demo-dsv3/tokenizer.json")
        let json = try JSONParser.parse([UInt8](Data(contentsOf: url)), file: "tokenizer.json")
        guard
            case .sequence(let steps)? = try ComponentReader(file: "tokenizer.json")
                .preTokenizer(json.objectValue?["pre_tokenizer"] ?? .null, "pre_tokenizer")
        else {
            Issue.record("the demo pre-tokenizer is not a Sequence")
            return
        }
        let names = steps.compactMap { step -> String? in
            if case .split(let matcher, _, _) = step { return String(describing: type(of: matcher)) }
            return nil
        }
        #expect(names == ["NumberRunMatcher", "ScalarRangeRunMatcher", "DeepSeekMatcher"])
    }

    @Test func onigurumaEscapesAreRewrittenForSwiftRegex() {
        #expect(RegexMatcher.oniguruma(#"\w+"#) == #"[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}¹²³¼½¾]+"#)
        #expect(RegexMatcher.oniguruma(#"[\w\-]"#) == #"[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\-]"#)
        #expect(RegexMatcher.oniguruma(#"\d\h\\w"#) == #"\p{Nd}[0-9a-fA-F]\\w"#)
    }
}
