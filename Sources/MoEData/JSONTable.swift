import Foundation
import MoEJSON

/// JSON Lines (one object per line, as `datasets`' `to_json` writes) or one JSON array of objects, as a
/// `DataTable`. Hub dataset repos hold both kinds under `.json`/`.jsonl` names, so the content decides.
public enum JSONTable {
    public static func read(_ url: URL) throws -> DataTable {
        let bytes: [UInt8]
        do {
            bytes = [UInt8](try Data(contentsOf: url))
        } catch {
            throw DataFileError(file: url.path, "cannot read (\(error.localizedDescription))")
        }
        return try parse(bytes, file: url.path)
    }

    /// `file` names the source in errors.
    public static func parse(_ bytes: [UInt8], file: String) throws -> DataTable {
        var start = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
        while start < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[start]) { start += 1 }
        var rows: [JSONObject] = []
        if start < bytes.count, bytes[start] == UInt8(ascii: "[") {
            let document: JSONValue
            do {
                document = try JSONValue.parse(Array(bytes[start...]))
            } catch {
                throw DataFileError(file: file, "\(error)")
            }
            for (index, item) in (document.arrayValue ?? []).enumerated() {
                guard let object = item.objectValue else {
                    throw DataFileError(file: file, "array item \(index) is \(item.typeName), not an object")
                }
                rows.append(object)
            }
        } else {
            var lineNumber = 0
            for raw in bytes[start...].split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
                lineNumber += 1
                var line = Array(raw)
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
                let value: JSONValue
                do {
                    value = try JSONValue.parse(line)
                } catch {
                    throw DataFileError(file: file, "line \(lineNumber + lineOffset(bytes, start)): \(error)")
                }
                guard let object = value.objectValue else {
                    throw DataFileError(file: file, "line \(lineNumber + lineOffset(bytes, start)): \(value.typeName), not an object")
                }
                rows.append(object)
            }
        }
        guard !rows.isEmpty else { throw DataFileError(file: file, "no records") }
        var columns: [String] = [], seen = Set<String>()
        for row in rows {
            for key in row.keys where seen.insert(key).inserted { columns.append(key) }
        }
        return DataTable(columns: columns, rows: rows)
    }

    /// Lines skipped before `start` (leading blank lines), so that reported line numbers are the file's.
    private static func lineOffset(_ bytes: [UInt8], _ start: Int) -> Int {
        bytes[..<start].reduce(0) { $0 + ($1 == UInt8(ascii: "\n") ? 1 : 0) }
    }
}
