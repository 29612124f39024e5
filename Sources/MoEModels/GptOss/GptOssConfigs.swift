import Foundation

/// TorchTitan 0.3.0's `gpt_oss` config registry (`torchtitan/models/gpt_oss/config_registry.py` and the flavors of
/// its `__init__.py`), reduced to what an evaluation reads. `tools/reference/gptoss_registry_golden.py` extracts
/// the same values from TorchTitan itself into the golden the tests compare against.
public enum GptOssConfigs {
    public static let module = "gpt_oss"

    public struct Entry: Sendable {
        public var name: String
        public var flavor: String
        /// `max_seq_len` = the flavor's RoPE cache length, the longest `training.seq_len` TorchTitan accepts.
        public var args: GptOssArgs
        public var seqLen: Int
        public var hfAssetsPath: String
        public var dataset: String
        public var expertParallelDegree: Int
        public var checkpointInterval: Int
    }

    /// `gpt_oss_debugmodel_flex` differs from `gpt_oss_debugmodel` only in the attention kernel.
    public static let entries: [Entry] = [
        Entry(
            name: "gpt_oss_debugmodel", flavor: "debugmodel", args: flavor("debugmodel")!, seqLen: 2048,
            hfAssetsPath: "./tests/assets/tokenizer", dataset: "c4_test", expertParallelDegree: 1, checkpointInterval: 10),
        Entry(
            name: "gpt_oss_debugmodel_flex", flavor: "debugmodel", args: flavor("debugmodel")!, seqLen: 2048,
            hfAssetsPath: "./tests/assets/tokenizer", dataset: "c4_test", expertParallelDegree: 1, checkpointInterval: 10),
        Entry(
            name: "gpt_oss_20b", flavor: "20b", args: flavor("20b")!, seqLen: 8192,
            hfAssetsPath: "./assets/hf/gpt-oss-20b", dataset: "c4", expertParallelDegree: 1, checkpointInterval: 500),
        Entry(
            name: "gpt_oss_120b", flavor: "120b", args: flavor("120b")!, seqLen: 8192,
            hfAssetsPath: "./assets/hf/gpt-oss-120b", dataset: "c4", expertParallelDegree: 1, checkpointInterval: 500),
    ]

    public static var names: [String] { entries.map(\.name).sorted() }

    public static func entry(_ name: String) -> Entry? { entries.first { $0.name == name } }

    /// `gptoss_configs[flavor]`: every flavor builds 64 query heads, 8 KV heads of 64, a 128-token window on even
    /// layers, YaRN ×32 over 4096 positions with θ 150000 and a 131072-position cache, top-4 softmax routing.
    public static func flavor(_ name: String) -> GptOssArgs? {
        var a = GptOssArgs()
        switch name {
        case "debugmodel":
            a.vocabSize = 2048; a.dim = 256; a.nLayers = 4; a.moeInterDim = 2880; a.moeArgs.numExperts = 8
        case "20b":
            a.vocabSize = 201_088; a.dim = 2880; a.nLayers = 24; a.moeInterDim = 2880; a.moeArgs.numExperts = 32
        case "120b":
            a.vocabSize = 201_088; a.dim = 2880; a.nLayers = 36; a.moeInterDim = 2880; a.moeArgs.numExperts = 128
        default:
            return nil
        }
        a.slidingWindowLayers = Array(stride(from: 0, to: a.nLayers, by: 2))
        return a
    }

    /// The args `--module gpt_oss --config NAME` selects, with `max_seq_len` set to the training seq_len
    /// (`seqLen`, else the config's), as 0.3.0's `update_from_config` sets the RoPE cache; that may not exceed the flavor's.
    public static func args(config name: String, seqLen: Int? = nil) throws -> (entry: Entry, args: GptOssArgs) {
        guard let e = entry(name) else {
            throw ModelArgsError(
                message: "--config \(name): not a TorchTitan 0.3.0 config of module gpt_oss; known: \(names.joined(separator: ", "))")
        }
        let seq = seqLen ?? e.seqLen
        guard seq >= 1 else { throw ModelArgsError(message: "training.seq_len must be ≥ 1, not \(seq)") }
        guard seq <= e.args.maxSeqLen else {
            throw ModelArgsError(
                message:
                    "training.seq_len \(seq) exceeds the RoPE maximum sequence length \(e.args.maxSeqLen) of gpt_oss flavor \(e.flavor) (TorchTitan refuses it too)"
            )
        }
        var args = e.args
        args.maxSeqLen = seq
        try args.validate()
        return (e, args)
    }
}

extension GptOssConfigs {
    /// `--module gpt_oss --config NAME`, or nil when `entries` has no config of that name.
    static func registryConfig(_ name: String, seqLen: Int?) throws -> TrainConfig? {
        guard entry(name) != nil else { return nil }
        let (e, args) = try self.args(config: name, seqLen: seqLen)
        let json = ConfigRegistry.registryConfigJSON(
            module: module, specName: module, config: e.name, flavor: e.flavor,
            hfAssetsPath: e.hfAssetsPath, seqLen: args.maxSeqLen, dataset: e.dataset,
            expertParallelDegree: e.expertParallelDegree, checkpointInterval: e.checkpointInterval)
        var config = TrainConfig(
            path: "--module \(module) --config \(e.name)", modelName: module,
            flavor: e.flavor, hfAssetsPath: e.hfAssetsPath, seqLen: args.maxSeqLen, dataset: e.dataset,
            datasetPath: nil, dumpFolder: ConfigRegistry.dumpFolder, checkpointFolder: ConfigRegistry.checkpointFolder,
            expertParallelDegree: e.expertParallelDegree, json: json)
        config.familyArgs = args
        return config
    }
}
