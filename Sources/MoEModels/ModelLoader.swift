import Foundation
import MoECheckpoint
import MoETensor

/// Where a model's arguments and weights come from, as the CLI's options state them.
public struct ModelSpec: Sendable {
    public var checkpoint: URL
    public var config: URL?
    public var modelArgs: URL?
    public var flavor: String?
    public var era: CodeEra?
    public var yarn: Bool?
    public var finalNormEps: Float?
    /// A TorchTitan 0.3.0 registry config (`--module M --config NAME`), used when `config` (a TOML file) is nil.
    public var registryModule: String?
    public var registryConfig: String?
    /// `--training.seq_len`: overrides the config's training seq_len (and so `max_seq_len`).
    public var seqLen: Int?
    /// `--compute`: precision of the matrix products (fp32, the exact reference, unless a command asks otherwise).
    public var compute: ComputeChoice
    /// `--device`: where the loaded model runs instead of the CPU (nil: the CPU).
    public var placement: (any ModelPlacement)?

    public init(
        checkpoint: URL, config: URL? = nil, modelArgs: URL? = nil, flavor: String? = nil,
        era: CodeEra? = nil, yarn: Bool? = nil, finalNormEps: Float? = nil,
        registryModule: String? = nil, registryConfig: String? = nil, seqLen: Int? = nil,
        compute: ComputeChoice = .fp32
    ) {
        self.checkpoint = checkpoint; self.config = config; self.modelArgs = modelArgs; self.flavor = flavor
        self.era = era; self.yarn = yarn; self.finalNormEps = finalNormEps
        self.registryModule = registryModule; self.registryConfig = registryConfig; self.seqLen = seqLen
        self.compute = compute
    }

    /// The precision `compute` resolves to for the weights in `source`.
    public func resolveCompute(_ source: WeightSource) throws -> (precision: ComputePrecision, reason: String) {
        try compute.resolve(weights: source.tensorInfos, checkpoint: source.description)
    }

    public var hasTrainConfig: Bool { config != nil || registryConfig != nil }

    /// The TOML file or registry config the options name, with the seq_len override applied.
    public func loadTrainConfig() throws -> TrainConfig? {
        if let config {
            var loaded = try TrainConfig.load(config)
            if let seqLen { try loaded.overrideSeqLen(seqLen) }
            return loaded
        }
        if let registryConfig {
            return try ConfigRegistry.config(module: registryModule, name: registryConfig, seqLen: seqLen)
        }
        return nil
    }
}

/// A model ready to run, with everything that decided how it was built.
public struct LoadedModel: @unchecked Sendable {
    public let model: any CausalLanguageModel
    public let family: ModelFamily
    /// The family's args as resolved (the results file's `model_args`).
    public let modelArgs: any ModelArguments
    public let source: WeightSource
    public let trainConfig: TrainConfig?
    /// "model args file X", "config X (flavor 16B, seq_len 2048)", …
    public let argsOrigin: String
    public let loadSeconds: Double
    /// Precision of the matrix products, and what decided it (`--compute`, the weights, the CPU).
    public let compute: ComputePrecision
    public let computeReason: String

    public init(
        model: any CausalLanguageModel, family: ModelFamily, modelArgs: any ModelArguments, source: WeightSource,
        trainConfig: TrainConfig?, argsOrigin: String, loadSeconds: Double,
        compute: ComputePrecision = .fp32, computeReason: String = "fp32 (the reference mode)"
    ) {
        self.model = model; self.family = family; self.modelArgs = modelArgs; self.source = source
        self.trainConfig = trainConfig; self.argsOrigin = argsOrigin; self.loadSeconds = loadSeconds
        self.compute = compute; self.computeReason = computeReason
    }
}

public enum ModelLoader {
    /// Builds the model of the family the spec selects (`ModelRegistry.family(for:)`). Under expert parallelism
    /// (`expertParallel`), only this rank's experts are read from the checkpoint.
    public static func load(_ spec: ModelSpec, expertParallel: ExpertParallelGroup? = nil) throws -> LoadedModel {
        let loaded = try ModelRegistry.family(for: spec).family.load(spec, expertParallel)
        guard let placement = spec.placement else { return loaded }
        return LoadedModel(
            model: try placement.place(loaded.model, weights: loaded.source), family: loaded.family, modelArgs: loaded.modelArgs,
            source: loaded.source, trainConfig: loaded.trainConfig, argsOrigin: loaded.argsOrigin, loadSeconds: loaded.loadSeconds)
    }

    /// Routed experts per MoE layer of the model the spec selects, without reading weights.
    public static func numExperts(_ spec: ModelSpec) throws -> Int {
        try ModelRegistry.family(for: spec).family.numExperts(spec)
    }

    /// `config.json` beside (or inside) a checkpoint, where HF checkpoints keep it.
    public static func hfConfigURL(for checkpoint: URL) -> URL {
        checkpoint.hasDirectoryPath || isDirectory(checkpoint)
            ? checkpoint.appendingPathComponent("config.json")
            : checkpoint.deletingLastPathComponent().appendingPathComponent("config.json")
    }

    /// DeepSeek-V3: the model args the options imply, in order of precedence: `--model-args`, `--flavor` (with the
    /// config's seq_len when a config is given), `--config`, then an HF `config.json` beside the weights.
    public static func resolveArgs(
        _ spec: ModelSpec, source: WeightSource?
    ) throws
        -> (args: ModelArgs, origin: String, config: TrainConfig?, hf: HFModelConfig?)
    {
        do {
            return try resolveArgsWithoutTemplate(spec)
        } catch let e as UnknownFlavorError {
            throw ModelArgsError(message: e.description + (source.map { "\n" + template(for: $0) } ?? ""))
        } catch let e as ModelArgsError where e.message.hasPrefix(noArgsMessage) {
            throw ModelArgsError(message: e.message + (source.map { "\n" + template(for: $0) } ?? ""))
        }
    }

    static let noArgsMessage = "no model args for "

    /// Args from a model-args file or an HF config.json are validated as they are read; those from a flavor
    /// and a config's seq_len are validated here, so every caller gets args that passed `validate()`.
    static func resolveArgsWithoutTemplate(
        _ spec: ModelSpec
    ) throws
        -> (args: ModelArgs, origin: String, config: TrainConfig?, hf: HFModelConfig?)
    {
        func validated(_ args: ModelArgs, _ origin: String) throws -> ModelArgs {
            do { try args.validate() } catch let e as ModelArgsError {
                throw ModelArgsError(message: "\(origin): \(e.message)")
            }
            return args
        }
        let config = try spec.loadTrainConfig()
        if let file = spec.modelArgs {
            var args = try ModelArgs.load(jsonFile: file)
            if let seqLen = spec.seqLen {
                args.maxSeqLen = seqLen
                args = try validated(args, "--training.seq_len \(seqLen)")
            }
            return (
                args, "model args file \(file.path)" + (spec.seqLen.map { " with seq_len \($0) from --training.seq_len" } ?? ""), config,
                nil
            )
        }
        if let flavor = spec.flavor {
            guard var args = Flavors.args(for: flavor) else {
                throw UnknownFlavorError(flavor: flavor, source: "--flavor")
            }
            if let config { args.maxSeqLen = config.seqLen } else if let seqLen = spec.seqLen { args.maxSeqLen = seqLen }
            args = try validated(args, config?.path ?? "--flavor \(flavor)")
            return (args, "flavor \(flavor)" + (config.map { " with seq_len \($0.seqLen) from \($0.path)" } ?? ""), config, nil)
        }
        if let config {
            return (
                try validated(config.modelArgs(), config.path), "config \(config.path) (flavor \(config.flavor), seq_len \(config.seqLen))",
                config, nil
            )
        }
        let hfConfig = hfConfigURL(for: spec.checkpoint)
        if FileManager.default.fileExists(atPath: hfConfig.path) {
            let hf = try HFModelConfig.load(hfConfig)
            var args = hf.args
            if let seqLen = spec.seqLen {
                args.maxSeqLen = seqLen
                args = try validated(args, "--training.seq_len \(seqLen)")
            }
            return (args, "HF config \(hfConfig.path)" + (spec.seqLen.map { " with seq_len \($0) from --training.seq_len" } ?? ""), nil, hf)
        }
        throw ModelArgsError(
            message: noArgsMessage
                + "\(spec.checkpoint.path): pass --module deepseek_v3 --config NAME (TorchTitan 0.3), --config TRAIN.toml, --model-args FILE.json or --flavor NAME"
        )
    }

    /// A model-args JSON filled from the checkpoint's shapes, for the user to complete.
    public static func template(for source: WeightSource) -> String {
        let (args, guessed) = ModelArgs.inferred(from: source.tensorInfos.mapValues(\.shape))
        return "A model-args template from the checkpoint's shapes (check the guessed fields: \(guessed.joined(separator: ", "))):\n"
            + args.jsonString()
    }

    public static func isDirectory(_ url: URL) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) && isDir.boolValue
    }
}
