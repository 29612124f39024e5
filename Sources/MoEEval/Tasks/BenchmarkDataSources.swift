import Foundation
import MoEData
import MoEJSON

/// Where benchmark data comes from, in lm-eval's order of places plus moe-eval's own folder:
/// a. `--data-dir` (the original release files); b. the Hugging Face Hub cache; c. the `datasets` Arrow
/// cache; then the bundled demo slice (only when evaluating the demo model); d. a download from the Hub
/// into the Hub cache (unless offline).
public struct BenchmarkDataSources: Sendable {
    public var dataDir: URL?
    /// nil: the Hub caches and downloads are not used (only `dataDir`).
    public var hub: HubEnvironment?
    /// A Hub-cache-layout folder shipped with the demo (assets/demo/hub), read after the user's caches.
    public var bundledHubCache: URL?
    public var progress: DownloadProgress?

    public init(dataDir: URL? = nil, hub: HubEnvironment? = nil, bundledHubCache: URL? = nil, progress: DownloadProgress? = nil) {
        self.dataDir = dataDir
        self.hub = hub
        self.bundledHubCache = bundledHubCache
        self.progress = progress
    }

    /// Only the original files under `dataDir`.
    public static func directory(_ dataDir: URL) -> BenchmarkDataSources { BenchmarkDataSources(dataDir: dataDir) }

    /// A split's file or rows, wherever they were found first; an error naming the dataset, the split and
    /// every place tried when none has it.
    func locate(_ original: TaskData.Split, hub split: HubDatasetSplit, task: String, purpose: String) throws -> TaskData.Source {
        do {
            return try find(original, hub: split, task: task, purpose: purpose)
        } catch let error as TaskDataError {
            throw error
        } catch {
            throw TaskDataError(description: "\(task): \(error)")
        }
    }

    private func find(_ original: TaskData.Split, hub split: HubDatasetSplit, task: String, purpose: String) throws -> TaskData.Source {
        var tried: [String] = []
        if let dataDir {
            for candidate in original.candidates where TaskData.exists(candidate, in: dataDir) {
                return try .file(
                    TaskData.locate(
                        TaskData.Split(candidates: [candidate], obtain: original.obtain), in: dataDir, task: task, purpose: purpose))
            }
            tried.append("--data-dir \(dataDir.appendingPathComponent(original.candidates[0]).path)")
        }
        if let hub {
            for revision in HubCache.revisions {
                if let files = try HubCache.locate(split, revision: revision, in: hub.hubCache) {
                    return try .table(files)
                }
            }
            if let files = try HubCache.locateInAnySnapshot(split, in: hub.hubCache) { return try .table(files) }
            tried.append(
                "Hub cache \(HubCache.repoFolder(split.repo, in: hub.hubCache).path) (\(HubCache.revisions.joined(separator: ", ")), any snapshot)"
            )
            if let files = try DatasetsArrowCache.locate(split, in: hub.datasetsCache) {
                return try .table(files)
            }
            tried.append("datasets cache \(DatasetsArrowCache.configFolder(split, in: hub.datasetsCache).path)")
        }
        if let bundledHubCache {
            for revision in HubCache.revisions {
                if let files = try HubCache.locate(split, revision: revision, in: bundledHubCache) { return try .table(files) }
            }
            tried.append("the demo's data \(HubCache.repoFolder(split.repo, in: bundledHubCache).path)")
        }
        if let hub {
            if hub.offline {
                tried.append("no download (HF_HUB_OFFLINE is set)")
            } else {
                if let files = try HubDownloader(environment: hub, progress: progress).download(split) { return try .table(files) }
                tried.append("\(hub.endpoint)/datasets/\(split.repo) (no files for this split)")
            }
        }
        throw TaskDataError(
            description: "\(task): no \(purpose) data for \(split); tried \(tried.joined(separator: "; ")) (get it from \(original.obtain))"
        )
    }
}

extension TaskData {
    /// A split as found: an original file (read by the task's own reader), or rows of a Hub dataset file.
    enum Source {
        case file(URL)
        /// Each row as a JSON Lines record, so the task decodes it as it decodes the `datasets` JSON export.
        case rows([Line], origin: String)

        static func table(_ files: [URL]) throws -> Source {
            var lines: [Line] = []
            for file in files {
                let table: DataTable
                do {
                    table = try DataFile.read(file)
                } catch {
                    throw TaskDataError(description: "\(error)")
                }
                for row in table.rows { lines.append(Line(number: lines.count + 1, bytes: Array(JSONValue.object(row).serialized.utf8))) }
            }
            guard !lines.isEmpty else { throw TaskDataError(description: "\(files[0].path): no records") }
            return .rows(lines, origin: files.count == 1 ? files[0].path : files[0].deletingLastPathComponent().path)
        }

        /// The JSON Lines records and the name errors use for them.
        func records() throws -> (lines: [Line], origin: String) {
            switch self {
            case .file(let url): return (try TaskData.jsonLines(url), url.path)
            case .rows(let lines, let origin): return (lines, origin)
            }
        }
    }
}
