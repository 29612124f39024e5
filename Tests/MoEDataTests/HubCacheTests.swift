import Foundation
import MoEData
import Testing

/// A scratch folder removed when the test ends.
final class Scratch {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("moe-data-\(UUID().uuidString)")
    init() throws { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) }
    deinit { try? FileManager.default.removeItem(at: url) }

    @discardableResult
    func write(_ path: String, _ text: String) throws -> URL {
        let file = url.appendingPathComponent(path)
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(text.utf8).write(to: file)
        return file
    }

    /// A snapshot entry as huggingface_hub writes it: the blob, a relative symlink to it, the ref.
    func cacheFile(repo: String, revision: String, commit: String, path: String, _ text: String?) throws {
        let folder = "datasets--" + repo.replacingOccurrences(of: "/", with: "--")
        try write("\(folder)/refs/\(revision)", commit)
        let blob = "blob\(abs(path.hashValue))"
        if let text { try write("\(folder)/blobs/\(blob)", text) }
        let link = url.appendingPathComponent("\(folder)/snapshots/\(commit)/\(path)")
        try FileManager.default.createDirectory(at: link.deletingLastPathComponent(), withIntermediateDirectories: true)
        let depth = path.split(separator: "/").count + 1
        try FileManager.default.createSymbolicLink(
            atPath: link.path,
            withDestinationPath: String(repeating: "../", count: depth) + "blobs/\(blob)")
    }
}

@Suite struct HubCacheTests {
    @Test func splitFilesFollowTheHubsLayouts() {
        let arc = HubDatasetSplit(repo: "allenai/ai2_arc", config: "ARC-Easy", split: "test")
        #expect(
            arc.files(among: [
                "README.md", "ARC-Easy/test-00000-of-00001.parquet", "ARC-Easy/train-00000-of-00001.parquet",
                "ARC-Challenge/test-00000-of-00001.parquet",
            ]) == ["ARC-Easy/test-00000-of-00001.parquet"])
        // The parquet conversion: CONFIG/SPLIT/NNNN.parquet, in shard order; a partial conversion.
        #expect(
            arc.files(among: ["ARC-Easy/test/0001.parquet", "ARC-Easy/test/0000.parquet", "ARC-Easy/train/0000.parquet"])
                == ["ARC-Easy/test/0000.parquet", "ARC-Easy/test/0001.parquet"])
        #expect(arc.files(among: ["ARC-Easy/partial-test/0000.parquet"]) == ["ARC-Easy/partial-test/0000.parquet"])
        let hellaswag = HubDatasetSplit(repo: "Rowan/hellaswag", split: "validation")
        #expect(hellaswag.files(among: ["default/validation/0000.parquet"]) == ["default/validation/0000.parquet"])
        #expect(
            hellaswag.files(among: ["data/validation-00000-of-00001.parquet", "data/train-00000-of-00001.parquet"])
                == ["data/validation-00000-of-00001.parquet"])
        #expect(hellaswag.files(among: ["validation.jsonl", "hellaswag.py"]) == ["validation.jsonl"])
        // A configured dataset never takes a configless repo's top-level files; unknown kinds are ignored.
        #expect(arc.files(among: ["data/test-00000-of-00001.parquet", "ARC-Easy/test.csv"]).isEmpty)
        #expect(hellaswag.files(among: ["data/validation-0.txt", ".cache/validation.jsonl"]).isEmpty)
    }

    @Test func environmentVariablesAsHuggingfaceHubReadsThem() throws {
        let scratch = try Scratch()
        try scratch.write("home/token", "hf_fromfile\n")
        let home = scratch.url.appendingPathComponent("home").path
        let plain = HubEnvironment.from(["HF_HOME": home])
        #expect(plain.hubCache.path == home + "/hub")
        #expect(plain.datasetsCache.path == home + "/datasets")
        #expect(plain.endpoint == "https://huggingface.co")
        #expect(plain.token == "hf_fromfile")
        #expect(!plain.offline)
        let set = HubEnvironment.from([
            "HF_HOME": home, "HF_HUB_CACHE": "/c/hub", "HF_DATASETS_CACHE": "/c/ds",
            "HF_ENDPOINT": "http://127.0.0.1:9/", "HF_TOKEN": "hf_env", "HF_HUB_OFFLINE": "1",
        ])
        #expect(set.hubCache.path == "/c/hub" && set.datasetsCache.path == "/c/ds")
        #expect(set.endpoint == "http://127.0.0.1:9" && set.token == "hf_env" && set.offline)
        #expect(HubEnvironment.from(["XDG_CACHE_HOME": "/x"]).hubCache.path == "/x/huggingface/hub")
        #expect(HubEnvironment.from(["HF_HOME": home, "HF_HUB_OFFLINE": "0"]).offline == false)
        #expect(HubEnvironment.from(["HF_HOME": home, "HF_DATASETS_OFFLINE": "true"]).offline)
    }

    @Test func findsMainThenTheParquetConversion() throws {
        let scratch = try Scratch()
        let split = HubDatasetSplit(repo: "cais/mmlu", config: "anatomy", split: "test")
        #expect(try HubCache.locate(split, revision: "main", in: scratch.url) == nil)
        try scratch.cacheFile(
            repo: "cais/mmlu", revision: "refs/convert/parquet", commit: "c0ffee",
            path: "anatomy/test/0000.parquet", "x")
        #expect(try HubCache.locate(split, revision: "main", in: scratch.url) == nil)
        let converted = try #require(try HubCache.locate(split, revision: "refs/convert/parquet", in: scratch.url))
        #expect(converted.map(\.path) == [scratch.url.path + "/datasets--cais--mmlu/snapshots/c0ffee/anatomy/test/0000.parquet"])
        // huggingface_hub keeps the conversion's ref under refs/refs/convert/parquet.
        #expect(FileManager.default.fileExists(atPath: scratch.url.path + "/datasets--cais--mmlu/refs/refs/convert/parquet"))
        try scratch.cacheFile(repo: "cais/mmlu", revision: "main", commit: "abc123", path: "anatomy/test-00000-of-00001.parquet", "y")
        #expect(try HubCache.locate(split, revision: "main", in: scratch.url)?.first?.lastPathComponent == "test-00000-of-00001.parquet")
    }

    @Test func snapshotsWithoutARefAsDatasetsLeavesThem() throws {
        let scratch = try Scratch()
        let split = HubDatasetSplit(repo: "allenai/ai2_arc", config: "ARC-Easy", split: "test")
        try scratch.cacheFile(repo: "allenai/ai2_arc", revision: "main", commit: "aaaa", path: "ARC-Easy/test-00000-of-00001.parquet", "x")
        try FileManager.default.removeItem(at: scratch.url.appendingPathComponent("datasets--allenai--ai2_arc/refs"))
        #expect(try HubCache.locate(split, revision: "main", in: scratch.url) == nil)
        let found = try #require(try HubCache.locateInAnySnapshot(split, in: scratch.url))
        #expect(found.map(\.lastPathComponent) == ["test-00000-of-00001.parquet"])
        #expect(
            try HubCache.locateInAnySnapshot(
                HubDatasetSplit(repo: "allenai/ai2_arc", config: "ARC-Challenge", split: "test"), in: scratch.url) == nil)
    }

    @Test func badCacheEntriesAreNamed() throws {
        let scratch = try Scratch()
        let split = HubDatasetSplit(repo: "Rowan/hellaswag", split: "validation")
        try scratch.cacheFile(repo: "Rowan/hellaswag", revision: "main", commit: "abc", path: "data/validation.jsonl", nil)
        #expect { try HubCache.locate(split, revision: "main", in: scratch.url) } throws: { error in
            let text = "\(error)"
            return text.contains("snapshots/abc/data/validation.jsonl: bad Hub cache entry: its blob") && !text.contains("\n")
        }
        let ref = try scratch.write("datasets--Rowan--hellaswag/refs/main", "../../../etc")
        #expect { try HubCache.locate(split, revision: "main", in: scratch.url) } throws: { error in
            "\(error)" == "\(ref.path): bad Hub cache ref: '../../../etc' is not a commit hash"
        }
        try scratch.write("datasets--Rowan--hellaswag/refs/main", String(repeating: "a", count: 300))
        #expect { try HubCache.locate(split, revision: "main", in: scratch.url) } throws: { "\($0)".contains("300 bytes") }
    }

    @Test func datasetsArrowCacheLayout() throws {
        let scratch = try Scratch()
        let split = HubDatasetSplit(repo: "allenai/winogrande", config: "winogrande_xl", split: "validation")
        #expect(try DatasetsArrowCache.locate(split, in: scratch.url) == nil)
        try scratch.write("allenai___winogrande/winogrande_xl/0.0.0/aaaa.incomplete/winogrande-validation.arrow", "")
        try scratch.write("allenai___winogrande/winogrande_xl/0.0.0/bbbb/winogrande-train.arrow", "")
        #expect(try DatasetsArrowCache.locate(split, in: scratch.url) == nil)
        try scratch.write("allenai___winogrande/winogrande_xl/0.0.0/cccc/winogrande-validation-00001-of-00002.arrow", "")
        try scratch.write("allenai___winogrande/winogrande_xl/0.0.0/cccc/winogrande-validation-00000-of-00002.arrow", "")
        try scratch.write("allenai___winogrande/winogrande_xl/0.0.0/cccc/winogrande-validation_extra.arrow", "")
        let files = try #require(try DatasetsArrowCache.locate(split, in: scratch.url))
        #expect(
            files.map(\.lastPathComponent) == ["winogrande-validation-00000-of-00002.arrow", "winogrande-validation-00001-of-00002.arrow"])
        let glue = HubDatasetSplit(repo: "aps/SuperGLUE", config: "boolq", split: "test")
        try scratch.write("aps___super_glue/boolq/1.0.0/dddd/super_glue-test.arrow", "")
        #expect(try DatasetsArrowCache.locate(glue, in: scratch.url)?.first?.lastPathComponent == "super_glue-test.arrow")
    }
}
