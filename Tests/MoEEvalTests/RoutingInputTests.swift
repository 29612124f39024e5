import Foundation
import Testing

@testable import MoEEval

/// `--data FOLDER` as TorchTitan's `dataset_path`: the folder's .json/.jsonl/.txt files in name order.
@Suite struct RoutingInputTests {
    static func folder(_ files: [String: String]) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("routing-input-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for (name, text) in files { try Data(text.utf8).write(to: dir.appendingPathComponent(name)) }
        return dir
    }

    @Test func folderOfJsonJsonlAndText() throws {
        let dir = try Self.folder([
            "b.jsonl": "{\"text\": \"second\"}\n\n{\"text\": \"third\"}\n",
            "a.json": "{\"text\": \"first\", \"timestamp\": \"2019\"}\n",
            "c.json": "[{\"text\": \"fourth\"}, {\"text\": \"fifth\"}]",
            "d.txt": "sixth",
            "notes.md": "ignored",
            ".hidden.json": "not json",
        ])
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(try RoutingInput.documents(in: dir) == ["first", "second", "third", "fourth", "fifth", "sixth"])
    }

    @Test func folderErrorsNameTheFile() throws {
        let empty = try Self.folder(["README.md": "x"])
        defer { try? FileManager.default.removeItem(at: empty) }
        #expect(throws: RoutingInput.InputError.self) { try RoutingInput.documents(in: empty) }
        let gz = try Self.folder(["data.json.gz": "x", "a.txt": "text"])
        defer { try? FileManager.default.removeItem(at: gz) }
        do { _ = try RoutingInput.documents(in: gz); Issue.record("read a compressed file") } catch {
            #expect("\(error)".contains("data.json.gz") && "\(error)".contains("decompress"))
        }
        let bad = try Self.folder(["a.jsonl": "{\"text\": \"ok\"}\n\n{\"text\": 3}\n"])
        defer { try? FileManager.default.removeItem(at: bad) }
        do { _ = try RoutingInput.documents(in: bad); Issue.record("accepted a non-string text") } catch {
            #expect("\(error)".contains("a.jsonl: line 3 has no \"text\" string field"))
        }
        #expect(throws: RoutingInput.InputError.self) { try RoutingInput.documents(in: empty.appendingPathComponent("missing")) }
    }
}
