import Foundation
import MoETensor
import Testing

@testable import MoECheckpoint

/// Hand-made hostile checkpoint files (issue 16): each used to crash, hang, allocate without bound or load
/// the wrong bytes; each must now give one line naming the file and what is wrong.
@Suite struct HardeningTests {
    // MARK: pickle expansion budget

    /// A 17-level tree of shared tuples (262,143 values once expanded) handed to BINPERSID ten times:
    /// every expansion fits the budget alone, together they are 2.6 million values from ~120 bytes.
    @Test func persistentIdsShareOneExpansionBudget() throws {
        var p = PickleWriter()
        p.emptyTuple()
        p.put(0)
        p.op(0x30) // POP
        for level in 1...17 {
            p.get(UInt8(level - 1))
            p.op(0x32) // DUP
            p.op(0x86) // TUPLE2
            p.put(UInt8(level))
            p.op(0x30)
        }
        for _ in 0..<10 {
            p.get(17)
            p.op(0x51) // BINPERSID
            p.op(0x30)
        }
        p.none()
        p.stop()
        expectError(["crafted.pkl", "expands to too many values"]) {
            _ = try Unpickler.load(p.bytes, source: "crafted.pkl")
        }
    }

    // MARK: DCP metadata arithmetic

    @Test func storageLengthsThatOverflowWhenSummedAreErrors() throws {
        var metadata = DCPMetadataWriter()
        metadata.byteEntries = ["optimizer.state"]
        metadata.storage = [
            .init(fqn: "optimizer.state", offsets: nil, offset: 0, length: Int.max - 10),
            .init(fqn: "optimizer.state", offsets: [1], offset: 0, length: Int.max - 10),
        ]
        let folder = try metadata.writeCheckpoint()
        defer { cleanUp(folder) }
        expectError([folder.appendingPathComponent(".metadata").path, "optimizer.state", "overflow"]) {
            _ = try DCPCheckpoint(directory: folder)
        }
    }

    @Test func negativeStorageOffsetOrLengthIsAnError() throws {
        var metadata = DCPMetadataWriter()
        metadata.byteEntries = ["optimizer.state"]
        metadata.storage = [.init(fqn: "optimizer.state", offsets: nil, offset: 0, length: -5)]
        let folder = try metadata.writeCheckpoint()
        defer { cleanUp(folder) }
        expectError([".metadata", "optimizer.state", "negative"]) { _ = try DCPCheckpoint(directory: folder) }
    }

    @Test func tensorShapeWhoseProductOverflowsIsAnError() throws {
        let huge = 1 << 40
        var metadata = DCPMetadataWriter()
        metadata.tensors = [.init(fqn: "w", size: [huge, huge], chunks: [([0, 0], [huge, huge])])]
        metadata.storage = [.init(fqn: "w", offsets: [0, 0], offset: 0, length: 0)]
        let folder = try metadata.writeCheckpoint()
        defer { cleanUp(folder) }
        expectError([".metadata", "tensor 'w'", "too large"]) { _ = try DCPCheckpoint(directory: folder) }
    }

    @Test func chunkSizesWhoseSumOverflowsAreErrors() throws {
        // Two overlapping chunks of 2^62 elements along a 2^63−1 axis: each inside the tensor, their
        // element counts summed past Int.max.
        let quarter = 1 << 62
        var metadata = DCPMetadataWriter()
        metadata.tensors = [
            .init(
                fqn: "w", dtype: "int8", size: [Int.max],
                chunks: [([0], [quarter]), ([1], [quarter])])
        ]
        metadata.storage = [
            .init(fqn: "w", offsets: [0], offset: 0, length: 0),
            .init(fqn: "w", offsets: [1], offset: 0, length: 0),
        ]
        let folder = try metadata.writeCheckpoint()
        defer { cleanUp(folder) }
        let message = errorMessage { _ = try DCPCheckpoint(directory: folder) }
        #expect(message?.contains("tensor 'w'") == true, "\(message ?? "no error")")
    }

    /// 2,000 row slices (a layout FSDP writes): accepted, and an overlap among them still found, without
    /// comparing every pair.
    @Test func manyChunksAreCheckedForOverlapWithoutComparingEveryPair() throws {
        func checkpoint(overlapAt overlap: Int?) throws -> URL {
            var metadata = DCPMetadataWriter()
            let rows = 2000
            let chunks: [(offsets: [Int], sizes: [Int])] = (0..<rows).map { row in
                let start = row == overlap ? row - 1 : row
                return (offsets: [start, 0], sizes: [1, 2])
            }
            metadata.tensors = [.init(fqn: "w", size: [rows, 2], chunks: chunks)]
            metadata.storage = chunks.map { DCPMetadataWriter.StorageEntry(fqn: "w", offsets: $0.offsets, offset: 0, length: 0) }
            return try metadata.writeCheckpoint()
        }
        let good = try checkpoint(overlapAt: nil)
        defer { cleanUp(good) }
        #expect(try DCPCheckpoint(directory: good).rawTensorInfos["w"]?.shape == [2000, 2])
        let bad = try checkpoint(overlapAt: 1500)
        defer { cleanUp(bad) }
        expectError([".metadata", "tensor 'w'"]) { _ = try DCPCheckpoint(directory: bad) }
    }

    /// The in-memory entry point fuzz targets call runs every metadata check (shapes, coverage, sums).
    @Test func randomlyDamagedMetadataThroughEveryCheckNeverCrashes() throws {
        var random = SplitMix64(state: 16)
        var accepted = 0
        for fixture in ["dcp_sharded", "dcp_dtypes", "dcp_tt_v02"] {
            let original = try readBytes(Fixtures.url(fixture + "/.metadata"))
            for _ in 0..<400 {
                var bytes = original
                for _ in 0...Int.random(in: 0...3, using: &random) {
                    bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
                }
                let ok = bytes.withUnsafeBytes { (try? DCPCheckpoint.readMetadata($0, source: "m")) != nil }
                if ok { accepted += 1 }
            }
        }
        #expect(accepted > 0)
    }

    @Test func randomlyDamagedSafetensorsHeadersThroughTheInMemoryParserNeverCrash() throws {
        let original = try readBytes(Fixtures.url("st_dtypes.safetensors"))
        var random = SplitMix64(state: 61)
        for _ in 0..<800 {
            var bytes = original
            for _ in 0...Int.random(in: 0...2, using: &random) {
                bytes[Int.random(in: 0..<min(bytes.count, 600), using: &random)] = UInt8.random(in: 0...255, using: &random)
            }
            _ = bytes.withUnsafeBytes { try? SafetensorsHeader.parse(fileBytes: $0, source: "s") }
        }
    }

    // MARK: allocation before validation

    /// `torch.zeros(1).expand(2**58)`: one stored element, 2^60 bytes once materialized.
    static func expandedArchive(totalLength: Int? = nil) -> [UInt8] {
        var zip = ZipWriter()
        zip.add("archive/data.pkl", tensorPickle(storageElements: 1, shape: [1 << 58], strides: [0]))
        zip.add("archive/data/0", float32Bytes([7]))
        return zip.bytes(totalLength: totalLength)
    }

    @Test func zeroStrideTensorIsRefusedBeforeAllocating() throws {
        expectError(["crafted.pt", "tensor 'w'", "storage holds"]) {
            try Self.expandedArchive().withUnsafeBytes { raw in
                _ = try TorchArchive(raw, source: "crafted.pt").tensor(name: "w", owner: HeapBuffer(byteCount: 0))
            }
        }
    }

    @Test func zeroStrideChunkInDistcpIsCheckedAgainstMetadataFirst() throws {
        let (copy, folder) = try temporaryCopy(of: "dcp_dtypes")
        defer { cleanUp(folder) }
        let storage = Fixtures.section("dcp", "dcp_dtypes", "storage")["f32"] as? [[String: Any]] ?? []
        let chunk = try #require(storage.first)
        let offset = try #require(chunk["offset"] as? Int), length = try #require(chunk["length"] as? Int)
        let crafted = Self.expandedArchive(totalLength: length)
        try #require(crafted.count == length)
        let url = copy.appendingPathComponent("__0_0.distcp")
        var bytes = try readBytes(url)
        bytes.replaceSubrange(offset..<(offset + length), with: crafted)
        try Data(bytes).write(to: url)
        let checkpoint = try DCPCheckpoint(directory: copy)
        expectError(["__0_0.distcp", "tensor 'f32'", ".metadata says [3, 4]"]) { _ = try checkpoint.loadRaw("f32") }
    }

    // MARK: zip entries cross-checked

    static func twoStorageArchive(_ change: (inout ZipWriter) -> Void = { _ in }) -> [UInt8] {
        var zip = ZipWriter()
        zip.add("r/data.pkl", tensorPickle(storageElements: 2, shape: [2], strides: [1]))
        zip.add("r/data/0", float32Bytes([1, 2]))
        zip.add("r/data/1", float32Bytes([3, 4]))
        change(&zip)
        return zip.bytes()
    }

    static func loadValues(_ archive: [UInt8]) throws -> [UInt8] {
        try archive.withUnsafeBytes { raw in
            Array(try TorchArchive(raw, source: "crafted.pt").tensor(name: "w", owner: HeapBuffer(byteCount: 0)).bytes)
        }
    }

    @Test func honestCraftedArchiveLoads() throws {
        #expect(try Self.loadValues(Self.twoStorageArchive()) == float32Bytes([1, 2]))
    }

    @Test func centralDirectoryPointingAtAnotherEntrysHeaderIsAnError() throws {
        let archive = Self.twoStorageArchive { $0.pointLocalHeader = [1: 2] }
        expectError(["crafted.pt", "malformed zip", "r/data/0", "local header"]) { _ = try Self.loadValues(archive) }
    }

    @Test func localHeaderNameDisagreeingIsAnError() throws {
        let archive = Self.twoStorageArchive { $0.entries[1].localName = "r/data/9" }
        expectError(["crafted.pt", "r/data/0", "local header", "r/data/9"]) { _ = try Self.loadValues(archive) }
    }

    @Test func localHeaderSizeDisagreeingIsAnError() throws {
        let archive = Self.twoStorageArchive { $0.entries[1].localSize = 4 }
        expectError(["crafted.pt", "r/data/0", "local header", "size"]) { _ = try Self.loadValues(archive) }
    }

    @Test func storageWhoseBytesDoNotMatchItsCRCIsAnError() throws {
        let archive = Self.twoStorageArchive { $0.entries[1].crc = 0x1234_5678 }
        expectError(["crafted.pt", "r/data/0", "CRC-32"]) { _ = try Self.loadValues(archive) }
    }

    @Test func pickleWhoseBytesDoNotMatchItsCRCIsAnError() throws {
        let archive = Self.twoStorageArchive { $0.entries[0].crc = 0x1234_5678 }
        expectError(["crafted.pt", "r/data.pkl", "CRC-32"]) { _ = try Self.loadValues(archive) }
    }

    // MARK: safetensors headers

    static func safetensors(header: String, data: [UInt8]) throws -> (file: URL, folder: URL) {
        let folder = try makeTemporaryFolder()
        let file = folder.appendingPathComponent("crafted.safetensors")
        let json = Array(header.utf8)
        try Data(littleEndian(UInt64(json.count), width: 8) + json + data).write(to: file)
        return (file, folder)
    }

    @Test(arguments: [
        (
            #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            ["tensor 'a'", "more than once"]
        ),
        (#"{"a":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,8]}}"#, ["tensor 'a'", "too large"]),
        (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4611686018427387904]}}"#, ["tensor 'a'", "outside"]),
        (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#, ["tensor 'a'", "data_offsets"]),
        (#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, ["tensor 'a'", "negative"]),
        (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}}"#, ["tensor 'a'", "needs 4"]),
        (
            #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}"#,
            ["overlap"]
        ),
        (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4.5]}}"#, ["tensor 'a'", "data_offsets"]),
        (#"{"a":{"dtype":"F32","shape":"x","data_offsets":[0,4]}}"#, ["tensor 'a'", "shape"]),
        (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"__metadata__":{"k":1}}"#, ["__metadata__"]),
        (#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#, ["header"]),
    ])
    func malformedSafetensorsHeaders(header: String, fragments: [String]) throws {
        let (file, folder) = try Self.safetensors(header: header, data: [UInt8](repeating: 0, count: 8))
        defer { cleanUp(folder) }
        expectError([file.path] + fragments) { _ = try SafetensorsFile(url: file) }
    }

    @Test func safetensorsHeaderLengthPastTheFileIsAnError() throws {
        let folder = try makeTemporaryFolder()
        defer { cleanUp(folder) }
        let file = folder.appendingPathComponent("crafted.safetensors")
        try Data(littleEndian(UInt64(1) << 63, width: 8) + Array("{}".utf8)).write(to: file)
        expectError([file.path, "header length"]) { _ = try SafetensorsFile(url: file) }
    }
}
