import Foundation

/// One split of a Hugging Face Hub dataset, named as an lm-eval task file names it: `dataset_path`
/// (the repo), `dataset_name` (the config, nil when the file has none) and the split.
public struct HubDatasetSplit: Sendable, Hashable, CustomStringConvertible {
    public var repo: String
    public var config: String?
    public var split: String

    public init(repo: String, config: String? = nil, split: String) {
        self.repo = repo
        self.config = config
        self.split = split
    }

    /// The config as the Hub's parquet conversion and the `datasets` cache name it.
    public var configName: String { config ?? "default" }

    public var description: String { "\(repo)" + (config.map { " (\($0))" } ?? "") + " split \(split)" }

    /// Which files of a repo revision hold this split, as repo-relative paths in order; empty when none.
    ///
    /// The layouts, tried in order: the Hub's parquet conversion (`CONFIG/SPLIT/0000.parquet`, or
    /// `CONFIG/partial-SPLIT/…` for a partial conversion); per-config folders of a repo's own data files
    /// (`CONFIG/SPLIT-00000-of-00001.parquet`, as `allenai/ai2_arc` and `cais/mmlu` keep them); for a dataset
    /// without configs, `data/SPLIT-….parquet` or `SPLIT.jsonl` at the top, the `datasets` library's
    /// default split file names.
    public func files(among paths: [String]) -> [String] {
        let data = paths.filter { path in
            let ext = (path as NSString).pathExtension.lowercased()
            return ["parquet", "arrow", "json", "jsonl"].contains(ext) && !path.split(separator: "/").contains { $0.hasPrefix(".") }
        }
        func inFolder(_ folder: String, _ namePrefixes: [String]) -> [String] {
            data.filter { path in
                let name = (path as NSString).lastPathComponent
                let parent = (path as NSString).deletingLastPathComponent
                return parent == folder && (namePrefixes.isEmpty || namePrefixes.contains { name.hasPrefix($0) })
            }.sorted()
        }
        var layouts: [() -> [String]] = [
            { inFolder("\(configName)/\(split)", []) },
            { inFolder("\(configName)/partial-\(split)", []) },
            { inFolder(configName, ["\(split)-", "\(split)."]) },
        ]
        if config == nil || config == "default" {
            layouts += [{ inFolder("data", ["\(split)-", "\(split)."]) }, { inFolder("", ["\(split)-", "\(split)."]) }]
        }
        for layout in layouts {
            let found = layout()
            if !found.isEmpty { return found }
        }
        return []
    }
}

/// Where Hugging Face tools keep and get datasets, from the environment variables huggingface_hub and
/// `datasets` read, so that moe-eval and lm-eval share one cache.
public struct HubEnvironment: Sendable {
    /// `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else `HF_HOME/hub`.
    public var hubCache: URL
    /// `HF_DATASETS_CACHE`, else `HF_HOME/datasets`.
    public var datasetsCache: URL
    /// `HF_ENDPOINT`, else https://huggingface.co (no trailing slash).
    public var endpoint: String
    /// `HF_TOKEN`, else the token file huggingface_hub's login writes (`HF_TOKEN_PATH`, else `HF_HOME/token`).
    public var token: String?
    /// `HF_HUB_OFFLINE` (or `HF_DATASETS_OFFLINE`) set to 1/true/yes/on: nothing is downloaded.
    public var offline: Bool

    public init(hubCache: URL, datasetsCache: URL, endpoint: String = "https://huggingface.co", token: String? = nil, offline: Bool = false)
    {
        self.hubCache = hubCache
        self.datasetsCache = datasetsCache
        self.endpoint = endpoint
        self.token = token
        self.offline = offline
    }

    public static func from(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> HubEnvironment {
        func path(_ value: String) -> URL {
            URL(fileURLWithPath: (value as NSString).expandingTildeInPath)
        }
        func set(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        let cacheHome = set("XDG_CACHE_HOME") ?? "~/.cache"
        let home = set("HF_HOME") ?? (cacheHome as NSString).appendingPathComponent("huggingface")
        let hubCache = set("HF_HUB_CACHE") ?? set("HUGGINGFACE_HUB_CACHE") ?? (home as NSString).appendingPathComponent("hub")
        let datasetsCache = set("HF_DATASETS_CACHE") ?? (home as NSString).appendingPathComponent("datasets")
        var endpoint = set("HF_ENDPOINT") ?? "https://huggingface.co"
        while endpoint.hasSuffix("/") { endpoint.removeLast() }
        var token = set("HF_TOKEN")
        if token == nil {
            let tokenFile = set("HF_TOKEN_PATH") ?? (home as NSString).appendingPathComponent("token")
            if let text = try? String(contentsOf: path(tokenFile), encoding: .utf8) {
                let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
                if !trimmed.isEmpty { token = trimmed }
            }
        }
        let truthy: Set<String> = ["1", "on", "yes", "true"]
        let offline = ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"].contains {
            environment[$0].map { truthy.contains($0.lowercased()) } ?? false
        }
        return HubEnvironment(
            hubCache: path(hubCache), datasetsCache: path(datasetsCache), endpoint: endpoint, token: token, offline: offline)
    }
}
