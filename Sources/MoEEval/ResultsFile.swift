import Foundation

/// A results file as written by `moe-eval run` or by the seed's `eval_moe_model.py`, read without a fixed
/// schema: seed files lack most of our keys, store counts as floats and may hold Python's `NaN`/`Infinity`,
/// so `compare` and `report` walk the JSON instead of decoding `EvalResults`.
public struct ResultsFile {
    /// The file as given on the command line (used in every message).
    public let path: String
    public let root: ResultsJSON.Object

    /// The top-level sections that hold metrics; a file with none of them is not a results file.
    public static let metricSections = ["routing_stats", "inference_performance", "computational_cost", "lm_eval_results"]

    public struct LoadError: Error, CustomStringConvertible, LocalizedError {
        public let description: String
        public var errorDescription: String? { description }
    }

    public init(path: String, root: ResultsJSON.Object) {
        self.path = path
        self.root = root
    }

    public static func load(_ url: URL) throws -> ResultsFile {
        let path = url.path
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            let reason = FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist"
            throw LoadError(description: "\(path): \(reason)")
        }
        return try parse(data, path: path)
    }

    public static func parse(_ data: Data, path: String) throws -> ResultsFile {
        let value: ResultsJSON
        do {
            value = try ResultsJSON.parse(Array(data))
        } catch let error as ResultsJSON.ParseError {
            throw LoadError(description: "\(path) is not an eval results file: not valid JSON (\(error.description))")
        }
        guard case .object(let root) = value else {
            throw LoadError(description: "\(path) is not an eval results file: the JSON is \(value.typeName), not an object")
        }
        let present = metricSections.filter { root[$0] != nil } + (root["lm_eval_samples"] != nil ? ["lm_eval_samples"] : [])
        guard !present.isEmpty else {
            let keys = root.keys.prefix(6).joined(separator: ", ")
            throw LoadError(description: "\(path) is not an eval results file: none of \(metricSections.joined(separator: ", ")) at the top level (it has \(keys.isEmpty ? "no keys" : keys + (root.count > 6 ? ", …" : "")))")
        }
        for name in present where root[name]?.objectValue == nil && root[name]?.isNull == false {
            throw LoadError(description: "\(path) is not an eval results file: \(name) is \(root[name]!.typeName), not an object")
        }
        return ResultsFile(path: path, root: root)
    }

    /// Written by the seed's scripts (no `moe_eval` record): its `active_params_billions` is the total count.
    public var isSeedFormat: Bool { root["moe_eval"] == nil }

    /// A top-level section, nil when absent, null or empty (moe-eval writes `{}` for phases it did not run).
    public func section(_ name: String) -> ResultsJSON.Object? {
        guard let object = root[name]?.objectValue, !object.isEmpty else { return nil }
        return object
    }

    public var runRecord: ResultsJSON.Object? { section("moe_eval") }
    public var preset: String? { runRecord?["preset"]?.stringValue }
    public var checkpointDir: String? { root["checkpoint_dir"]?.stringValue }
    public var timestamp: String? { root["eval_timestamp"]?.stringValue }
    public var walltimeSeconds: Double? { root["walltime_seconds"]?.numberValue }

    /// Per-layer routing entries (`layer_<i>`), ordered by layer index.
    public var routingLayers: [(name: String, index: Int, metrics: ResultsJSON.Object)] {
        guard let stats = section("routing_stats") else { return [] }
        var layers: [(name: String, index: Int, metrics: ResultsJSON.Object)] = []
        for (key, value) in stats.entries where key.hasPrefix("layer_") {
            guard let metrics = value.objectValue else { continue }
            layers.append((key, Int(key.dropFirst(6)) ?? Int.max, metrics))
        }
        return layers.sorted { $0.index != $1.index ? $0.index < $1.index : $0.name < $1.name }
    }

    public var routingAggregate: ResultsJSON.Object? { section("routing_stats")?["aggregate"]?.objectValue }
}

/// JSON with the extensions Python's `json.dump` writes by default (`NaN`, `Infinity`, `-Infinity`), object
/// keys kept in file order (layers, tasks and metrics are shown in the order the file lists them).
public enum ResultsJSON: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([ResultsJSON])
    case object(Object)

    public struct Object: Sendable, Equatable {
        public var entries: [(key: String, value: ResultsJSON)]

        public init(_ entries: [(key: String, value: ResultsJSON)] = []) { self.entries = entries }

        /// The last value under `key`, as Python's json module keeps it.
        public subscript(key: String) -> ResultsJSON? {
            for entry in entries.reversed() where entry.key == key { return entry.value }
            return nil
        }

        public var keys: [String] { entries.map(\.key) }
        public var count: Int { entries.count }
        public var isEmpty: Bool { entries.isEmpty }

        public static func == (lhs: Object, rhs: Object) -> Bool {
            lhs.entries.count == rhs.entries.count
                && zip(lhs.entries, rhs.entries).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        }
    }

    public var numberValue: Double? {
        if case .number(let value) = self { return value }
        return nil
    }

    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    public var objectValue: Object? {
        if case .object(let value) = self { return value }
        return nil
    }

    public var arrayValue: [ResultsJSON]? {
        if case .array(let value) = self { return value }
        return nil
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }

    public struct ParseError: Error, CustomStringConvertible {
        public let description: String
    }

    public static func parse(_ bytes: [UInt8]) throws -> ResultsJSON {
        var parser = Parser(bytes: bytes)
        parser.skipWhitespace()
        let value = try parser.value(depth: 0)
        parser.skipWhitespace()
        guard parser.position == bytes.count else { throw parser.failure("unexpected data after the JSON value") }
        return value
    }

    private struct Parser {
        let bytes: [UInt8]
        var position = 0
        static let maximumDepth = 512

        init(bytes: [UInt8]) {
            self.bytes = bytes
            // A UTF-8 byte-order mark is not JSON, but editors write one.
            if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { position = 3 }
        }

        func failure(_ message: String) -> ParseError {
            var line = 1, column = 1
            for byte in bytes[..<min(position, bytes.count)] {
                if byte == UInt8(ascii: "\n") { line += 1; column = 1 } else { column += 1 }
            }
            return ParseError(description: "\(message) at line \(line), column \(column)")
        }

        mutating func skipWhitespace() {
            while position < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[position]) { position += 1 }
        }

        mutating func literal(_ word: String) -> Bool {
            let utf8 = Array(word.utf8)
            guard position + utf8.count <= bytes.count, Array(bytes[position..<(position + utf8.count)]) == utf8 else { return false }
            position += utf8.count
            return true
        }

        mutating func value(depth: Int) throws -> ResultsJSON {
            guard depth < Self.maximumDepth else { throw failure("nesting deeper than \(Self.maximumDepth) levels") }
            guard position < bytes.count else { throw failure("unexpected end of data") }
            switch bytes[position] {
            case UInt8(ascii: "{"): return try object(depth: depth)
            case UInt8(ascii: "["): return try array(depth: depth)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): if literal("true") { return .bool(true) }
            case UInt8(ascii: "f"): if literal("false") { return .bool(false) }
            case UInt8(ascii: "n"): if literal("null") { return .null }
            case UInt8(ascii: "N"): if literal("NaN") { return .number(.nan) }
            case UInt8(ascii: "I"): if literal("Infinity") { return .number(.infinity) }
            default: return .number(try number())
            }
            throw failure("unexpected character")
        }

        mutating func object(depth: Int) throws -> ResultsJSON {
            position += 1
            var entries: [(key: String, value: ResultsJSON)] = []
            skipWhitespace()
            if position < bytes.count, bytes[position] == UInt8(ascii: "}") { position += 1; return .object(Object(entries)) }
            while true {
                skipWhitespace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else { throw failure("expected a string key") }
                let key = try string()
                skipWhitespace()
                guard position < bytes.count, bytes[position] == UInt8(ascii: ":") else { throw failure("expected ':'") }
                position += 1
                skipWhitespace()
                entries.append((key, try value(depth: depth + 1)))
                skipWhitespace()
                guard position < bytes.count else { throw failure("unexpected end of data in an object") }
                if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
                if bytes[position] == UInt8(ascii: "}") { position += 1; return .object(Object(entries)) }
                throw failure("expected ',' or '}'")
            }
        }

        mutating func array(depth: Int) throws -> ResultsJSON {
            position += 1
            var items: [ResultsJSON] = []
            skipWhitespace()
            if position < bytes.count, bytes[position] == UInt8(ascii: "]") { position += 1; return .array(items) }
            while true {
                skipWhitespace()
                items.append(try value(depth: depth + 1))
                skipWhitespace()
                guard position < bytes.count else { throw failure("unexpected end of data in an array") }
                if bytes[position] == UInt8(ascii: ",") { position += 1; continue }
                if bytes[position] == UInt8(ascii: "]") { position += 1; return .array(items) }
                throw failure("expected ',' or ']'")
            }
        }

        mutating func number() throws -> Double {
            let start = position
            if position < bytes.count, bytes[position] == UInt8(ascii: "-") {
                position += 1
                if literal("Infinity") { return -.infinity }
            }
            while position < bytes.count {
                let byte = bytes[position]
                let isNumberByte = (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
                    || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E")
                    || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "-")
                guard isNumberByte else { break }
                position += 1
            }
            let text = String(decoding: bytes[start..<position], as: UTF8.self)
            guard !text.isEmpty, text != "-", let value = Double(text), text.first != "+", text.first != "." else {
                position = start
                throw failure("unexpected character")
            }
            return value
        }

        mutating func hexQuad() throws -> UInt32 {
            guard position + 4 <= bytes.count,
                  let value = UInt32(String(decoding: bytes[position..<(position + 4)], as: UTF8.self), radix: 16)
            else { throw failure("bad \\u escape") }
            position += 4
            return value
        }

        mutating func string() throws -> String {
            position += 1
            var scalars = String.UnicodeScalarView()
            var run = position
            func flush(_ end: Int) { scalars.append(contentsOf: String(decoding: bytes[run..<end], as: UTF8.self).unicodeScalars) }
            while position < bytes.count {
                let byte = bytes[position]
                if byte == UInt8(ascii: "\"") {
                    flush(position)
                    position += 1
                    return String(scalars)
                }
                if byte < 0x20 { throw failure("control character in a string") }
                if byte != UInt8(ascii: "\\") { position += 1; continue }
                flush(position)
                position += 1
                guard position < bytes.count else { break }
                let escape = bytes[position]
                position += 1
                switch escape {
                case UInt8(ascii: "\""): scalars.append("\"")
                case UInt8(ascii: "\\"): scalars.append("\\")
                case UInt8(ascii: "/"): scalars.append("/")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "u"):
                    var code = try hexQuad()
                    if (0xD800..<0xDC00).contains(code), position + 6 <= bytes.count,
                       bytes[position] == UInt8(ascii: "\\"), bytes[position + 1] == UInt8(ascii: "u") {
                        position += 2
                        let low = try hexQuad()
                        if (0xDC00..<0xE000).contains(low) {
                            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        } else {
                            scalars.append("\u{FFFD}")
                            code = low
                        }
                    }
                    scalars.append(Unicode.Scalar(code) ?? "\u{FFFD}")
                default:
                    throw failure("bad escape")
                }
                run = position
            }
            throw failure("unterminated string")
        }
    }
}
