import Foundation
import Testing

@testable import MoEEval

enum TaskPaths {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/lmeval")

    static let repositoryRoot: URL = {
        var folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while folder.path != "/" {
            if FileManager.default.fileExists(atPath: folder.appendingPathComponent("Package.swift").path) { return folder }
            folder = folder.deletingLastPathComponent()
        }
        return URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
    }()

    /// ../shared/data beside the repository (read-only real data, not part of the project).
    static let sharedData = repositoryRoot.deletingLastPathComponent().appendingPathComponent("shared/data")

    static var sharedDataAvailable: Bool {
        FileManager.default.fileExists(atPath: sharedData.appendingPathComponent("hellaswag").path)
    }

    static let dsv3Fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("MoEModelsTests/Fixtures/dsv3")
}

struct GoldenError: Error, CustomStringConvertible { let description: String }

func loadGolden(_ name: String, in folder: URL = TaskPaths.fixtures) throws -> [String: Any] {
    guard let object = try loadGoldenValue(name, in: folder) as? [String: Any] else {
        throw GoldenError(description: "\(name): not a JSON object")
    }
    return object
}

/// Parsed with `GoldenJSON`: Foundation's JSONSerialization on Linux does not round every decimal to the
/// nearest double, and the goldens hold Python's shortest round-trip reprs.
func loadGoldenValue(_ name: String, in folder: URL = TaskPaths.fixtures) throws -> Any {
    var parser = GoldenJSON(bytes: [UInt8](try Data(contentsOf: folder.appendingPathComponent(name))), name: name)
    return try parser.parse()
}

/// A JSON reader for the fixtures: integer literals become `Int`, other numbers `Double(String)` (correctly
/// rounded), objects `[String: Any]`, arrays `[Any]`, null `NSNull`.
struct GoldenJSON {
    let bytes: [UInt8]
    let name: String
    var i = 0

    init(bytes: [UInt8], name: String) { self.bytes = bytes; self.name = name }

    mutating func parse() throws -> Any {
        let value = try parseValue()
        skipSpace()
        guard i == bytes.count else { throw fail("trailing data") }
        return value
    }

    func fail(_ what: String) -> GoldenError { GoldenError(description: "\(name): \(what) at byte \(i)") }

    mutating func skipSpace() {
        while i < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[i]) { i += 1 }
    }

    mutating func parseValue() throws -> Any {
        skipSpace()
        guard i < bytes.count else { throw fail("unexpected end") }
        switch bytes[i] {
        case UInt8(ascii: "{"):
            i += 1
            var object: [String: Any] = [:]
            skipSpace()
            if bytes[i] == UInt8(ascii: "}") { i += 1; return object }
            while true {
                skipSpace()
                guard let key = try parseValue() as? String else { throw fail("object key") }
                skipSpace()
                guard bytes[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                i += 1
                object[key] = try parseValue()
                skipSpace()
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                guard bytes[i] == UInt8(ascii: "}") else { throw fail("expected '}'") }
                i += 1
                return object
            }
        case UInt8(ascii: "["):
            i += 1
            var array: [Any] = []
            skipSpace()
            if bytes[i] == UInt8(ascii: "]") { i += 1; return array }
            while true {
                array.append(try parseValue())
                skipSpace()
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                guard bytes[i] == UInt8(ascii: "]") else { throw fail("expected ']'") }
                i += 1
                return array
            }
        case UInt8(ascii: "\""):
            return try parseString()
        case UInt8(ascii: "t"): i += 4; return true
        case UInt8(ascii: "f"): i += 5; return false
        case UInt8(ascii: "n"): i += 4; return NSNull()
        default:
            let start = i
            while i < bytes.count, "+-0123456789.eE".utf8.contains(bytes[i]) { i += 1 }
            let literal = String(decoding: bytes[start..<i], as: UTF8.self)
            if !literal.contains(where: { ".eE".contains($0) }), let int = Int(literal) { return int }
            guard let double = Double(literal) else { throw fail("number '\(literal)'") }
            return double
        }
    }

    mutating func parseString() throws -> String {
        i += 1
        var scalars = String.UnicodeScalarView()
        var raw: [UInt8] = []
        func flush() { scalars.append(contentsOf: String(decoding: raw, as: UTF8.self).unicodeScalars); raw.removeAll() }
        while i < bytes.count {
            let c = bytes[i]
            if c == UInt8(ascii: "\"") { i += 1; flush(); return String(scalars) }
            if c != UInt8(ascii: "\\") { raw.append(c); i += 1; continue }
            flush()
            let e = bytes[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "n"): scalars.append("\n")
            case UInt8(ascii: "t"): scalars.append("\t")
            case UInt8(ascii: "r"): scalars.append("\r")
            case UInt8(ascii: "b"): scalars.append("\u{8}")
            case UInt8(ascii: "f"): scalars.append("\u{C}")
            case UInt8(ascii: "u"):
                var unit = UInt32(String(decoding: bytes[i..<(i + 4)], as: UTF8.self), radix: 16) ?? 0
                i += 4
                if (0xD800..<0xDC00).contains(unit), bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") {
                    let low = UInt32(String(decoding: bytes[(i + 2)..<(i + 6)], as: UTF8.self), radix: 16) ?? 0
                    unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                    i += 6
                }
                guard let scalar = Unicode.Scalar(unit) else { throw fail("lone surrogate") }
                scalars.append(scalar)
            default: scalars.append(Unicode.Scalar(e))
            }
        }
        throw fail("unterminated string")
    }
}

/// A golden number, whether written as an integer or a float.
func goldenNumber(_ value: Any?) -> Double? {
    if let d = value as? Double { return d }
    if let i = value as? Int { return Double(i) }
    return nil
}

/// The fake model of tools/reference/lmeval_goldens.py: answers are a function of the request strings only.
enum FakeModel {
    static func fnv1a64<S: Sequence>(_ bytes: S) -> UInt64 where S.Element == UInt8 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        return h
    }

    static func loglikelihood(_ context: String, _ continuation: String) -> LoglikelihoodResult {
        let h = fnv1a64(Array(context.utf8) + [0] + Array(continuation.utf8))
        return LoglikelihoodResult(logprob: -Double(h % 1_000_003) / 100_000.0, isGreedy: (h >> 33) % 4 == 0)
    }

    static func rolling(_ text: String) -> Double {
        let bytes = Array(text.utf8)
        let h = fnv1a64(Array("rolling".utf8) + [0] + bytes)
        return -(Double(bytes.count) * 0.5) - Double(h % 1_000_003) / 100_000.0
    }
}

final class FakeScorer: TextScorer {
    private(set) var loglikelihoodCalls = 0
    func loglikelihood(_ requests: [LoglikelihoodRequest]) throws -> [LoglikelihoodResult] {
        loglikelihoodCalls += 1
        return requests.map { FakeModel.loglikelihood($0.context, $0.continuation) }
    }
    func loglikelihoodRolling(_ texts: [String]) throws -> [Double] { texts.map(FakeModel.rolling) }
}

/// `a == b` as Python compares strings (code points), with the first difference for the message.
func sameText(_ a: String, _ b: String) -> (Bool, String) {
    if a.utf8.elementsEqual(b.utf8) { return (true, "") }
    let x = Array(a.unicodeScalars), y = Array(b.unicodeScalars)
    let i = zip(x, y).prefix { $0 == $1 }.count
    func around(_ s: [Unicode.Scalar]) -> String {
        String(reflecting: PythonText.string(s[max(0, i - 30)..<min(s.count, i + 30)]))
    }
    return (false, "first difference at code point \(i): \(around(x)) vs \(around(y))")
}

/// Relative agreement as the tests require it (1e-12, or exact equality for zero).
func closeEnough(_ a: Double, _ b: Double, relative: Double = 1e-12) -> Bool {
    if a == b { return true }
    return abs(a - b) <= relative * max(abs(a), abs(b))
}
