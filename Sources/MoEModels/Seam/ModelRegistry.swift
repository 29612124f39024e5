import Foundation
import MoECheckpoint
import MoEJSON

/// A family's args as the results file records them (`model_args`).
public protocol ModelArguments: Encodable, Sendable {}

/// A family's args as a registry config carries them (`TrainConfig.familyArgs`): `--training.seq_len` sets
/// `maxSeqLen`, as TorchTitan sizes the RoPE cache by the training seq_len.
public protocol RegistryModelArguments: ModelArguments {
    var maxSeqLen: Int { get set }
}

/// One model family as the loader sees it: the names that select it and how to build it.
public struct ModelFamily: Sendable {
    /// TorchTitan module name (`ModelShape.family` of its models).
    public let name: String
    /// Every TorchTitan module (`--module`, a model-args file's `"family"`) built by this family's code.
    public let torchTitanModules: [String]
    /// HF `config.json` `model_type` values it reads.
    public let hfModelTypes: [String]
    /// Routed experts per MoE layer that the spec's args imply, resolved without reading weights (expert
    /// parallelism checks its degree against it before loading).
    public let numExperts: @Sendable (_ spec: ModelSpec) throws -> Int
    /// Builds the model from the spec's checkpoint (only this rank's experts under expert parallelism).
    public let load: @Sendable (_ spec: ModelSpec, _ expertParallel: ExpertParallelGroup?) throws -> LoadedModel
    /// The TorchTitan 0.3.0 registry config `--config NAME` of this family (`max_seq_len` set to `seqLen` or
    /// the config's training seq_len), or nil when the family defines none of that name.
    public let registryConfig: @Sendable (_ name: String, _ seqLen: Int?) throws -> TrainConfig?
    /// Names of the registry configs `registryConfig` builds.
    public let registryConfigNames: [String]
    /// Registry configs of the family's modules that moe-eval cannot evaluate, with why.
    public let refusedRegistryConfigs: [String: String]
    /// Whether a `--model-args` object that names no `"family"` is this family's (by fields only it has).
    public let describesModelArgs: @Sendable (_ object: JSONObject) -> Bool
    /// `convert`: checks the spec's model against its checkpoint and plans the family's Hugging Face folder
    /// (nil for a family transformers has no architecture for).
    public let hfConversion: (@Sendable (_ request: HFConversionRequest) throws -> HFConversion)?

    public init(
        name: String, torchTitanModules: [String], hfModelTypes: [String],
        numExperts: @escaping @Sendable (ModelSpec) throws -> Int,
        load: @escaping @Sendable (ModelSpec, ExpertParallelGroup?) throws -> LoadedModel,
        registryConfig: @escaping @Sendable (String, Int?) throws -> TrainConfig? = { _, _ in nil },
        registryConfigNames: [String] = [], refusedRegistryConfigs: [String: String] = [:],
        describesModelArgs: @escaping @Sendable (JSONObject) -> Bool = { _ in false },
        hfConversion: (@Sendable (HFConversionRequest) throws -> HFConversion)? = nil
    ) {
        self.name = name; self.torchTitanModules = torchTitanModules; self.hfModelTypes = hfModelTypes
        self.numExperts = numExperts; self.load = load; self.registryConfig = registryConfig
        self.registryConfigNames = registryConfigNames; self.refusedRegistryConfigs = refusedRegistryConfigs
        self.describesModelArgs = describesModelArgs; self.hfConversion = hfConversion
    }
}

/// Every family moe-eval evaluates. Adding a family is one line here plus its folder (docs/ARCHITECTURE.md).
public enum ModelRegistry {
    public static let families: [ModelFamily] = [
        DeepSeekV3.family,
        Qwen3MoE.family,
        GptOss.family,
    ]

    /// The family when nothing names one (checkpoints of the releases before families were recorded).
    public static var defaultFamily: ModelFamily { DeepSeekV3.family }

    public static func family(module: String, among families: [ModelFamily] = families) -> ModelFamily? {
        families.first { $0.torchTitanModules.contains(module) }
    }

    public static func family(hfModelType: String, among families: [ModelFamily] = families) -> ModelFamily? {
        families.first { $0.hfModelTypes.contains(hfModelType) }
    }

    /// The family the spec selects, and what selected it: `--module`, else the family whose registry configs
    /// hold `--config NAME`, else the model-args file's `"family"` (or fields only one family has), else the HF
    /// `config.json` beside the weights (`model_type`), else DeepSeek-V3. `families`: the registry's, or a
    /// test's.
    public static func family(
        for spec: ModelSpec, among families: [ModelFamily] = families
    ) throws -> (family: ModelFamily, reason: String) {
        let knownModules = families.flatMap(\.torchTitanModules).joined(separator: ", ")
        if let module = spec.registryModule {
            guard let family = family(module: module, among: families) else {
                throw ModelArgsError(message: "--module \(module): not a model family moe-eval evaluates (known: \(knownModules))")
            }
            return (family, "--module \(module)")
        }
        if spec.config == nil, let name = spec.registryConfig,
            let family = families.first(where: { $0.registryConfigNames.contains(name) })
        {
            return (family, "--config \(name)")
        }
        if let file = spec.modelArgs, let object = try readJSONObject(file) {
            if let name = try declaredFamily(object, file: file) {
                guard let family = family(module: name, among: families) else {
                    throw ModelArgsError(
                        message: "\(file.path): \"family\" \"\(name)\" is not a model family moe-eval evaluates (known: \(knownModules))")
                }
                return (family, "\"family\" in \(file.path)")
            }
            if let family = families.first(where: { $0.describesModelArgs(object["model_args"]?.objectValue ?? object) }) {
                return (family, "\(family.name) fields in \(file.path)")
            }
        }
        if spec.modelArgs == nil, spec.flavor == nil, !spec.hasTrainConfig {
            let config = ModelLoader.hfConfigURL(for: spec.checkpoint)
            if let modelType = try hfModelType(config) {
                guard let family = family(hfModelType: modelType, among: families) else {
                    let known = families.flatMap(\.hfModelTypes).joined(separator: ", ")
                    throw ModelArgsError(message: "\(config.path): model_type \"\(modelType)\" is not supported (known: \(known))")
                }
                return (family, "model_type \(modelType) in \(config.path)")
            }
        }
        return (defaultFamily, "default family")
    }

    /// `convert`'s one question to the registry: the family the request's spec selects checks the model
    /// against its checkpoint and plans its Hugging Face folder.
    public static func hfConversion(
        _ request: HFConversionRequest, among families: [ModelFamily] = families
    ) throws -> (family: ModelFamily, conversion: HFConversion) {
        let family = try family(for: request.spec, among: families).family
        guard let convert = family.hfConversion else {
            throw ModelArgsError(message: "\(family.name): moe-eval has no Hugging Face export for this model family")
        }
        return (family, try convert(request))
    }

    /// Model-args and config files are small; anything larger is not one.
    static let maxConfigBytes = 16 << 20

    static func readJSONObject(_ url: URL) throws -> JSONObject? {
        guard let size = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int) ?? nil else {
            return nil
        }
        guard size <= maxConfigBytes else {
            throw ModelArgsError(message: "\(url.path): \(size) bytes is too large for a model config (limit \(maxConfigBytes))")
        }
        let data = try Data(contentsOf: url)
        do {
            return try JSONValue.parse([UInt8](data)).objectValue
        } catch let error as JSONParseError {
            throw ModelArgsError(message: "\(url.path): \(error.description)")
        }
    }

    /// The `"family"` a model-args file names, at its top or in its `"model_args"` (nil when it names none:
    /// DeepSeek-V3 files never did).
    static func declaredFamily(_ object: JSONObject, file url: URL) throws -> String? {
        guard let value = object["family"] ?? object["model_args"]?.objectValue?["family"] else { return nil }
        guard let name = value.stringValue else {
            throw ModelArgsError(message: "\(url.path): \"family\" must be a string, not \(value.typeName)")
        }
        return name
    }

    /// `model_type` of an HF config.json, nil when there is no such file.
    static func hfModelType(_ url: URL) throws -> String? {
        guard FileManager.default.fileExists(atPath: url.path), let object = try readJSONObject(url) else { return nil }
        guard let value = object["model_type"] else { return nil }
        guard let name = value.stringValue else {
            throw ModelArgsError(message: "\(url.path): model_type must be a string, not \(value.typeName)")
        }
        return name
    }
}
