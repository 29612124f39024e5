import Foundation
import MoETensor
import Testing

@testable import MoECheckpoint

@Suite struct TorchZipTests {
    @Test func torchSaveFilesLoadAsTorchReportsThem() throws {
        let expected = Fixtures.tensors("torchsave")
        #expect(expected.count == 5)
        for (file, record) in expected {
            let tensor = try TorchSaveFile(url: Fixtures.url("torchsave/" + file)).tensor()
            expectMatches(tensor, record, file)
        }
    }

    @Test func contiguousTensorsAreViewsAndStridedOnesCopies() throws {
        // A slice at storage offset 3 is still contiguous: a view into the mapped file.
        let slice = try TorchSaveFile(url: Fixtures.url("torchsave/bf16_offset.pt")).tensor()
        #expect(slice.isMemoryMapped)
        let transposed = try TorchSaveFile(url: Fixtures.url("torchsave/transposed.pt")).tensor()
        #expect(!transposed.isMemoryMapped)
    }

    @Test func archiveLayoutIsFoundFromItsEntries() throws {
        let file = try TorchSaveFile(url: Fixtures.url("torchsave/f32.pt"))
        #expect(file.archive.root == "f32")
        #expect(file.archive.entries.keys.contains("f32/data/0"))
        let zip64 = try TorchSaveFile(url: Fixtures.url("torchsave/f32_zip64.pt"))
        #expect(zip64.archive.root == "f32")
    }

    @Test func nonTensorValuesAreData() throws {
        let value = try TorchSaveFile(url: Fixtures.url("torchsave/int_value.pt")).value()
        #expect(value.intValue == Fixtures.section("torchsave")["int_value.pt"] as? Int)
        expectError(["does not hold a tensor", "int_value.pt"]) {
            _ = try TorchSaveFile(url: Fixtures.url("torchsave/int_value.pt")).tensor()
        }
    }

    @Test func unknownStorageTypeIsNamed() throws {
        let unknown = Fixtures.section("torchsave", "unknown_dtype")
        #expect(!unknown.isEmpty)
        for (file, storage) in unknown {
            expectError(["unknown dtype", storage as? String ?? "?", file]) {
                _ = try TorchSaveFile(url: Fixtures.url("torchsave/" + file)).tensor()
            }
        }
    }

    @Test func malformedArchivesAreErrors() throws {
        let original = try readBytes(Fixtures.url("torchsave/f32.pt"))
        func load(_ bytes: [UInt8]) throws {
            try bytes.withUnsafeBytes { raw in
                _ = try TorchArchive(raw, source: "blob.pt").tensor(name: "w", owner: HeapBuffer(byteCount: 0))
            }
        }
        expectError(["malformed zip", "blob.pt"]) { try load(Array(original.prefix(10))) }
        expectError(["malformed zip", "end-of-central-directory"]) { try load(Array(original.dropLast(30))) }
        // Central directory offset pointing past the end.
        var bad = original
        let eocd = bad.count - 22
        bad[eocd + 16] = 0xFF; bad[eocd + 17] = 0xFF; bad[eocd + 18] = 0xFF; bad[eocd + 19] = 0x7F
        expectError(["malformed zip", "central directory"]) { try load(bad) }
        // A stored entry marked as deflated.
        var compressed = original
        let directory = Int(compressed[eocd + 16]) | Int(compressed[eocd + 17]) << 8 | Int(compressed[eocd + 18]) << 16
        compressed[directory + 10] = 8
        expectError(["compressed"]) { try load(compressed) }
        // Every prefix fails cleanly.
        for length in stride(from: 0, to: original.count, by: 3) {
            #expect(throws: CheckpointError.self) { try load(Array(original.prefix(length))) }
        }
    }

    @Test func randomlyDamagedArchivesNeverCrash() throws {
        let original = try readBytes(Fixtures.url("torchsave/bf16_offset.pt"))
        var random = SplitMix64(state: 7)
        var loaded = 0
        for _ in 0..<3000 {
            var bytes = original
            for _ in 0...Int.random(in: 0...3, using: &random) {
                let i = Int.random(in: 0..<bytes.count, using: &random)
                bytes[i] = UInt8.random(in: 0...255, using: &random)
            }
            let owner = try HeapBuffer(byteCount: 0)
            let ok = bytes.withUnsafeBytes { raw in
                (try? TorchArchive(raw, source: "fuzz").tensor(name: "w", owner: owner)) != nil
            }
            if ok { loaded += 1 }
        }
        #expect(loaded > 0)
    }
}
