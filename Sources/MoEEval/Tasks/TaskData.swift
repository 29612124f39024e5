import Foundation
import MoEJSON

/// A benchmark data problem: a missing or malformed file, or a task name nobody knows. One line that
/// names the file (and line) or the task.
public struct TaskDataError: Error, CustomStringConvertible, LocalizedError {
    public let description: String
    public var errorDescription: String? { description }
}

/// The `--data-dir` layout (the original releases' file names) and readers for the original file formats.
///
/// Each split lists the places it may be, in order: the original release's file name first, then the
/// name of an export of the HuggingFace dataset the harness reads (`datasets` `to_json`), then loose
/// patterns (`*` matches any run of characters in a file name).
enum TaskData {
    struct Split {
        var candidates: [String]
        /// Where to get the file, for the error when none of the candidates exists.
        var obtain: String
    }

    static func locate(_ split: Split, in dataDir: URL, task: String, purpose: String) throws -> URL {
        for candidate in split.candidates {
            if let found = match(candidate, in: dataDir) { return found }
        }
        let expected = dataDir.appendingPathComponent(split.candidates[0]).path
        throw TaskDataError(description: "\(task): \(purpose) file \(expected) not found (get it from \(split.obtain))")
    }

    static func exists(_ candidate: String, in dataDir: URL) -> Bool { match(candidate, in: dataDir) != nil }

    private static func match(_ candidate: String, in dataDir: URL) -> URL? {
        let url = dataDir.appendingPathComponent(candidate)
        guard candidate.contains("*") else {
            var isDirectory: ObjCBool = false
            let found = FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory)
            return found && !isDirectory.boolValue ? url : nil
        }
        let folder = url.deletingLastPathComponent(), pattern = url.lastPathComponent
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder.path) else { return nil }
        return names.sorted().first { globMatches(pattern, $0) }.map { folder.appendingPathComponent($0) }
    }

    static func globMatches(_ pattern: String, _ name: String) -> Bool {
        let parts = pattern.split(separator: "*", omittingEmptySubsequences: false).map(String.init)
        guard parts.count > 1 else { return pattern == name }
        guard name.hasPrefix(parts[0]), name.hasSuffix(parts[parts.count - 1]),
            name.count >= parts[0].count + parts[parts.count - 1].count
        else { return false }
        var rest = Substring(name.dropFirst(parts[0].count).dropLast(parts[parts.count - 1].count))
        for middle in parts.dropFirst().dropLast() where !middle.isEmpty {
            guard let range = rest.range(of: middle) else { return false }
            rest = rest[range.upperBound...]
        }
        return true
    }

    static func read(_ url: URL) throws -> Data {
        do {
            return try Data(contentsOf: url)
        } catch {
            throw TaskDataError(description: "\(url.path): cannot read (\(error.localizedDescription))")
        }
    }

    static func text(_ url: URL) throws -> String {
        let data = try read(url)
        guard let text = String(data: data, encoding: .utf8) else {
            throw TaskDataError(description: "\(url.path): not valid UTF-8 text")
        }
        return text
    }

    /// A JSON Lines record: its line number and bytes (what `identity` compares).
    struct Line {
        var number: Int
        var bytes: [UInt8]
    }

    /// The non-blank lines of a JSON Lines file (a trailing CR is dropped).
    static func jsonLines(_ url: URL) throws -> [Line] {
        let data = try read(url)
        var lines: [Line] = []
        var number = 0
        for raw in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            number += 1
            var bytes = [UInt8](raw)
            if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
            if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            lines.append(Line(number: number, bytes: bytes))
        }
        if lines.isEmpty { throw TaskDataError(description: "\(url.path): no records") }
        return lines
    }

    /// Decodes one JSON Lines record; a bad line is an error naming the file, line and problem (the byte of a
    /// syntax error, the key path of a missing or mistyped field).
    static func decode<T: Decodable>(_ type: T.Type, _ line: Line, in origin: String) throws -> T {
        do {
            return try JSONValueDecoder().decode(T.self, from: line.bytes)
        } catch let error as TaskDataError {
            throw TaskDataError(description: "\(origin):\(line.number): \(error.description)")
        } catch {
            throw TaskDataError(description: "\(origin):\(line.number): \(error)")
        }
    }

    /// The records of a CSV file as pandas `read_csv(header=None, keep_default_na=False)` reads the
    /// MMLU files: comma-separated, `"`-quoted fields with `""` for a quote, line ends (LF, CRLF, CR) inside
    /// quotes kept, blank lines skipped, every cell a string.
    static func csvRecords(_ url: URL) throws -> [(line: Int, fields: [String])] {
        let bytes = [UInt8](try read(url))
        var records: [(Int, [String])] = []
        var fields: [String] = []
        var field: [UInt8] = []
        var quoted = false, fieldStarted = false, recordStarted = false
        var line = 1, recordLine = 1
        var i = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
        func endField() throws {
            guard let text = String(bytes: field, encoding: .utf8) else {
                throw TaskDataError(description: "\(url.path):\(recordLine): not valid UTF-8")
            }
            fields.append(text)
            field.removeAll(keepingCapacity: true)
            fieldStarted = false
        }
        func endRecord() throws {
            if !recordStarted && field.isEmpty && !fieldStarted {
                recordLine = line
                return
            }
            try endField()
            records.append((recordLine, fields))
            fields = []
            recordStarted = false
            recordLine = line
        }
        while i < bytes.count {
            let c = bytes[i]
            if quoted {
                if c == UInt8(ascii: "\"") {
                    if i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: "\"") {
                        field.append(c)
                        i += 2
                        continue
                    }
                    quoted = false
                } else {
                    if c == UInt8(ascii: "\n") { line += 1 }
                    field.append(c)
                }
                i += 1
                continue
            }
            switch c {
            case UInt8(ascii: "\""):
                if !fieldStarted && field.isEmpty {
                    quoted = true
                    fieldStarted = true
                } else {
                    field.append(c)
                }
            case UInt8(ascii: ","):
                try endField()
                recordStarted = true
            case UInt8(ascii: "\n"), UInt8(ascii: "\r"):
                if c == UInt8(ascii: "\r"), i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: "\n") { i += 1 }
                line += 1
                try endRecord()
            default:
                field.append(c)
                fieldStarted = true
            }
            i += 1
        }
        if quoted { throw TaskDataError(description: "\(url.path):\(recordLine): a quoted field is not closed") }
        try endRecord()
        return records
    }
}

/// A JSON value whose type varies between releases of a dataset (labels as ints, strings or bools).
enum FlexibleValue: Decodable, Sendable, Equatable {
    case int(Int), string(String), bool(Bool), double(Double), null

    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let v = try? container.decode(Bool.self) {
            self = .bool(v)
        } else if let v = try? container.decode(Int.self) {
            self = .int(v)
        } else if let v = try? container.decode(Double.self) {
            self = .double(v)
        } else if let v = try? container.decode(String.self) {
            self = .string(v)
        } else {
            throw DecodingError.typeMismatch(
                FlexibleValue.self,
                .init(
                    codingPath: decoder.codingPath,
                    debugDescription: "expected a number, string or bool"))
        }
    }

    /// Jinja's `{{value}}`: what the harness renders before `isdigit()` / `literal_eval`.
    var rendered: String {
        switch self {
        case .int(let v): return String(v)
        case .string(let v): return v
        case .bool(let v): return v ? "True" : "False"
        case .double(let v): return String(v)
        case .null: return "None"
        }
    }
}

/// The gold index lm-eval derives from a rendered `doc_to_target`: digits become an int (`literal_eval`),
/// any other text is looked up among the choices; -100 when it names no choice.
func goldIndex(rendered: String, choices: [String]) -> Int {
    if PythonText.isASCIIDigits(rendered) {
        return Int(rendered).map { $0 < choices.count ? $0 : -100 } ?? -100
    }
    return choices.firstIndex { PythonText.same($0, rendered) } ?? -100
}
