import Foundation
import Testing

@testable import MoETokenizer

/// The gzip and JSON readers the loader relies on (vectors written by Python's gzip and json).
@Suite struct ReaderTests {
    static let text = String(repeating: "tokenizer.json ", count: 40) + String(repeating: "日本語 👍 ", count: 10)

    static func gunzip(_ base64: String) throws -> String {
        let bytes = [UInt8](try #require(Data(base64Encoded: base64)))
        return String(decoding: try Gzip.decompress(bytes, file: "test.gz"), as: UTF8.self)
    }

    @Test func storedBlockWithFileName() throws {
        let stored =
            "H4sICAAAAAAA/3N0b3JlZC5qc29uAAHuAhH9" + String(repeating: "dG9rZW5pemVyLmpzb24g", count: 40)
            + String(repeating: "5pel5pys6KqeIPCfkY0g", count: 10) + "fRvE2O4CAAA="
        #expect(try Self.gunzip(stored) == Self.text)
    }

    @Test func huffmanBlockWithAndWithoutExtraField() throws {
        #expect(try Self.gunzip("H4sIAAAAAAAC/yvJz07Ny6xKLdLLKs7PUygZ5Y5yqcF9Nn3pszlrXqyap/Bh/sTewcIFAH0bxNjuAgAA") == Self.text)
        #expect(try Self.gunzip("H4sIBAAAAAAC/wQAAQIDBCvJz07Ny6xKLdLLKs7PUygZ5Y5yqcF9Nn3pszlrXqyap/Bh/sTewcIFAH0bxNjuAgAA") == Self.text)
    }

    @Test func concatenatedMembers() throws {
        #expect(
            try Self.gunzip("H4sIAAAAAAAA/0vLLCouUchNzU1KLdIBAFpxiNgNAAAAH4sIAAAAAAAA/1MoTk3Oz0tRyE3NTUotAgC5M1GMDgAAAA==")
                == "first member, second member")
    }

    @Test func corruptionIsDetected() throws {
        var bytes = [UInt8](
            try #require(
                Data(
                    base64Encoded:
                        "H4sIAAAAAAAC/yvJz07Ny6xKLdLLKs7PUygZ5Y5yqcF9Nn3pszlrXqyap/Bh/sTewcIFAH0bxNjuAgAA")))
        bytes[bytes.count - 6] ^= 0x01 // a CRC-32 byte
        #expect(throws: TokenizerError(file: "x.gz", "corrupt gzip data: CRC-32 mismatch")) {
            try Gzip.decompress(bytes, file: "x.gz")
        }
        #expect(throws: TokenizerError.self) { try Gzip.decompress(Array(bytes.prefix(30)), file: "x.gz") }
    }

    @Test func jsonValues() throws {
        let json = #"{"a": [1, -2.5e1, 0, true, false, null], "s": "\"\\\/\b\f\n\r\t\u00e9\ud83d\udc4d", "a": 3}"#
        let value = try JSONParser.parse(Array(json.utf8), file: "t.json")
        let object = try #require(value.objectValue)
        #expect(object["a"]?.intValue == 3)
        #expect(object.entries.count == 3)
        let list = try #require(object.entries[0].value.arrayValue)
        #expect(list.count == 6)
        #expect(list[1].intValue == -25)
        #expect(object["s"]?.stringValue == "\"\\/\u{8}\u{C}\n\r\té👍")
    }

    @Test func jsonErrorsNameThePosition() {
        func message(_ text: String) -> String? {
            do {
                _ = try JSONParser.parse(Array(text.utf8), file: "t.json")
                return nil
            } catch {
                return "\(error)"
            }
        }
        #expect(message("{\n  \"a\": tru }") == "t.json: malformed JSON at byte 9 (line 2, column 8): invalid literal")
        #expect(message("[1 2]") == "t.json: malformed JSON at byte 3 (line 1, column 4): expected ',' or ']'")
        #expect(message("\"a\u{1}\"") == "t.json: malformed JSON at byte 2 (line 1, column 3): control character in a string")
        #expect(message("01") == "t.json: malformed JSON at byte 1 (line 1, column 2): unexpected data after the JSON value")
        #expect(message(String(repeating: "[", count: 600))?.contains("nesting deeper than 512 levels") == true)
        #expect(message("[\"\u{FF}\"]") == nil)
        var invalid = Array("[\"x\"]".utf8)
        invalid[2] = 0xFF
        #expect((try? JSONParser.parse(invalid, file: "t.json")) == nil)
    }
}
