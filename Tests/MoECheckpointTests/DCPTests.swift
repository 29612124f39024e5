import Foundation
import MoEModels
import MoETensor
import Testing

@testable import MoECheckpoint

@Suite struct DCPTests {
    /// Entries as torch's FileSystemReader listed them.
    private func expectEntriesMatchTorch(_ checkpoint: DCPCheckpoint, _ fixture: String) {
        let described = Fixtures.section("dcp", fixture)
        let entries = described["entries"] as? [String: [String: Any]] ?? [:]
        #expect(!entries.isEmpty)
        #expect(Set(checkpoint.allEntries.map(\.name)) == Set(entries.keys), "\(fixture) entry names")
        for entry in checkpoint.allEntries {
            guard let torch = entries[entry.name] else { continue }
            switch entry.kind {
            case .bytes:
                #expect(torch["kind"] as? String == "bytes", "\(entry.name)")
            case .tensor(let dtype, let shape):
                #expect(torch["kind"] as? String == "tensor", "\(entry.name)")
                #expect(torch["dtype"] as? String == dtype, "\(entry.name)")
                #expect(torch["shape"] as? [Int] == shape, "\(entry.name)")
                #expect(torch["chunks"] as? Int == entry.chunkCount, "\(entry.name)")
            }
            let role: CheckpointEntry.Role
            if entry.name.hasPrefix("optimizer.") {
                role = .optimizer
            } else if entry.name.hasPrefix("lr_scheduler.") {
                role = .lrScheduler
            } else if entry.name.hasPrefix("dataloader.") {
                role = .dataloader
            } else if entry.name.hasPrefix("train_state.") {
                role = .trainState
            } else {
                role = torch["kind"] as? String == "tensor" ? .model : .other
            }
            #expect(entry.role == role, "\(entry.name)")
        }
        #expect(checkpoint.fileNames == described["files"] as? [String])
        #expect(checkpoint.version == described["version"] as? String)
        // Chunk placement as torch recorded it in storage_data.
        let storage = described["storage"] as? [String: [[String: Any]]] ?? [:]
        for name in checkpoint.rawTensorInfos.keys {
            let chunks = checkpoint.chunks(of: name) ?? []
            let torchChunks = storage[name] ?? []
            #expect(chunks.count == torchChunks.count, "\(name) chunk count")
            for chunk in chunks {
                let match = torchChunks.first { ($0["offsets"] as? [Int]) == chunk.offsets }
                #expect(match?["file"] as? String == chunk.file, "\(name) \(chunk.offsets) file")
                #expect(match?["offset"] as? Int == chunk.byteOffset, "\(name) \(chunk.offsets) offset")
                #expect(match?["length"] as? Int == chunk.byteLength, "\(name) \(chunk.offsets) length")
            }
        }
    }

    @Test func singleProcessSaveOfEveryDtype() throws {
        let checkpoint = try DCPCheckpoint(directory: Fixtures.url("dcp_dtypes"))
        expectEntriesMatchTorch(checkpoint, "dcp_dtypes")
        let expected = Fixtures.tensors("dcp_dtypes")
        #expect(Set(checkpoint.rawTensorInfos.keys) == Set(expected.keys))
        for (name, record) in expected {
            expectMatches(try checkpoint.loadRaw(name), record, name)
        }
        #expect(try checkpoint.loadRaw("f32").isMemoryMapped)
        #expect(try !checkpoint.loadRaw("transposed").isMemoryMapped)
        #expect(checkpoint.description.hasPrefix("DCP checkpoint "))
        #expect(checkpoint.description.hasSuffix("(1 file)"))
        // Optimizer state is listed, never loadable as a model tensor.
        #expect(checkpoint.allEntries.contains { $0.name == "optimizer.state.f32.exp_avg" && $0.role == .optimizer })
        expectError(["optimizer.state.f32.exp_avg", "not in the checkpoint"]) {
            _ = try checkpoint.loadRaw("optimizer.state.f32.exp_avg")
        }
    }

    @Test func twoRankShardedSaveIsReassembled() throws {
        let checkpoint = try DCPCheckpoint(directory: Fixtures.url("dcp_sharded"))
        expectEntriesMatchTorch(checkpoint, "dcp_sharded")
        #expect(checkpoint.fileNames == ["__0_0.distcp", "__1_0.distcp"])
        let expected = Fixtures.tensors("dcp_sharded")
        #expect(Set(checkpoint.rawTensorInfos.keys) == Set(expected.keys))
        for (name, record) in expected {
            expectMatches(try checkpoint.loadRaw(name), record, name)
        }
        // The uneven split of one row leaves rank 1 a zero-size chunk.
        let row1 = try #require(checkpoint.chunks(of: "row1"))
        #expect(row1.map(\.sizes).sorted { $0[0] < $1[0] } == [[0, 4], [1, 4]])
        #expect(try checkpoint.loadRaw("row1").isMemoryMapped)
        #expect(try !checkpoint.loadRaw("rows5").isMemoryMapped)
        #expect(checkpoint.description.hasSuffix("(2 files)"))
    }

    @Test func torchTitanV02TrainingCheckpoint() throws {
        let source = try openWeightSource(at: Fixtures.url("dcp_tt_v02"))
        let naming = Fixtures.section("naming", "dcp_tt_v02")
        #expect(source.namingEra.rawValue == naming["era"] as? String)
        let expected = Fixtures.tensors("dcp_tt_v02")
        #expect(Set(source.tensorInfos.keys) == Set(expected.keys))
        for (name, record) in expected {
            expectMatches(try source.load(name), record, name)
            #expect(source.tensorInfos[name] == TensorInfo(dtype: record.dtype, shape: record.shape))
        }
        let roles = Set(source.entries.map(\.role))
        #expect(roles == [.model, .optimizer, .lrScheduler, .dataloader, .trainState])
        #expect(source.description.contains("dcp_tt_v02"))
        expectError(["layers.9.attention.wq.weight", "not in the checkpoint", "dcp_tt_v02"]) {
            _ = try source.load("layers.9.attention.wq.weight")
        }
    }

    @Test func torchTitanV03BFloat16Checkpoint() throws {
        let source = try openWeightSource(at: Fixtures.url("dcp_tt_v03"))
        #expect(source.namingEra.rawValue == Fixtures.section("naming", "dcp_tt_v03")["era"] as? String)
        let canonical = Fixtures.section("canonical", "dcp_tt_v03").compactMapValues { $0 as? String }
        let expected = Fixtures.tensors("dcp_tt_v03")
        #expect(canonical.count == expected.count)
        #expect(Set(source.tensorInfos.keys) == Set(canonical.values))
        for (raw, name) in canonical {
            let tensor = try source.load(name)
            #expect(tensor.name == name)
            expectMatches(tensor, expected[raw], "\(name) (\(raw))")
        }
        let styles = try #require((source as? NamedWeightSource)?.nameMap.styles)
        #expect(styles.allSatisfy { $0.era == .v0_3 })
        #expect(styles.count == 3)
    }

    @Test func latestStepFolderIsOpened() throws {
        let folder = try makeTemporaryFolder()
        defer { cleanUp(folder) }
        try FileManager.default.copyItem(at: Fixtures.url("dcp_tt_v02"), to: folder.appendingPathComponent("step-10"))
        try FileManager.default.copyItem(at: Fixtures.url("dcp_tt_v03"), to: folder.appendingPathComponent("step-200"))
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("step-300"), withIntermediateDirectories: true)
        let source = try openWeightSource(at: folder)
        #expect(source.description.contains("step-200"))
        #expect(source.namingEra == .v0_3)
    }

    @Test func chunkCoverageRules() throws {
        func chunk(_ offsets: [Int], _ sizes: [Int]) -> DCPCheckpoint.Chunk {
            DCPCheckpoint.Chunk(offsets: offsets, sizes: sizes, file: "f", byteOffset: 0, byteLength: 0)
        }
        try DCPCheckpoint.checkCoverage(
            shape: [4, 6], chunks: [chunk([0, 0], [4, 2]), chunk([0, 2], [4, 4]), chunk([4, 0], [0, 6])], what: "t")
        try DCPCheckpoint.checkCoverage(shape: [], chunks: [chunk([], [])], what: "t")
        try DCPCheckpoint.checkCoverage(shape: [0, 3], chunks: [], what: "t")
        expectError(["overlap"]) {
            try DCPCheckpoint.checkCoverage(shape: [4, 6], chunks: [chunk([0, 0], [4, 3]), chunk([0, 2], [4, 4])], what: "t")
        }
        expectError(["cover 16 of 24"]) { try DCPCheckpoint.checkCoverage(shape: [4, 6], chunks: [chunk([0, 0], [4, 4])], what: "t") }
        expectError(["outside"]) { try DCPCheckpoint.checkCoverage(shape: [4, 6], chunks: [chunk([0, 3], [4, 4])], what: "t") }
        expectError(["rank"]) { try DCPCheckpoint.checkCoverage(shape: [4, 6], chunks: [chunk([0], [4])], what: "t") }
    }
}
