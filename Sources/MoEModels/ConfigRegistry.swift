import Foundation
import MoEJSON

/// TorchTitan 0.3.0's config registry: the `--module M --config NAME` functions of
/// `torchtitan/models/<module>/config_registry.py` that build text-only DeepSeek-V3 models, reduced to what an
/// evaluation reads. 0.3.0 has no TOML; these names are what users train with.
/// `tools/reference/torchtitan030_registry.py` extracts the same values from the released wheel's source
/// into the golden that `ConfigRegistryTests` compares against.
public enum ConfigRegistry {
    public struct Entry: Sendable {
        public var module: String
        public var name: String
        /// The `model_registry(flavor)` the config builds.
        public var flavor: String
        /// The model arguments with `max_seq_len` = the flavor's RoPE `max_seq_len` (the longest `training.seq_len`
        /// TorchTitan accepts); `config(…)` sets it to the training seq_len as `update_from_config` does.
        public var args: ModelArgs
        public var seqLen: Int
        public var hfAssetsPath: String
        public var dataset: String
        public var expertParallelDegree: Int
        public var checkpointInterval: Int
    }

    /// TorchTitan's `Trainer.Config.dump_folder` and `CheckpointManager.Config.folder` defaults (0.3.0): checkpoints
    /// land in `./outputs/checkpoint/step-N`.
    public static let dumpFolder = "./outputs"
    public static let checkpointFolder = "checkpoint"

    /// Configs of these modules that moe-eval cannot evaluate, and why.
    public static let refused: [String: (module: String, reason: String)] = {
        var list: [String: (module: String, reason: String)] = [
            "kimi_k2_5_debugmodel": ("kimi_k2_7", "has a vision encoder (multimodal); moe-eval evaluates text-only DeepSeek-V3 models"),
            "kimi_vl_a3b": ("kimi_k2_7", "has a vision encoder (multimodal); moe-eval evaluates text-only DeepSeek-V3 models"),
            "kimi_k2_5": ("kimi_k2_7", "has a vision encoder (multimodal); moe-eval evaluates text-only DeepSeek-V3 models"),
        ]
        for family in ModelRegistry.families {
            for (name, reason) in family.refusedRegistryConfigs { list[name] = (family.name, reason) }
        }
        return list
    }()

    public static var modules: [String] { ModelRegistry.families.flatMap(\.torchTitanModules) }

    public static let entries: [Entry] = {
        var list: [Entry] = []
        func add(
            _ module: String, _ names: [String], flavor: String, args: ModelArgs, seqLen: Int, assets: String,
            dataset: String, ep: Int, interval: Int, epOverrides: [String: Int] = [:]
        ) {
            for name in names {
                list.append(
                    Entry(
                        module: module, name: name, flavor: flavor, args: args, seqLen: seqLen, hfAssetsPath: assets,
                        dataset: dataset, expertParallelDegree: epOverrides[name] ?? ep, checkpointInterval: interval))
            }
        }
        // The variants (_mtp, _mxfp8, _hybridep, _minimal_async_ep, _float8) change training kernels, communication
        // or add MTP heads, not the main model's arguments; `_minimal_async_ep` resets expert_parallel_degree to 1.
        add(
            "deepseek_v3",
            [
                "deepseek_v3_debugmodel", "deepseek_v3_debugmodel_mtp", "deepseek_v3_debugmodel_mxfp8",
                "deepseek_v3_debugmodel_hybridep", "deepseek_v3_debugmodel_minimal_async_ep",
            ],
            flavor: "debugmodel", args: dsv3("debugmodel"), seqLen: 2048, assets: "./tests/assets/tokenizer",
            dataset: "c4_test", ep: 1, interval: 10)
        add(
            "deepseek_v3", ["deepseek_v3_16b", "deepseek_v3_16b_hybridep", "deepseek_v3_16b_minimal_async_ep"],
            flavor: "16B", args: dsv3("16B"), seqLen: 4096, assets: "./assets/hf/deepseek-moe-16b-base",
            dataset: "c4", ep: 8, interval: 10, epOverrides: ["deepseek_v3_16b_minimal_async_ep": 1])
        add(
            "deepseek_v3", ["deepseek_v3_671b", "deepseek_v3_671b_float8"],
            flavor: "671B", args: dsv3("671B"), seqLen: 4096, assets: "./assets/hf/DeepSeek-V3.1-Base",
            dataset: "c4", ep: 2, interval: 500)
        add(
            "kimi_k2_7", ["moonlight_16b_a3b"], flavor: "moonlight-16B-A3B", args: moonlight, seqLen: 4096,
            assets: "./assets/hf/Moonlight-16B-A3B", dataset: "c4", ep: 8, interval: 500)
        return list
    }()

    /// 0.3.0's DeepSeek-V3 flavors hold 0.2.2's numbers; the RoPE cache is built for 4096 × 4 positions.
    static func dsv3(_ flavor: String) -> ModelArgs {
        var args = Flavors.args(for: flavor)!
        args.maxSeqLen = 4096 * 4
        return args
    }

    /// Moonlight 16B-A3B (`_moonlight_16b_a3b_config` with theta 50000 and max_seq_len 8192): sigmoid routing with
    /// route norm, no expert groups, and plain RoPE (no YaRN: `scaling` stays "none", so `rope_factor` is 1).
    static var moonlight: ModelArgs {
        var a = ModelArgs()
        a.vocabSize = 163_840; a.dim = 2048; a.interDim = 11_264; a.moeInterDim = 1408; a.nLayers = 27; a.nDenseLayers = 1
        a.nHeads = 16; a.normEps = 1e-5; a.qLoraRank = 0; a.kvLoraRank = 512
        a.qkNopeHeadDim = 128; a.qkRopeHeadDim = 64; a.vHeadDim = 128
        a.maxSeqLen = 8192; a.originalSeqLen = 4096; a.ropeTheta = 50_000; a.ropeFactor = 1; a.betaFast = 32; a.betaSlow = 1
        a.mscale = 1.0
        a.moeArgs.numExperts = 64; a.moeArgs.numSharedExperts = 2; a.moeArgs.topK = 6; a.moeArgs.scoreFunc = "sigmoid"
        a.moeArgs.routeNorm = true; a.moeArgs.routeScale = 2.446; a.moeArgs.scoreBeforeExperts = false
        a.moeArgs.numExpertGroups = nil; a.moeArgs.numLimitedGroups = nil; a.moeArgs.gateBias = false
        a.moeArgs.loadBalanceCoeff = 1e-3
        return a
    }

    public static func names(module: String?) -> [String] {
        let families = ModelRegistry.families.filter { family in module.map(family.torchTitanModules.contains) ?? true }
        let evaluable = entries.filter { module == nil || $0.module == module }.map(\.name) + families.flatMap(\.registryConfigNames)
        let others = refused.filter { module == nil || $0.value.module == module }.map(\.key)
        return (evaluable + others).sorted()
    }

    /// The entry `--module module --config name` selects; the error names the known configs.
    public static func entry(module: String?, name: String) throws -> Entry {
        if let module, !modules.contains(module) {
            throw ModelArgsError(
                message: "--module \(module): not a TorchTitan 0.3 module with MoE configs (known: \(modules.joined(separator: ", ")))")
        }
        if let refusal = refused[name], module == nil || module == refusal.module {
            throw ModelArgsError(message: "--config \(name) (--module \(refusal.module)) \(refusal.reason)")
        }
        guard let entry = entries.first(where: { $0.name == name && (module == nil || $0.module == module) }) else {
            // A path-like name is a TOML file that is not there, not a misspelt registry name.
            if name.hasSuffix(".toml") || name.contains("/") {
                throw ModelArgsError(message: "cannot read config file \(name): no such file")
            }
            let scope = module.map { "module \($0)" } ?? "any module"
            let hint = module == nil ? " (pass --module too, or a path to an existing TOML file)" : ""
            throw ModelArgsError(
                message:
                    "--config \(name): not a file, and not a TorchTitan 0.3.0 config of \(scope)\(hint); known: \(names(module: module).joined(separator: ", "))"
            )
        }
        return entry
    }

    /// The train config the registry entry describes, with `training.seq_len` overridden when `seqLen` is given.
    /// As 0.3.0's `update_from_config`, the RoPE `max_seq_len` becomes the training seq_len, which may not exceed
    /// the flavor's own.
    public static func config(module: String?, name: String, seqLen: Int? = nil) throws -> TrainConfig {
        for family in ModelRegistry.families where module.map(family.torchTitanModules.contains) ?? true {
            if let config = try family.registryConfig(name, seqLen) { return config }
        }
        let e = try entry(module: module, name: name)
        let seq = seqLen ?? e.seqLen
        guard seq >= 1 else { throw ModelArgsError(message: "training.seq_len must be ≥ 1, not \(seq)") }
        guard seq <= e.args.maxSeqLen else {
            throw ModelArgsError(
                message:
                    "training.seq_len \(seq) exceeds the RoPE maximum sequence length \(e.args.maxSeqLen) of \(e.module) flavor \(e.flavor) (TorchTitan refuses it too)"
            )
        }
        var args = e.args
        args.maxSeqLen = seq
        let json = registryConfigJSON(
            module: e.module, specName: e.module == "kimi_k2_7" ? "kimi_k2_5" : e.module, config: e.name,
            flavor: e.flavor, hfAssetsPath: e.hfAssetsPath, seqLen: seq, dataset: e.dataset,
            expertParallelDegree: e.expertParallelDegree, checkpointInterval: e.checkpointInterval)
        return TrainConfig(
            path: "--module \(e.module) --config \(e.name)", modelName: e.module, flavor: e.flavor,
            hfAssetsPath: e.hfAssetsPath, seqLen: seq, dataset: e.dataset, datasetPath: nil,
            dumpFolder: dumpFolder, checkpointFolder: checkpointFolder,
            expertParallelDegree: e.expertParallelDegree, json: json, registryArgs: args)
    }

    /// The job config a registry entry stands for, as the JSON recorded with the results (keys sorted, so that
    /// the same entry always gives the same bytes).
    static func registryConfigJSON(
        module: String, specName: String, config: String, flavor: String, hfAssetsPath: String,
        seqLen: Int, dataset: String, expertParallelDegree: Int, checkpointInterval: Int
    ) -> Data {
        let object: JSONValue = .object([
            "checkpoint": .object(["folder": .string(checkpointFolder), "interval": .int(checkpointInterval)]),
            "config": .string(config),
            "dataloader": .object(["dataset": .string(dataset)]),
            "dump_folder": .string(dumpFolder),
            "hf_assets_path": .string(hfAssetsPath),
            "model_spec": .object(["flavor": .string(flavor), "name": .string(specName)]),
            "module": .string(module),
            "parallelism": .object(["expert_parallel_degree": .int(expertParallelDegree)]),
            "torchtitan_version": .string("0.3.0"),
            "training": .object(["seq_len": .int(seqLen)]),
        ])
        return Data(object.serialized.utf8)
    }
}
