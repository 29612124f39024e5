import Foundation
import MoEJSON
import TOMLKit

/// The parts of a TorchTitan train config that evaluation needs: a v0.2.x TOML file, or a 0.3.0 registry
/// config (`ConfigRegistry`).
public struct TrainConfig: Sendable {
    public var path: String
    public var modelName: String
    public var flavor: String
    /// `[model] hf_assets_path`, or the deprecated `tokenizer_path`, resolved against the config's folder
    /// only when relative paths do not exist from the working directory.
    public var hfAssetsPath: String?
    public var seqLen: Int
    public var dataset: String?
    public var datasetPath: String?
    public var dumpFolder: String
    public var checkpointFolder: String
    public var expertParallelDegree: Int
    /// The whole config as JSON (tables → objects), for the results file's `config` key.
    public var json: Data
    /// A registry config's model arguments (`max_seq_len` already the training seq_len); TOML configs name a flavor.
    public var registryArgs: ModelArgs? = nil
    /// Another family's registry config's model arguments (`max_seq_len` already the training seq_len); the
    /// family reads them back as its own args type.
    public var familyArgs: (any RegistryModelArguments)? = nil

    /// Where `hf_assets_path` may be: as given (TorchTitan resolves it from the folder it runs in), then relative
    /// to a TOML config's folder. Registry configs have no file to be relative to.
    public var hfAssetsCandidates: [String] {
        guard let assets = hfAssetsPath else { return [] }
        var list = [assets]
        if registryArgs == nil, familyArgs == nil, !assets.hasPrefix("/") {
            list.append(((path as NSString).deletingLastPathComponent as NSString).appendingPathComponent(assets))
        }
        return list
    }

    /// `--training.seq_len N`, as TorchTitan's command line overrides the config; the results file's `config`
    /// block shows the value used.
    public mutating func overrideSeqLen(_ value: Int) throws {
        guard value >= 1 else { throw ModelArgsError(message: "--training.seq_len must be ≥ 1, not \(value)") }
        seqLen = value
        if registryArgs != nil { registryArgs!.maxSeqLen = value }
        if familyArgs != nil { familyArgs!.maxSeqLen = value }
        if case .object(var object)? = try? JSONValue.parse(Array(json)) {
            var training = object["training"]?.objectValue ?? [:]
            training.set("seq_len", .int(value))
            object.set("training", .object(training))
            json = Data(JSONValue.object(object).serialized.utf8)
        }
    }

    public static func load(_ url: URL) throws -> TrainConfig {
        try TOMLLimits.checkFileSize(url)
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw ModelArgsError(message: "cannot read config file \(url.path): \(error.localizedDescription)")
        }
        return try parse(text, path: url.path)
    }

    public static func parse(_ text: String, path: String) throws -> TrainConfig {
        try TOMLLimits.check(text, path: path)
        let table: TOMLTable
        do { table = try TOMLTable(string: text) } catch let e as TOMLParseError {
            throw ModelArgsError(
                message: "\(path): malformed TOML at line \(e.source.begin.line), column \(e.source.begin.column): \(e.description)")
        } catch {
            throw ModelArgsError(message: "\(path): malformed TOML: \(error)")
        }
        func section(_ name: String) -> TOMLTable? { table[name]?.table }
        func string(_ s: String, _ k: String) throws -> String? {
            guard let v = section(s)?[k] else { return nil }
            guard let str = v.string else { throw ModelArgsError(message: "\(path): [\(s)] \(k) must be a string") }
            return str
        }
        func int(_ s: String, _ k: String) throws -> Int? {
            guard let v = section(s)?[k] else { return nil }
            guard let i = v.int else { throw ModelArgsError(message: "\(path): [\(s)] \(k) must be an integer") }
            return i
        }
        guard section("model") != nil else {
            throw ModelArgsError(message: "\(path): no [model] section (is this a TorchTitan train config?)")
        }
        let json = Data(plain(table).serialized.utf8)
        return TrainConfig(
            path: path,
            modelName: try string("model", "name") ?? "llama3",
            flavor: try string("model", "flavor") ?? "debugmodel",
            hfAssetsPath: try string("model", "hf_assets_path") ?? string("model", "tokenizer_path"),
            seqLen: try int("training", "seq_len") ?? 2048,
            dataset: try string("training", "dataset"),
            datasetPath: try string("training", "dataset_path"),
            dumpFolder: try string("job", "dump_folder") ?? "./outputs",
            checkpointFolder: try string("checkpoint", "folder") ?? "checkpoint",
            expertParallelDegree: try int("parallelism", "expert_parallel_degree") ?? 1,
            json: json
        )
    }

    /// TOML values as JSON, tables with their keys sorted (TOMLKit does not keep the file's order); dates as
    /// their TOML text.
    static func plain(_ value: TOMLValueConvertible) -> JSONValue {
        if let table = value.table {
            return .object(JSONObject(table.keys.sorted().compactMap { key in table[key].map { (key: key, value: plain($0)) } }))
        }
        if let array = value.array { return .array(array.map { plain($0) }) }
        if let b = value.bool { return .bool(b) }
        if let i = value.int { return .int(i) }
        if let d = value.double { return .double(d) }
        if let s = value.string { return .string(s) }
        return .string("\(value.tomlValue)")
    }

    /// The model args this config implies: its flavor, with `max_seq_len` = `training.seq_len`
    /// as TorchTitan's `update_from_config` sets it.
    public func modelArgs() throws -> ModelArgs {
        if let registryArgs { return registryArgs }
        guard modelName == "deepseek_v3" else {
            throw ModelArgsError(message: "\(path): [model] name \"\(modelName)\" is not supported (moe-eval evaluates \"deepseek_v3\")")
        }
        guard var args = Flavors.args(for: flavor) else {
            throw UnknownFlavorError(flavor: flavor, source: path)
        }
        args.maxSeqLen = seqLen
        return args
    }
}

/// An unknown flavor; the CLI adds a model-args template filled from the checkpoint's shapes.
public struct UnknownFlavorError: Error, CustomStringConvertible {
    public let flavor: String
    public let source: String
    public var description: String {
        "\(source): unknown deepseek_v3 flavor \"\(flavor)\" (known: \(Flavors.names.joined(separator: ", "))); pass --model-args FILE.json instead"
    }
}
