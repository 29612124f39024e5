import Foundation
import MoECheckpoint

extension GptOssArgs: RegistryModelArguments {}

extension GptOss {
    /// gpt-oss in the registry: TorchTitan's `gpt_oss` module and HF `gpt_oss`.
    public static let family = ModelFamily(
        name: GptOss.familyName, torchTitanModules: [GptOssConfigs.module], hfModelTypes: [GptOssArgs.family],
        numExperts: { spec in try resolvedArgs(spec).args.moeArgs.numExperts },
        load: { spec, expertParallel in try load(spec, expertParallel: expertParallel) },
        registryConfig: { name, seqLen in try GptOssConfigs.registryConfig(name, seqLen: seqLen) },
        registryConfigNames: GptOssConfigs.names,
        describesModelArgs: { object in GptOssArgs.describesGptOss(object) },
        hfConversion: { request in try hfConversion(request) })

    static func load(_ spec: ModelSpec, expertParallel: ExpertParallelGroup?) throws -> LoadedModel {
        let start = Date()
        let resolved = try resolvedArgs(spec)
        let store = try GptOssWeights.openStore(at: spec.checkpoint)
        let weights = try GptOssWeightSet(store: store, args: resolved.args)
        // The checkpoint's tensors under their stored names: what results files and inspect report about the source.
        let era: NamingEra = weights.naming == .huggingFace ? .huggingface : .v0_3
        let source = try NamedWeightSource(store: store, naming: StoredNames(era: era))
        let compute = try spec.resolveCompute(source)
        let model = try GptOss(weights: weights, expertParallel: expertParallel, compute: compute.precision)
        return LoadedModel(
            model: model, family: family, modelArgs: resolved.args, source: source,
            trainConfig: try spec.loadTrainConfig(), argsOrigin: resolved.origin,
            loadSeconds: Date().timeIntervalSince(start), compute: compute.precision, computeReason: compute.reason)
    }

    static func resolvedArgs(_ spec: ModelSpec) throws -> (args: GptOssArgs, origin: String) {
        guard let resolved = try GptOssLoading.args(for: spec) else {
            throw ModelArgsError(
                message:
                    "no gpt-oss model args for \(spec.checkpoint.path): pass --module gpt_oss --config NAME, --model-args FILE.json with \"family\": \"gpt_oss\", or keep the HF config.json (model_type gpt_oss) beside the weights"
            )
        }
        return resolved
    }

    /// Every stored key under its own name (gpt-oss maps names itself, in GptOssWeightSet).
    struct StoredNames: TensorNaming {
        let era: NamingEra
        func nameMap(for store: any RawTensorStore) throws -> TensorNameMap {
            TensorNameMap(era: era, direct: Dictionary(uniqueKeysWithValues: store.rawTensorInfos.keys.map { ($0, $0) }))
        }
    }

    /// TorchTitan 0.3.0's gpt_oss: YaRN whenever rope_scaling has a factor above 1; every RMSNorm at norm_eps.
    public var numerics: Numerics {
        Numerics(
            yarn: args.yarnActive, finalNormEps: Float(args.normEps),
            origin: "gpt_oss (TorchTitan 0.3.0: YaRN from rope_scaling, final norm eps = norm_eps)")
    }
}
