import Foundation
import Testing

@testable import MoETokenizer

/// Malformed or unsupported tokenizer files fail with one line naming the file and component.
@Suite struct BadInputTests {
    static let vocab = #"{"a": 0, "b": 1, "ab": 2, "Ġ": 3}"#

    static func tokenizerJSON(
        model: String? = nil, normalizer: String = "null", preTokenizer: String = "null",
        postProcessor: String = "null", decoder: String = "null",
        extra: String = ""
    ) -> String {
        let model = model ?? #"{"type": "BPE", "vocab": \#(vocab), "merges": ["a b"]}"#
        return """
            {"version": "1.0", "truncation": null, "padding": null, "added_tokens": [], \(extra)
             "normalizer": \(normalizer), "pre_tokenizer": \(preTokenizer), "post_processor": \(postProcessor),
             "decoder": \(decoder), "model": \(model)}
            """
    }

    /// Loads `json` and returns the error's one-line description.
    static func loadError(_ json: String, config: String? = nil) -> String? {
        do {
            _ = try Tokenizer(tokenizerData: Data(json.utf8), configData: config.map { Data($0.utf8) })
            return nil
        } catch let error as TokenizerError {
            return error.description
        } catch {
            return "unexpected error type: \(error)"
        }
    }

    @Test func validMinimalTokenizerLoads() throws {
        let tokenizer = try Tokenizer(tokenizerData: Data(Self.tokenizerJSON().utf8))
        #expect(tokenizer.encode("abab") == [2, 2])
        #expect(tokenizer.encode("aba") == [2, 0])
    }

    @Test func unknownModelType() {
        let message = Self.loadError(Self.tokenizerJSON(model: #"{"type": "Unigram", "vocab": [["a", 0.0]], "unk_id": 0}"#))
        #expect(message == "tokenizer.json: model: unsupported model type 'Unigram' (only BPE is implemented)")
    }

    @Test func missingMerges() {
        let message = Self.loadError(Self.tokenizerJSON(model: #"{"type": "BPE", "vocab": \#(Self.vocab)}"#))
        #expect(message == "tokenizer.json: model: missing 'merges'")
    }

    @Test func missingVocabulary() {
        let message = Self.loadError(Self.tokenizerJSON(model: #"{"type": "BPE", "merges": []}"#))
        #expect(message == "tokenizer.json: model: missing 'vocab'")
    }

    @Test func mergeOutsideVocabulary() {
        let message = Self.loadError(Self.tokenizerJSON(model: #"{"type": "BPE", "vocab": \#(Self.vocab), "merges": ["a c"]}"#))
        #expect(message == "tokenizer.json: model: merge token 'c' is not in the vocabulary")
        let merged = Self.loadError(Self.tokenizerJSON(model: #"{"type": "BPE", "vocab": \#(Self.vocab), "merges": [["b", "a"]]}"#))
        #expect(merged == "tokenizer.json: model: merged token 'ba' is not in the vocabulary")
    }

    @Test func malformedMerge() {
        let message = Self.loadError(Self.tokenizerJSON(model: #"{"type": "BPE", "vocab": \#(Self.vocab), "merges": ["a b c"]}"#))
        #expect(message == "tokenizer.json: model: merges[0] 'a b c' is not two tokens separated by one space")
    }

    @Test func unknownTokenOutsideVocabulary() {
        let message = Self.loadError(
            Self.tokenizerJSON(
                model: #"{"type": "BPE", "vocab": \#(Self.vocab), "merges": [], "unk_token": "<unk>"}"#))
        #expect(message == "tokenizer.json: model: unk_token '<unk>' is not in the vocabulary")
    }

    @Test func randomDropoutIsRefused() {
        let message = Self.loadError(
            Self.tokenizerJSON(
                model: #"{"type": "BPE", "vocab": \#(Self.vocab), "merges": [], "dropout": 0.1}"#))
        #expect(message?.hasPrefix("tokenizer.json: model: BPE dropout 0.1 is random") == true)
    }

    @Test func unsupportedPreTokenizerInsideSequence() {
        let message = Self.loadError(
            Self.tokenizerJSON(
                preTokenizer: """
                    {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true},
                                                          {"type": "UnicodeScripts"}]}
                    """))
        #expect(message == "tokenizer.json: pre_tokenizer.pretokenizers[1]: unsupported pre-tokenizer type 'UnicodeScripts'")
    }

    @Test func unsupportedNormalizer() {
        let message = Self.loadError(Self.tokenizerJSON(normalizer: #"{"type": "Precompiled", "precompiled_charsmap": ""}"#))
        #expect(message == "tokenizer.json: normalizer: unsupported normalizer type 'Precompiled'")
    }

    @Test func unsupportedDecoder() {
        let message = Self.loadError(Self.tokenizerJSON(decoder: #"{"type": "CTC", "pad_token": "<pad>"}"#))
        #expect(message == "tokenizer.json: decoder: unsupported decoder type 'CTC'")
    }

    @Test func unsupportedPostProcessor() {
        let message = Self.loadError(Self.tokenizerJSON(postProcessor: #"{"type": "Mystery"}"#))
        #expect(message == "tokenizer.json: post_processor: unsupported post-processor type 'Mystery'")
    }

    @Test func templateWithUnknownSpecialToken() {
        let message = Self.loadError(
            Self.tokenizerJSON(
                postProcessor: """
                    {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}}], "pair": [], "special_tokens": {}}
                    """))
        #expect(message == "tokenizer.json: post_processor.single[0]: special token '<s>' is missing from special_tokens")
    }

    @Test func unparsableRegex() {
        let message = Self.loadError(
            Self.tokenizerJSON(
                preTokenizer: #"{"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated", "invert": false}"#))
        #expect(message?.hasPrefix("tokenizer.json: pre_tokenizer.pattern: regex '(unclosed' is not supported") == true)
    }

    @Test func unknownSplitBehavior() {
        let message = Self.loadError(
            Self.tokenizerJSON(
                preTokenizer: #"{"type": "Split", "pattern": {"String": " "}, "behavior": "Sideways", "invert": false}"#))
        #expect(message == "tokenizer.json: pre_tokenizer: unknown split behavior 'Sideways'")
    }

    @Test func wrongFieldType() {
        let message = Self.loadError(Self.tokenizerJSON(preTokenizer: #"{"type": "ByteLevel", "add_prefix_space": "yes"}"#))
        #expect(message == "tokenizer.json: pre_tokenizer: 'add_prefix_space' must be a boolean, found a string")
    }

    @Test func fixedPaddingIsRefused() {
        let json = Self.tokenizerJSON().replacingOccurrences(
            of: #""padding": null"#, with: #""padding": {"strategy": {"Fixed": 8}, "pad_id": 0}"#)
        #expect(Self.loadError(json)?.hasPrefix("tokenizer.json: padding: unsupported padding") == true)
    }

    @Test func unknownVersion() {
        let json = Self.tokenizerJSON().replacingOccurrences(of: #""version": "1.0""#, with: #""version": "2.0""#)
        #expect(Self.loadError(json) == "tokenizer.json: version: unknown tokenizer version '2.0'")
    }

    @Test func malformedJSON() {
        let truncated = String(Self.tokenizerJSON().dropLast(10))
        let message = Self.loadError(truncated)
        #expect(message?.hasPrefix("tokenizer.json: malformed JSON at byte") == true, "\(message ?? "no error")")
        #expect(Self.loadError("[1, 2,]")?.contains("unexpected character ']'") == true)
        #expect(Self.loadError(#"{"a": "\ud800"}"#)?.contains("lone leading surrogate") == true)
        #expect(Self.loadError("") == "tokenizer.json: malformed JSON at byte 0 (line 1, column 1): unexpected end of data")
    }

    @Test func notAnObject() {
        #expect(Self.loadError("[]") == "tokenizer.json: expected a JSON object, found an array")
        #expect(Self.loadError(#"{"version": "1.0"}"#) == "tokenizer.json: missing 'model'")
    }

    @Test func badConfig() {
        let message = Self.loadError(Self.tokenizerJSON(), config: #"{"bos_token": 7}"#)
        #expect(message == "tokenizer_config.json: bos_token: expected a string or an object with 'content', found a number")
        #expect(
            Self.loadError(Self.tokenizerJSON(), config: "{")
                == "tokenizer_config.json: malformed JSON at byte 1 (line 1, column 2): expected a string key")
    }

    @Test func corruptGzip() throws {
        var bytes: [UInt8] = [0x1F, 0x8B, 8, 0, 0, 0, 0, 0, 0, 3]
        bytes += [0xFF, 0xFF, 0xFF]
        #expect(throws: TokenizerError.self) { try Tokenizer(tokenizerData: Data(bytes)) }
    }

    @Test func missingFiles() {
        let nowhere = URL(fileURLWithPath: "/nonexistent/tokenizer-folder")
        #expect(throws: TokenizerError(file: nowhere.path, "no such file or folder")) { try Tokenizer.load(from: nowhere) }
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("empty-tokenizer-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: empty) }
        #expect(throws: TokenizerError(file: empty.path, "the folder has no tokenizer.json")) { try Tokenizer.load(from: empty) }
    }
}
