import Foundation
import MoEModels
import MoETensor
import Testing

@testable import MoECheckpoint

/// Each damaged checkpoint gives one line naming the file (and the tensor), never a crash.
@Suite struct BadInputTests {
    @Test func missingMetadata() throws {
        let (copy, folder) = try temporaryCopy(of: "dcp_tt_v02")
        defer { cleanUp(folder) }
        try FileManager.default.removeItem(at: copy.appendingPathComponent(".metadata"))
        expectError([copy.appendingPathComponent(".metadata").path, "missing"]) { _ = try openWeightSource(at: copy) }
        expectError([".metadata", "missing"]) { _ = try DCPCheckpoint(directory: copy) }
    }

    @Test func truncatedDistcp() throws {
        let (copy, folder) = try temporaryCopy(of: "dcp_tt_v02")
        defer { cleanUp(folder) }
        let file = copy.appendingPathComponent("__0_0.distcp")
        let size = try readBytes(file).count
        let handle = try FileHandle(forWritingTo: file)
        try handle.truncate(atOffset: UInt64(size / 2))
        try handle.close()
        expectError(["__0_0.distcp", "tensor '", "past the end of the file", "truncated"]) { _ = try openWeightSource(at: copy) }
    }

    @Test func missingDistcpFile() throws {
        let (copy, folder) = try temporaryCopy(of: "dcp_sharded")
        defer { cleanUp(folder) }
        try FileManager.default.removeItem(at: copy.appendingPathComponent("__1_0.distcp"))
        expectError(["__1_0.distcp", "cannot open"]) { _ = try DCPCheckpoint(directory: copy) }
    }

    /// `.metadata` files altered with torch's own Metadata objects by the fixture generator.
    @Test func damagedMetadata() throws {
        let cases = Fixtures.section("bad_metadata")
        #expect(cases.count == 7)
        for (file, value) in cases {
            let spec = try #require(value as? [String: Any])
            let base = try #require(spec["base"] as? String)
            let what = try #require(spec["what"] as? String)
            let (copy, folder) = try temporaryCopy(of: base)
            defer { cleanUp(folder) }
            let metadata = copy.appendingPathComponent(".metadata")
            try FileManager.default.removeItem(at: metadata)
            try FileManager.default.copyItem(at: Fixtures.url("bad_metadata/" + file), to: metadata)
            var fragments = [what, copy.path]
            if let tensor = spec["tensor"] as? String { fragments.append("tensor '\(tensor)'") }
            expectError(fragments) { _ = try DCPCheckpoint(directory: copy) }
        }
    }

    @Test func malformedZipInsideDistcp() throws {
        let (copy, folder) = try temporaryCopy(of: "dcp_dtypes")
        defer { cleanUp(folder) }
        let storage = Fixtures.section("dcp", "dcp_dtypes", "storage")["f32"] as? [[String: Any]] ?? []
        let chunk = try #require(storage.first)
        let offset = try #require(chunk["offset"] as? Int), length = try #require(chunk["length"] as? Int)
        let url = copy.appendingPathComponent("__0_0.distcp")
        var bytes = try readBytes(url)
        // Wipe the archive's end-of-central-directory record.
        for i in (offset + length - 22)..<(offset + length) { bytes[i] = 0 }
        try Data(bytes).write(to: url)
        let checkpoint = try DCPCheckpoint(directory: copy)
        expectError(["__0_0.distcp", "tensor 'f32'", "malformed zip"]) { _ = try checkpoint.loadRaw("f32") }
        // Other tensors in the same file still load.
        expectMatches(try checkpoint.loadRaw("i64"), Fixtures.tensors("dcp_dtypes")["i64"], "i64")
    }

    @Test func chunkDisagreeingWithMetadata() throws {
        // Swap the archives of two same-sized tensors of different dtypes: the stored dtype disagrees.
        let (copy, folder) = try temporaryCopy(of: "dcp_dtypes")
        defer { cleanUp(folder) }
        let storage = Fixtures.section("dcp", "dcp_dtypes", "storage")
        let f32 = try #require((storage["f32"] as? [[String: Any]])?.first)
        let i32 = try #require((storage["i32"] as? [[String: Any]])?.first)
        let url = copy.appendingPathComponent("__0_0.distcp")
        var bytes = try readBytes(url)
        let (a, b) = (f32["offset"] as! Int, i32["offset"] as! Int)
        let (la, lb) = (f32["length"] as! Int, i32["length"] as! Int)
        // Put i32's archive where f32's was (i32's archive is not longer, so the f32 slice still holds it).
        try #require(lb <= la)
        bytes.replaceSubrange(a..<(a + lb), with: Array(bytes[b..<(b + lb)]))
        try Data(bytes).write(to: url)
        let checkpoint = try DCPCheckpoint(directory: copy)
        expectError(["tensor 'f32'", "__0_0.distcp", "stored as int32", "says float32"]) { _ = try checkpoint.loadRaw("f32") }
    }

    @Test func unknownTensorAndUnknownPath() throws {
        let source = try openWeightSource(at: Fixtures.url("dcp_tt_v02"))
        expectError(["'nope.weight'", "not in the checkpoint", "dcp_tt_v02"]) { _ = try source.load("nope.weight") }
        expectError(["/no/such/place", "no such file"]) { _ = try openWeightSource(at: URL(fileURLWithPath: "/no/such/place")) }
        let folder = try makeTemporaryFolder()
        defer { cleanUp(folder) }
        expectError([folder.path, "no checkpoint found"]) { _ = try openWeightSource(at: folder) }
    }

    @Test func generalKeysAreNotAModel() throws {
        // dcp_dtypes holds arbitrary names: readable as raw tensors, refused as a DeepSeek-V3 model.
        expectError(["unrecognised DeepSeek-V3 TorchTitan key", "f32", "dcp_dtypes"]) {
            _ = try openWeightSource(at: Fixtures.url("dcp_dtypes"))
        }
    }
}
