import Foundation
import MoEJSON
import Testing

@Suite struct JSONReaderTests {
    @Test func readsWhatPythonWrites() throws {
        let value = try JSONValue.parse(#"{"a": [1, -2, 3.5, 1e2, true, null, "\u00e9\ud83d\ude00\n"], "b": {}}"#)
        #expect(value["a"] == .array([.int(1), .int(-2), .double(3.5), .double(100), .bool(true), .null, .string("é😀\n")]))
        #expect(value["b"] == .object([]))
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "01", "1.", "\"\\x\"", "tru", "[1] 2", "\"\u{01}\"", "NaN", "-Infinity"] {
            #expect(throws: JSONParseError.self, "\(bad.debugDescription)") { try JSONValue.parse(bad) }
        }
    }

    /// Python's json.dumps writes NaN and ±Infinity unless told not to; results files may hold them.
    @Test func pythonNonFiniteNumbersOnlyWhenAllowed() throws {
        let value = try JSONValue.parse(#"[NaN, Infinity, -Infinity, -1]"#, allowNonFinite: true)
        let numbers = try #require(value.arrayValue).compactMap(\.doubleValue)
        #expect(numbers.count == 4 && numbers[0].isNaN && numbers[1] == .infinity && numbers[2] == -.infinity && numbers[3] == -1)
        #expect(throws: JSONParseError.self) { try JSONValue.parse("[Nan]", allowNonFinite: true) }
        #expect(throws: JSONParseError.self) { try JSONValue.parse("-Inf", allowNonFinite: true) }
    }

    @Test func integersStayExactAndOverflowBecomesDouble() throws {
        #expect(try JSONValue.parse("9223372036854775807") == .int(Int.max))
        #expect(try JSONValue.parse("-9223372036854775808") == .int(Int.min))
        #expect(try JSONValue.parse("9223372036854775808") == .double(9223372036854775808))
        #expect(try JSONValue.parse("2.0").intValue == 2)
        #expect(try JSONValue.parse("2.5").intValue == nil)
        // Correctly rounded: the double nearest to the decimal text, as Python reads it.
        #expect(try JSONValue.parse("0.1").doubleValue == 0.1)
        #expect(try JSONValue.parse("-123.456789012345678").doubleValue == -123.456789012345678)
    }

    @Test func duplicateKeysResolveToTheLastAndOrderIsKept() throws {
        let value = try JSONValue.parse(#"{"b": 1, "a": 2, "b": 3}"#)
        #expect(value["b"] == .int(3))
        #expect(value.objectValue?.keys == ["b", "a", "b"])
    }

    @Test func errorsNameThePosition() {
        func message(_ text: String, maxDepth: Int = 512) -> String? {
            do { _ = try JSONValue.parse(text, maxDepth: maxDepth); return nil } catch { return "\(error)" }
        }
        #expect(message("{\n  \"a\": tru }") == "malformed JSON at byte 9 (line 2, column 8): invalid literal")
        #expect(message("[1 2]") == "malformed JSON at byte 3 (line 1, column 4): expected ',' or ']'")
        #expect(message(String(repeating: "[", count: 65), maxDepth: 64)?.contains("nesting deeper than 64 levels") == true)
        #expect(message(String(repeating: "[", count: 64) + String(repeating: "]", count: 64), maxDepth: 64) == nil)
        var invalid = Array("[\"x\"]".utf8)
        invalid[2] = 0xFF
        #expect(throws: JSONParseError.self) { try JSONValue.parse(invalid) }
    }

    @Test func writesShortestRoundTripDoubles() throws {
        let values: [Double] = [-0.1, -1.0e-7, -123.456789012345678, -2.220446049250313e-16]
        let text = JSONValue.array(values.map(JSONValue.double)).serialized
        // Read back with the correctly rounded Double(String), as Python's json does (Foundation's
        // JSONSerialization on Linux is off by an ulp on some long numbers).
        let back = text.dropFirst().dropLast().split(separator: ",").map { Double(String($0)) }
        #expect(back == values)
        #expect(JSONValue.string("a\"b\\\n\u{01}").serialized == #""a\"b\\\n\u0001""#)
        #expect(JSONValue.object(["k": .int(1), "j": .double(.nan)]).serialized == #"{"k":1,"j":null}"#)
    }
}
