import Foundation
import MoETensor
import Testing

@testable import MoECheckpoint

/// Fixtures written by tools/reference/make_checkpoint_unit_fixtures.py with torch, safetensors
/// and TorchTitan; `expected.json` holds what those libraries report about them.
enum Fixtures {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func url(_ relative: String) -> URL { folder.appendingPathComponent(relative) }

    nonisolated(unsafe) static let expected: [String: Any] = {
        guard let data = try? Data(contentsOf: url("expected.json")),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        else {
            Issue.record("Fixtures/expected.json is missing or unreadable; run tools/reference/make_checkpoint_unit_fixtures.py")
            return [:]
        }
        return object
    }()

    static func section(_ path: String...) -> [String: Any] {
        var node: Any = expected
        for key in path {
            guard let next = (node as? [String: Any])?[key] else { return [:] }
            node = next
        }
        return node as? [String: Any] ?? [:]
    }

    /// Tensors as torch reported them: dtype, shape and exact bytes.
    static func tensors(_ group: String) -> [String: ExpectedTensor] {
        section("tensors", group).compactMapValues { ExpectedTensor($0) }
    }
}

struct ExpectedTensor {
    let dtype: DType
    let shape: [Int]
    let bytes: [UInt8]

    init?(_ json: Any) {
        guard let record = json as? [String: Any],
            let dtypeName = record["dtype"] as? String, let dtype = DType(rawValue: dtypeName),
            let shape = record["shape"] as? [Int],
            let base64 = record["data"] as? String, let data = Data(base64Encoded: base64)
        else { return nil }
        self.dtype = dtype
        self.shape = shape
        self.bytes = [UInt8](data)
    }
}

/// Checks a loaded tensor against torch's record, byte for byte.
func expectMatches(
    _ tensor: StoredTensor, _ expected: ExpectedTensor?, _ what: String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    guard let expected else {
        Issue.record("no expected record for \(what)", sourceLocation: sourceLocation)
        return
    }
    #expect(tensor.dtype == expected.dtype, "\(what) dtype", sourceLocation: sourceLocation)
    #expect(tensor.shape == expected.shape, "\(what) shape", sourceLocation: sourceLocation)
    #expect(tensor.elementCount == expected.shape.reduce(1, *), "\(what) element count", sourceLocation: sourceLocation)
    #expect(Array(tensor.bytes) == expected.bytes, "\(what) bytes", sourceLocation: sourceLocation)
}

/// A fresh folder under the system temporary folder, removed by the caller with `cleanUp`.
func makeTemporaryFolder() throws -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("moe-ckpt-test-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

func cleanUp(_ url: URL) { try? FileManager.default.removeItem(at: url) }

/// Copies a fixture (file or folder) into a new temporary folder and returns the copy.
func temporaryCopy(of fixture: String) throws -> (copy: URL, folder: URL) {
    let folder = try makeTemporaryFolder()
    let copy = folder.appendingPathComponent(URL(fileURLWithPath: fixture).lastPathComponent)
    try FileManager.default.copyItem(at: Fixtures.url(fixture), to: copy)
    return (copy, folder)
}

/// The error message a throwing call produced (nil if it did not throw).
func errorMessage(_ body: () throws -> Void) -> String? {
    do {
        try body()
        return nil
    } catch {
        return String(describing: error)
    }
}

/// Asserts that `body` throws a one-line message containing every fragment.
func expectError(_ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
    guard let message = errorMessage(body) else {
        Issue.record("expected an error mentioning \(fragments)", sourceLocation: sourceLocation)
        return
    }
    #expect(!message.contains("\n"), "error spans lines: \(message)", sourceLocation: sourceLocation)
    for fragment in fragments {
        #expect(message.contains(fragment), "error '\(message)' lacks '\(fragment)'", sourceLocation: sourceLocation)
    }
}

/// A small deterministic generator for fuzzing (SplitMix64).
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func readBytes(_ url: URL) throws -> [UInt8] { [UInt8](try Data(contentsOf: url)) }
