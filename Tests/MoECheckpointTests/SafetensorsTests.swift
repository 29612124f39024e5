import Foundation
import MoETensor
import Testing

@testable import MoECheckpoint

@Suite struct SafetensorsTests {
    @Test func everyDtypeWrittenByTheSafetensorsLibrary() throws {
        let file = try SafetensorsFile(url: Fixtures.url("st_dtypes.safetensors"))
        let expected = Fixtures.tensors("st_dtypes.safetensors")
        #expect(Set(file.names) == Set(expected.keys))
        for (name, record) in expected {
            let tensor = try file.load(name)
            expectMatches(tensor, record, name)
            #expect(tensor.isMemoryMapped)
        }
        #expect(file.metadata == Fixtures.section("safetensors_metadata") as? [String: String])
    }

    @Test func writerLaysOutDataAsTheLibraryDoes() throws {
        let original = try SafetensorsFile(url: Fixtures.url("st_dtypes.safetensors"))
        let tensors = try original.names.map { try original.load($0) }
        let folder = try makeTemporaryFolder()
        defer { cleanUp(folder) }
        let written = folder.appendingPathComponent("copy.safetensors")
        try SafetensorsWriter.write(tensors, metadata: original.metadata, to: written)
        let copy = try SafetensorsFile(url: written)
        #expect(copy.metadata == original.metadata)
        for name in original.names {
            #expect(copy.tensorInfos[name] == original.tensorInfos[name], "\(name)")
            #expect(Array(try copy.load(name).bytes) == Array(try original.load(name).bytes), "\(name)")
            // Same position inside the data section as the Rust writer chose.
            let originalStart = original.ranges[name]!.lowerBound - (original.ranges.values.map(\.lowerBound).min() ?? 0)
            let copyStart = copy.ranges[name]!.lowerBound - (copy.ranges.values.map(\.lowerBound).min() ?? 0)
            #expect(originalStart == copyStart, "\(name) offset")
        }
        // Header padded so data starts 8-aligned; no temporary file left behind.
        let bytes = try readBytes(written)
        #expect((8 + Int(bytes[0]) + Int(bytes[1]) << 8) % 8 == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder.path) == ["copy.safetensors"])
    }

    @Test func shardedCheckpointThroughItsIndex() throws {
        let viaFolder = try SafetensorsCheckpoint(url: Fixtures.url("hf_sharded"))
        let viaIndex = try SafetensorsCheckpoint(url: Fixtures.url("hf_sharded/model.safetensors.index.json"))
        #expect(viaFolder.files.count == 2)
        #expect(viaFolder.rawTensorInfos == viaIndex.rawTensorInfos)
        let hfNames = Fixtures.section("hf_names", "hf_sharded")
        #expect(Set(viaFolder.rawTensorInfos.keys) == Set(hfNames.keys))
    }

    @Test func writtenIndexIsReadBack() throws {
        let folder = try makeTemporaryFolder()
        defer { cleanUp(folder) }
        let source = try SafetensorsFile(url: Fixtures.url("st_dtypes.safetensors"))
        let first = try ["f32", "bf16"].map { try source.load($0) }
        let second = try ["i64", "flags"].map { try source.load($0) }
        try SafetensorsWriter.write(first, to: folder.appendingPathComponent("a.safetensors"))
        try SafetensorsWriter.write(second, to: folder.appendingPathComponent("b.safetensors"))
        try SafetensorsWriter.writeIndex(
            weightMap: [
                "f32": "a.safetensors", "bf16": "a.safetensors",
                "i64": "b.safetensors", "flags": "b.safetensors",
            ],
            totalSize: 0, to: folder.appendingPathComponent("model.safetensors.index.json"))
        let checkpoint = try SafetensorsCheckpoint(url: folder)
        #expect(checkpoint.rawTensorInfos.count == 4)
        #expect(Array(try checkpoint.loadRaw("i64").bytes) == Array(try source.load("i64").bytes))
    }

    @Test func damagedFilesAreClearErrors() throws {
        let original = try readBytes(Fixtures.url("st_dtypes.safetensors"))
        let folder = try makeTemporaryFolder()
        defer { cleanUp(folder) }
        func attempt(_ bytes: [UInt8], _ fragments: [String]) throws {
            let url = folder.appendingPathComponent("bad.safetensors")
            try Data(bytes).write(to: url)
            expectError(fragments + ["bad.safetensors"]) { _ = try SafetensorsFile(url: url) }
        }
        try attempt(Array(original.prefix(5)), ["too short"])
        var huge = original
        huge[7] = 0x01
        try attempt(huge, ["header length"])
        try attempt(Array(original.dropLast(3)), ["outside", "data bytes"])
        var garbled = original
        garbled[9] = UInt8(ascii: "!")
        try attempt(garbled, ["not valid safetensors JSON"])
        let text = String(decoding: original, as: UTF8.self)
        let unknown = Array(text.replacingOccurrences(of: "\"F16\"", with: "\"X16\"").utf8)
        try attempt(unknown, ["unknown dtype X16", "'f16'"])
        let wrongSize = Array(
            text.replacingOccurrences(
                of: "\"shape\":[4],\"data_offsets\":[92,100]",
                with: "\"shape\":[5],\"data_offsets\":[92,100]"
            ).utf8)
        #expect(wrongSize != original)
        try attempt(wrongSize, ["'f16'", "needs 10"])
    }

    @Test func randomlyDamagedHeadersNeverCrash() throws {
        let original = try readBytes(Fixtures.url("st_dtypes.safetensors"))
        let folder = try makeTemporaryFolder()
        defer { cleanUp(folder) }
        var random = SplitMix64(state: 99)
        let url = folder.appendingPathComponent("fuzz.safetensors")
        for _ in 0..<300 {
            var bytes = original
            for _ in 0...Int.random(in: 0...2, using: &random) {
                let i = Int.random(in: 0..<min(bytes.count, 800), using: &random)
                bytes[i] = UInt8.random(in: 0...255, using: &random)
            }
            try Data(bytes).write(to: url)
            if let file = try? SafetensorsFile(url: url) {
                for name in file.names { _ = try? file.load(name) }
            }
        }
    }
}
