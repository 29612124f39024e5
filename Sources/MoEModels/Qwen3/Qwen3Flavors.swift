/// TorchTitan 0.3.0's Qwen3-MoE flavors (`qwen3_configs` in `torchtitan/models/qwen3/__init__.py`) and the
/// `--module qwen3 --config NAME` registry functions that build them. The golden that
/// tools/reference/torchtitan030_registry.py extracts from the released source checks these values.
public enum Qwen3Flavors {
    /// `_build_qwen3_moe_layers` flavors; `max_seq_len` is the flavor's RoPE cache length.
    public static func args(for flavor: String) -> Qwen3Args? {
        var a = Qwen3Args()
        switch flavor {
        case "debugmodel_moe":
            a.vocabSize = 2048; a.dim = 256; a.nLayers = 8; a.nHeads = 16; a.nKVHeads = 8; a.headDim = 128
            a.moeInterDim = 768; a.moeArgs.numExperts = 64; a.moeArgs.topK = 8; a.maxSeqLen = 4096; a.ropeTheta = 1_000_000
        case "30B-A3B":
            a.vocabSize = 151_936; a.dim = 2048; a.nLayers = 48; a.nHeads = 32; a.nKVHeads = 4; a.headDim = 128
            a.moeInterDim = 768; a.moeArgs.numExperts = 128; a.moeArgs.topK = 8; a.maxSeqLen = 40_960; a.ropeTheta = 1_000_000
        case "235B-A22B":
            a.vocabSize = 151_936; a.dim = 4096; a.nLayers = 94; a.nHeads = 64; a.nKVHeads = 4; a.headDim = 128
            a.moeInterDim = 1536; a.moeArgs.numExperts = 128; a.moeArgs.topK = 8; a.maxSeqLen = 40_960; a.ropeTheta = 5_000_000
        default:
            return nil
        }
        return a
    }

    public static let names = ["debugmodel_moe", "30B-A3B", "235B-A22B"]

    /// A registry function: its flavor and the training settings evaluation reads.
    public struct RegistryConfig: Sendable {
        public var name: String
        public var flavor: String
        public var seqLen: Int
        public var hfAssetsPath: String
        public var dataset: String
        public var expertParallelDegree: Int
        public var checkpointInterval: Int
    }

    /// The MoE registry functions of 0.3.0's `qwen3/config_registry.py` (`_param_groups` changes the optimizer,
    /// `_deepep` the expert-parallel communication; neither changes the model).
    public static let registry: [RegistryConfig] = [
        RegistryConfig(
            name: "qwen3_moe_debug", flavor: "debugmodel_moe", seqLen: 4096, hfAssetsPath: "./tests/assets/tokenizer",
            dataset: "c4_test", expertParallelDegree: 1, checkpointInterval: 10),
        RegistryConfig(
            name: "qwen3_debugmodel_moe_param_groups", flavor: "debugmodel_moe", seqLen: 4096,
            hfAssetsPath: "./tests/assets/tokenizer", dataset: "c4_test", expertParallelDegree: 1, checkpointInterval: 10),
        RegistryConfig(
            name: "qwen3_moe_deepep", flavor: "debugmodel_moe", seqLen: 512, hfAssetsPath: "./tests/assets/tokenizer",
            dataset: "c4_test", expertParallelDegree: 4, checkpointInterval: 1000),
        RegistryConfig(
            name: "qwen3_30b_a3b", flavor: "30B-A3B", seqLen: 4096, hfAssetsPath: "./assets/hf/Qwen3-30B-A3B",
            dataset: "c4", expertParallelDegree: 1, checkpointInterval: 500),
    ]

    /// The dense Qwen3 configs of the same registry (no MoE layers: nothing for moe-eval to measure).
    public static let denseConfigs = [
        "qwen3_debugmodel", "qwen3_debugmodel_nvfp4", "qwen3_debugmodel_first_85_pct_layers_nvfp4", "qwen3_debugmodel_flex_flash",
        "qwen3_debugmodel_non_fused_qkv", "qwen3_0_6b", "qwen3_1_7b", "qwen3_8b_first_85_pct_layers_nvfp4", "qwen3_14b",
        "qwen3_32b", "sft_qwen3_8b_math",
    ]
}

extension Qwen3Flavors {
    /// `--module qwen3 --config NAME`, or nil when `registry` has no config of that name.
    static func registryConfig(_ name: String, seqLen: Int?) throws -> TrainConfig? {
        guard let e = registry.first(where: { $0.name == name }) else { return nil }
        guard var args = args(for: e.flavor) else { throw ModelArgsError(message: "qwen3 flavor \(e.flavor) is unknown") }
        let seq = seqLen ?? e.seqLen
        guard seq >= 1 else { throw ModelArgsError(message: "training.seq_len must be ≥ 1, not \(seq)") }
        guard seq <= args.maxSeqLen else {
            throw ModelArgsError(
                message:
                    "training.seq_len \(seq) exceeds the RoPE maximum sequence length \(args.maxSeqLen) of qwen3 flavor \(e.flavor) (TorchTitan refuses it too)"
            )
        }
        args.maxSeqLen = seq
        let json = ConfigRegistry.registryConfigJSON(
            module: "qwen3", specName: "qwen3", config: e.name, flavor: e.flavor,
            hfAssetsPath: e.hfAssetsPath, seqLen: seq, dataset: e.dataset,
            expertParallelDegree: e.expertParallelDegree, checkpointInterval: e.checkpointInterval)
        return TrainConfig(
            path: "--module qwen3 --config \(e.name)", modelName: "qwen3", flavor: e.flavor,
            hfAssetsPath: e.hfAssetsPath, seqLen: seq, dataset: e.dataset, datasetPath: nil,
            dumpFolder: ConfigRegistry.dumpFolder, checkpointFolder: ConfigRegistry.checkpointFolder,
            expertParallelDegree: e.expertParallelDegree, json: json, familyArgs: args)
    }
}
