import Foundation
import MoEJSON

@testable import MoETokenizer

enum Paths {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    static let repositoryRoot: URL = {
        var folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while folder.path != "/" {
            if FileManager.default.fileExists(atPath: folder.appendingPathComponent("Package.swift").path) {
                return folder
            }
            folder = folder.deletingLastPathComponent()
        }
        return URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
    }()

    /// ../shared/data beside the repository (read-only real data; absent on some machines).
    static let sharedData = repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared/data")

    static var sharedDataAvailable: Bool {
        FileManager.default.fileExists(atPath: sharedData.appendingPathComponent("tokenizers").path)
    }

    /// "data:..." is relative to ../shared/data, "repo:..." to the repository root.
    static func resolve(_ location: String) -> URL {
        if location.hasPrefix("data:") { return sharedData.appendingPathComponent(String(location.dropFirst(5))) }
        return repositoryRoot.appendingPathComponent(String(location.drop { $0 != ":" }.dropFirst()))
    }
}

struct FixtureError: Error, CustomStringConvertible {
    let description: String
}

/// Reads a gzip-compressed JSON fixture with the module's own gzip and JSON readers.
func loadFixture(_ name: String) throws -> JSONObject {
    let url = Paths.fixtures.appendingPathComponent(name)
    let bytes = try [UInt8](Data(contentsOf: url))
    let json = try JSONParser.parse(Gzip.decompress(bytes, file: name), file: name)
    guard let object = json.objectValue else { throw FixtureError(description: "\(name): not an object") }
    return object
}

extension JSONObject {
    func string(_ key: String) throws -> String {
        guard let value = self[key]?.stringValue else { throw FixtureError(description: "missing string '\(key)'") }
        return value
    }

    func ints(_ key: String) throws -> [Int]? {
        guard let value = self[key] else { return nil }
        guard let items = value.arrayValue else { throw FixtureError(description: "'\(key)' is not an array") }
        return try items.map { item in
            guard let number = item.intValue else { throw FixtureError(description: "'\(key)' holds \(item)") }
            return number
        }
    }

    func objects(_ key: String) throws -> [JSONObject] {
        guard let items = self[key]?.arrayValue else { throw FixtureError(description: "missing array '\(key)'") }
        return try items.map { item in
            guard let object = item.objectValue else { throw FixtureError(description: "'\(key)' holds \(item.typeName)") }
            return object
        }
    }
}

/// The texts the golden files point at: line `n` of a source file (split on "\n", a final empty
/// piece dropped, exactly as tools/reference/tokenizer_goldens.py does), or a field of a JSONL line.
final class SourceTexts {
    private let sources: [JSONObject]
    private var lines: [Int: [String]] = [:]

    init(sources: [JSONObject]) {
        self.sources = sources
    }

    func text(source: Int, line: Int, field: String?) throws -> String {
        guard sources.indices.contains(source) else { throw FixtureError(description: "no source \(source)") }
        let description = sources[source]
        if lines[source] == nil {
            let url = Paths.sharedData.appendingPathComponent(try description.string("file"))
            let bytes = [UInt8](try Data(contentsOf: url))
            // Split on the byte, not on Character "\n": Swift treats "\r\n" as one Character.
            var split = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).map {
                String(decoding: $0, as: UTF8.self)
            }
            if bytes.last == 0x0A { split.removeLast() }
            lines[source] = split
        }
        guard let fileLines = lines[source], fileLines.indices.contains(line) else {
            throw FixtureError(description: "source \(source) has no line \(line)")
        }
        guard let field else { return fileLines[line] }
        let record = try JSONParser.parse(Array(fileLines[line].utf8), file: "jsonl")
        let parts = field.split(separator: ".")
        guard let object = record.objectValue, let value = object[String(parts[0])] else {
            throw FixtureError(description: "line \(line) has no field \(field)")
        }
        if parts.count == 2, let index = Int(parts[1]), let items = value.arrayValue, items.indices.contains(index),
            let text = items[index].stringValue
        {
            return text
        }
        guard parts.count == 1, let text = value.stringValue else {
            throw FixtureError(description: "line \(line) field \(field) is not text")
        }
        return text
    }
}

/// Readable form of a text for failure messages.
func show(_ text: String, limit: Int = 80) -> String {
    let escaped = text.unicodeScalars.map { scalar -> String in
        switch scalar {
        case "\n": return "\\n"
        case "\r": return "\\r"
        case "\t": return "\\t"
        default: return scalar.value < 0x20 ? String(format: "\\u{%X}", scalar.value) : String(scalar)
        }
    }.joined()
    return escaped.count > limit ? String(escaped.prefix(limit)) + "…" : escaped
}
