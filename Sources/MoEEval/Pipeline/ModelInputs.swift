import Foundation
import MoEData
import MoEModels
import MoETokenizer

/// The one place that decides where a command's model, model args, tokenizer and data come from when the
/// options leave them out: the bundled demo model, the config's `hf_assets_path`, an HF checkpoint folder's
/// own tokenizer, the routing text and the benchmark data sources.
public struct ModelInputs {
    /// The model as the options name it, with the demo's checkpoint, config and model args filled in when
    /// no checkpoint was given.
    public let spec: ModelSpec
    public let config: TrainConfig?
    /// The bundled demo, when no checkpoint was given.
    public let demo: DemoAssets?
    /// `--tokenizer`.
    public let tokenizer: String?

    /// Who asks decides which fallbacks apply and how a missing tokenizer is explained.
    public enum Consumer: Sendable {
        /// `run`: the demo tokenizer only with the demo's own config; an HF checkpoint folder's tokenizer.
        case evaluation
        /// `serve`: the demo tokenizer whenever the demo model is served.
        case serving
        /// `convert`: `--tokenizer` or the config's `hf_assets_path`, nothing else.
        case conversion
    }

    public struct MissingInput: Error, CustomStringConvertible {
        public let description: String
    }

    public init(spec: ModelSpec, config: TrainConfig?, demo: DemoAssets?, tokenizer: String?) {
        self.spec = spec
        self.config = config
        self.demo = demo
        self.tokenizer = tokenizer
    }

    /// `requested` as the options state it; `checkpointGiven` false: evaluate the bundled demo, with its
    /// config and model args unless the options name others.
    public static func resolve(_ requested: ModelSpec, checkpointGiven: Bool, tokenizer: String?) throws -> ModelInputs {
        var spec = requested
        let demo = checkpointGiven ? nil : try DemoAssets.locate()
        if let demo {
            spec.checkpoint = demo.checkpoint
            if spec.config == nil && spec.registryConfig == nil { spec.config = demo.config }
            if spec.modelArgs == nil && spec.flavor == nil { spec.modelArgs = demo.modelArgs }
        }
        return ModelInputs(spec: spec, config: try spec.loadTrainConfig(), demo: demo, tokenizer: tokenizer)
    }

    /// Where the tokenizer may be, in the order tried.
    public func tokenizerCandidates(for consumer: Consumer) -> [String] {
        Self.tokenizerCandidates(explicit: tokenizer, config: config, demo: demo, checkpoint: spec.checkpoint, consumer: consumer)
    }

    static func tokenizerCandidates(
        explicit: String?, config: TrainConfig?, demo: DemoAssets?, checkpoint: URL?,
        consumer: Consumer
    ) -> [String] {
        if let explicit { return [explicit] }
        var candidates: [String] = []
        if let config, let assets = config.hfAssetsPath {
            candidates = config.hfAssetsCandidates
            // The demo's config names its tokenizer relative to the moe-eval folder.
            if let demo, consumer != .conversion { candidates.append(demo.root.appendingPathComponent(assets).path) }
        }
        if let demo {
            switch consumer {
            case .evaluation where config?.path == demo.config.path, .serving: candidates.append(demo.tokenizer.path)
            case .evaluation, .conversion: break
            }
        }
        // An HF checkpoint folder carries its tokenizer beside config.json.
        if consumer == .evaluation, let checkpoint {
            let folder = ModelLoader.isDirectory(checkpoint) ? checkpoint : checkpoint.deletingLastPathComponent()
            if FileManager.default.fileExists(atPath: folder.appendingPathComponent("tokenizer.json").path) {
                candidates.append(folder.path)
            }
        }
        return candidates
    }

    /// The first candidate that exists, loaded; nil when none does and `required` is false.
    public func loadTokenizer(for consumer: Consumer, required: Bool = true) throws -> Tokenizer? {
        let candidates = tokenizerCandidates(for: consumer)
        for path in candidates where FileManager.default.fileExists(atPath: path) {
            return try Tokenizer.load(from: URL(fileURLWithPath: path))
        }
        guard required else { return nil }
        switch consumer {
        case .evaluation, .conversion:
            let tried =
                candidates.isEmpty
                ? "no --config with an hf_assets_path, no --tokenizer, no tokenizer.json in the checkpoint folder"
                : "not found: \(candidates.joined(separator: ", "))"
            throw RoutingInput.InputError(
                description:
                    "no tokenizer (\(tried)): pass --module deepseek_v3 --config NAME (TorchTitan 0.3) or --config TRAIN.toml, whose hf_assets_path holds it, or --tokenizer PATH; or use --routing-input random with --preset 30s"
            )
        case .serving:
            let tried =
                candidates.isEmpty
                ? "no --tokenizer and no [model] hf_assets_path in the config" : "not found: \(candidates.joined(separator: ", "))"
            throw MissingInput(description: "serve needs a tokenizer (\(tried)); pass --tokenizer PATH")
        }
    }

    /// The folder of tokenizer files `convert` copies: `--tokenizer` (a folder or its tokenizer.json), else the
    /// config's `[model] hf_assets_path` (as given, then relative to the config's folder); nil when neither is given.
    public static func tokenizerFolder(explicit: String?, config: TrainConfig?) throws -> URL? {
        let candidates = tokenizerCandidates(explicit: explicit, config: config, demo: nil, checkpoint: nil, consumer: .conversion)
        if candidates.isEmpty { return nil }
        for path in candidates {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
                let url = URL(fileURLWithPath: path).standardizedFileURL
                return isDirectory.boolValue ? url : url.deletingLastPathComponent()
            }
        }
        let origin = explicit != nil ? "--tokenizer" : "\(config!.path): [model] hf_assets_path"
        throw MissingInput(
            description:
                "\(origin): tokenizer folder not found (tried \(candidates.joined(separator: ", "))); pass --tokenizer PATH or --no-tokenizer"
        )
    }

    /// The routing text: `--data`, else the config's local `dataset_path`, else the demo text.
    public func routingDocuments(data: String?) throws -> (documents: [String], source: String) {
        if let data { return (try RoutingInput.documents(in: URL(fileURLWithPath: data)), data) }
        if let path = config?.datasetPath, FileManager.default.fileExists(atPath: path) {
            return (try RoutingInput.documents(in: URL(fileURLWithPath: path)), path)
        }
        let text = try demo ?? DemoAssets.locate()
        return (try RoutingInput.documents(in: text.text), text.text.path)
    }

    /// `--data-dir` (else `$MOE_EVAL_DATA_DIR`), the Hugging Face caches and Hub, and the demo's own slice of
    /// benchmark items when the demo model is evaluated (named or not).
    public func benchmarkData(dataDir: String?, progress: DownloadProgress?) -> BenchmarkDataSources {
        let folder = dataDir ?? ProcessInfo.processInfo.environment["MOE_EVAL_DATA_DIR"].flatMap { $0.isEmpty ? nil : $0 }
        return BenchmarkDataSources(
            dataDir: folder.map { URL(fileURLWithPath: $0) }, hub: HubEnvironment.from(),
            bundledHubCache: (demo ?? DemoAssets.owning(spec.checkpoint))?.benchmarkData, progress: progress)
    }
}

/// The bundled demo: a small DeepSeek-V3 trained with TorchTitan's model code (assets/demo/README.md).
public struct DemoAssets: Sendable {
    public let root: URL
    public var folder: URL { root.appendingPathComponent("assets/demo") }
    public var config: URL { folder.appendingPathComponent("train.toml") }
    public var modelArgs: URL { folder.appendingPathComponent("model_args.json") }
    public var text: URL { folder.appendingPathComponent("demo_text.txt") }
    public var tokenizer: URL { root.appendingPathComponent("assets/tokenizers/demo-dsv3") }
    /// A few real benchmark items in the Hub cache layout (assets/demo/hub/README.md).
    public var benchmarkData: URL { folder.appendingPathComponent("hub") }
    public let checkpoint: URL

    public struct MissingError: Error, CustomStringConvertible { public let description: String }

    /// The bundled demo when `checkpoint` is one of its checkpoints (named with --checkpoint).
    public static func owning(_ checkpoint: URL) -> DemoAssets? {
        guard let demo = try? locate() else { return nil }
        let steps = demo.folder.appendingPathComponent("checkpoint").resolvingSymlinksInPath().standardized.path + "/"
        return checkpoint.resolvingSymlinksInPath().standardized.path.hasPrefix(steps) ? demo : nil
    }

    /// `MOE_EVAL_HOME`, else the first folder above the executable or the working directory holding assets/demo.
    public static func locate() throws -> DemoAssets {
        var starts: [URL] = []
        if let home = ProcessInfo.processInfo.environment["MOE_EVAL_HOME"] { starts.append(URL(fileURLWithPath: home)) }
        starts.append(URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent())
        starts.append(URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
        for start in starts {
            var dir = start
            while true {
                let steps = dir.appendingPathComponent("assets/demo/checkpoint")
                if let names = try? FileManager.default.contentsOfDirectory(atPath: steps.path) {
                    let latest = names.compactMap { $0.hasPrefix("step-") ? Int($0.dropFirst(5)) : nil }.max()
                    if let latest {
                        return DemoAssets(root: dir, checkpoint: steps.appendingPathComponent("step-\(latest)"))
                    }
                }
                if dir.path == "/" { break }
                dir = dir.deletingLastPathComponent()
            }
        }
        throw MissingError(
            description:
                "no --checkpoint given and the bundled demo (assets/demo) was not found; set MOE_EVAL_HOME to the moe-eval folder or pass --checkpoint"
        )
    }
}
