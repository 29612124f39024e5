import Foundation
import MoECheckpoint

extension Qwen3Args: RegistryModelArguments {}

extension Qwen3MoE {
    /// Qwen3-MoE in the registry: TorchTitan's `qwen3` module (its MoE configs) and HF `qwen3_moe`.
    public static let family = ModelFamily(
        name: Qwen3MoE.familyName, torchTitanModules: ["qwen3"], hfModelTypes: ["qwen3_moe"],
        numExperts: { spec in try resolvedArgs(spec).args.moeArgs.numExperts },
        load: { spec, expertParallel in try load(spec, expertParallel: expertParallel) },
        registryConfig: { name, seqLen in try Qwen3Flavors.registryConfig(name, seqLen: seqLen) },
        registryConfigNames: Qwen3Flavors.registry.map(\.name),
        refusedRegistryConfigs: Dictionary(
            uniqueKeysWithValues: Qwen3Flavors.denseConfigs.map {
                ($0, "is a dense Qwen3 model (no MoE layers); moe-eval evaluates MoE models")
            }),
        hfConversion: { request in try hfConversion(request) })

    static func load(_ spec: ModelSpec, expertParallel: ExpertParallelGroup?) throws -> LoadedModel {
        let start = Date()
        let resolved = try resolvedArgs(spec)
        let source = try Qwen3WeightSource.open(at: spec.checkpoint, args: resolved.args)
        let compute = try spec.resolveCompute(source)
        let model = try Qwen3MoE(args: resolved.args, weights: source, expertParallel: expertParallel, compute: compute.precision)
        return LoadedModel(
            model: model, family: family, modelArgs: resolved.args, source: source,
            trainConfig: resolved.config, argsOrigin: resolved.origin,
            loadSeconds: Date().timeIntervalSince(start), compute: compute.precision, computeReason: compute.reason)
    }

    static func resolvedArgs(_ spec: ModelSpec) throws -> (args: Qwen3Args, origin: String, config: TrainConfig?) {
        guard let resolved = try Qwen3Args.resolve(spec) else {
            throw ModelArgsError(
                message:
                    "no Qwen3-MoE model args for \(spec.checkpoint.path): pass --module qwen3 --config NAME, --model-args FILE.json with \"family\": \"qwen3\", or keep the HF config.json (model_type qwen3_moe) beside the weights"
            )
        }
        return resolved
    }
}
