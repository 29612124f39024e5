import Foundation
import MoEData
import MoEJSON
import Testing

@Suite struct JSONTableTests {
    func parse(_ text: String) throws -> DataTable { try JSONTable.parse(Array(text.utf8), file: "t.jsonl") }

    @Test func jsonLinesKeepKeyOrderAndSkipBlankLines() throws {
        let table = try parse("{\"b\": 1, \"a\": [\"x\"]}\n\n{\"a\": [], \"c\": {\"d\": null}}\r\n")
        #expect(table.columns == ["b", "a", "c"])
        #expect(table.rows.count == 2)
        #expect(table.rows[0]["a"] == .array([.string("x")]))
        #expect(table.rows[1]["c"]?["d"] == .null)
    }

    @Test func oneArrayOfObjects() throws {
        let table = try parse(" [ {\"q\": \"1\"}, {\"q\": \"2\"} ]")
        #expect(table.rows.map { $0["q"]?.stringValue } == ["1", "2"])
    }

    @Test func aBadLineIsNamedByFileAndLine() {
        #expect { try parse("\n{\"a\": 1}\n{\"a\": \n") } throws: { "\($0)".hasPrefix("t.jsonl: line 3: malformed JSON") }
        #expect { try parse("{\"a\": 1}\n[1]\n") } throws: { "\($0)" == "t.jsonl: line 2: an array, not an object" }
        #expect { try parse("[{\"a\": 1}, 2]") } throws: { "\($0)" == "t.jsonl: array item 1 is a number, not an object" }
        #expect { try parse("  \n") } throws: { "\($0)" == "t.jsonl: no records" }
    }

    @Test func dataFilePicksTheReaderByExtension() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("jsontable-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: file) }
        try Data("{\"text\": \"hi\"}\n".utf8).write(to: file)
        #expect(try DataFile.read(file).rows == [["text": .string("hi")]])
    }
}
