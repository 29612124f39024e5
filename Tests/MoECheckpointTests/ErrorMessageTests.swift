import Foundation
import Testing

@testable import MoECheckpoint

/// Error lines show values as the file holds them, never Swift's `Optional(…)` wrapper.
@Suite struct ErrorMessageTests {
    @Test func dcpMetadataOfTheWrongTypeShowsTheValue() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("dcp-message-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        // A pickle (protocol 2) of the integer 5 instead of a Metadata object.
        try Data([0x80, 0x02, 0x4B, 0x05, 0x2E]).write(to: dir.appendingPathComponent(".metadata"))
        do {
            _ = try DCPCheckpoint(directory: dir)
            Issue.record("opened")
        } catch {
            let message = String(describing: error)
            #expect(message.contains("the pickled root is not a torch.distributed.checkpoint.metadata.Metadata (found 5)"), "\(message)")
            #expect(!message.contains("Optional("), "\(message)")
        }
    }
}
