import Foundation
import MoEJSON
import Testing

@testable import MoETokenizer

/// Each pre-tokenizer, normalizer and decoder on its own, and small tokenizers exercising BPE
/// options, added-token flags and post-processors — against what the real library gives
/// (Fixtures/components.json.gz from tools/reference/tokenizer_goldens.py).
@Suite struct ComponentTests {
    static let components: JSONObject? = try? loadFixture("components.json.gz")

    static func entries(_ kind: String) -> [String] {
        (try? components?.objects(kind).map { try $0.string("name") }) ?? []
    }

    static func entry(_ kind: String, _ name: String) throws -> JSONObject {
        guard let components else { throw FixtureError(description: "components.json.gz did not load") }
        guard let entry = try components.objects(kind).first(where: { $0["name"]?.stringValue == name }) else {
            throw FixtureError(description: "no \(kind) entry \(name)")
        }
        return entry
    }

    static let reader = ComponentReader(file: "components.json.gz")

    @Test func fixtureLoads() throws {
        #expect(Self.components != nil)
        #expect(Self.entries("pre_tokenizers").count > 30)
        #expect(Self.entries("normalizers").count > 10)
        #expect(Self.entries("decoders").count > 10)
        #expect(Self.entries("tokenizers").count > 10)
    }

    @Test(arguments: entries("pre_tokenizers"))
    func preTokenizer(_ name: String) throws {
        let entry = try Self.entry("pre_tokenizers", name)
        let preTokenizer = try #require(try Self.reader.preTokenizer(entry["config"] ?? .null, "config"))
        for testCase in try entry.objects("cases") {
            let text = try testCase.string("text")
            let expected = (testCase["pieces"]?.arrayValue ?? []).compactMap(\.stringValue)
            let pieces = preTokenizer.preTokenize(text)
            #expect(pieces == expected, "\(name) on \"\(show(text))\"")
        }
    }

    @Test(arguments: entries("normalizers"))
    func normalizer(_ name: String) throws {
        let entry = try Self.entry("normalizers", name)
        let normalizer = try #require(try Self.reader.normalizer(entry["config"] ?? .null, "config"))
        for testCase in try entry.objects("cases") {
            let text = try testCase.string("text")
            let expected = try testCase.string("normalized")
            let normalized = normalizer.normalize(text)
            #expect(normalized == expected, "\(name) on \"\(show(text))\": \"\(show(normalized))\"")
        }
    }

    @Test(arguments: entries("decoders"))
    func decoder(_ name: String) throws {
        let entry = try Self.entry("decoders", name)
        let decoder = try #require(try Self.reader.decoder(entry["config"] ?? .null, "config"))
        for testCase in try entry.objects("cases") {
            let tokens = (testCase["tokens"]?.arrayValue ?? []).compactMap(\.stringValue)
            let expected = try testCase.string("decoded")
            let decoded = decoder.decode(tokens)
            #expect(decoded == expected, "\(name) on \(tokens): \"\(show(decoded))\"")
        }
    }

    @Test(arguments: entries("tokenizers"))
    func tokenizer(_ name: String) throws {
        let entry = try Self.entry("tokenizers", name)
        let tokenizer = try Tokenizer(
            json: entry["tokenizer"] ?? .null, config: entry["config"]?.objectValue,
            source: name, configSource: name + " config")
        #expect(tokenizer.bosTokenId == entry["bos_id"]?.intValue, "\(name): bosTokenId")
        #expect(tokenizer.eosTokenId == entry["eos_id"]?.intValue, "\(name): eosTokenId")
        for testCase in try entry.objects("cases") {
            let text = try testCase.string("text")
            let expected = try testCase.ints("ids") ?? []
            let expectedRaw = try testCase.ints("raw") ?? []
            #expect(tokenizer.encode(text) == expected, "\(name): ids of \"\(show(text))\"")
            #expect(
                tokenizer.encode(text, addSpecialTokens: false) == expectedRaw,
                "\(name): ids without special tokens of \"\(show(text))\"")
            let decoded = tokenizer.decode(expected)
            let expectedDecoded = try testCase.string("dec")
            #expect(decoded == expectedDecoded, "\(name): decode of \"\(show(text))\": \"\(show(decoded))\"")
            let skipped = tokenizer.decode(expected, skipSpecialTokens: true)
            let expectedSkip = testCase["dec_skip"]?.stringValue ?? expectedDecoded
            #expect(skipped == expectedSkip, "\(name): decode skipping special tokens of \"\(show(text))\"")
        }
    }
}
