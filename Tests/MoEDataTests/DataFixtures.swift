import Foundation
import MoEData
import MoEJSON
import XCTest

/// The pyarrow-written fixtures (tools/fixtures/make_data_fixtures.py) and the rows pyarrow read back from them.
enum DataFixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func url(_ name: String) -> URL { directory.appendingPathComponent(name) }

    static func bytes(_ name: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: url(name))) }

    static func manifest() throws -> JSONValue { try JSONValue.parse([UInt8](try Data(contentsOf: url("manifest.json")))) }

    /// Data files of one kind (extension) and the expected table each must read as.
    static func cases(extension kind: String) throws -> [(file: String, expected: DataTable)] {
        guard let files = try manifest()["files"]?.objectValue else { throw DataFileError("manifest.json has no files") }
        return try files.entries.filter { $0.key.hasSuffix("." + kind) }.map { entry in
            guard let table = entry.value.stringValue else { throw DataFileError("manifest entry \(entry.key) is not a string") }
            return (entry.key, try expectedTable(table))
        }
    }

    static func expectedTable(_ name: String) throws -> DataTable {
        let json = try JSONValue.parse([UInt8](try Data(contentsOf: url(name + ".expected.json"))))
        guard let columns = json["columns"]?.arrayValue?.compactMap(\.stringValue),
            let rows = json["rows"]?.arrayValue?.compactMap(\.objectValue)
        else {
            throw DataFileError("\(name).expected.json is not {columns, rows}")
        }
        return DataTable(columns: columns, rows: rows)
    }

    /// Compares row by row so that a failure names the first differing row, not two whole tables.
    static func assertEqual(_ actual: DataTable, _ expected: DataTable, _ file: String, line: UInt = #line) {
        XCTAssertEqual(actual.columns, expected.columns, file, line: line)
        XCTAssertEqual(actual.rows.count, expected.rows.count, "\(file): row count", line: line)
        for (index, (got, want)) in zip(actual.rows, expected.rows).enumerated() where got != want {
            XCTFail(
                "\(file) row \(index):\n got  \(JSONValue.object(got).serialized)\n want \(JSONValue.object(want).serialized)", line: line)
            return
        }
    }

    /// Runs `read` and requires a `DataFileError` that names `name`; returns its message.
    @discardableResult
    static func assertDataFileError(_ name: String, line: UInt = #line, _ read: () throws -> DataTable) -> String? {
        do {
            _ = try read()
            XCTFail("\(name): read succeeded, expected an error", line: line)
        } catch let error as DataFileError {
            XCTAssertTrue(error.description.hasPrefix(name + ": "), "error does not name the file: \(error)", line: line)
            XCTAssertFalse(error.description.contains("\n"), "error is not one line: \(error)", line: line)
            return error.description
        } catch {
            XCTFail("\(name): expected DataFileError, got \(type(of: error)): \(error)", line: line)
        }
        return nil
    }
}
