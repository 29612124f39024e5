import Foundation
import MoECheckpoint

extension ModelArgs: ModelArguments {}

extension DeepSeekV3 {
    /// DeepSeek-V3 in the registry: TorchTitan's `deepseek_v3` and `kimi_k2_7` (the same architecture), HF
    /// `deepseek_v3` (and `deepseek_v2` configs, read as the same model).
    public static let family = ModelFamily(
        name: DeepSeekV3.familyName, torchTitanModules: ["deepseek_v3", "kimi_k2_7"],
        hfModelTypes: ["deepseek_v3", "deepseek_v2"],
        numExperts: { spec in try ModelLoader.resolveArgs(spec, source: nil).args.moeArgs.numExperts },
        load: { spec, expertParallel in try load(spec, expertParallel: expertParallel) },
        hfConversion: { request in try hfConversion(request) })

    /// Args from the spec (ModelLoader.resolveArgs), numerics (below), then the model.
    static func load(_ spec: ModelSpec, expertParallel: ExpertParallelGroup?) throws -> LoadedModel {
        let start = Date()
        let source = try openWeightSource(at: spec.checkpoint)
        let resolved = try ModelLoader.resolveArgs(spec, source: source)
        let numerics = numerics(spec, args: resolved.args, source: source, hf: resolved.hf)
        let compute = try spec.resolveCompute(source)
        let model = try DeepSeekV3(
            args: resolved.args, weights: source, numerics: numerics, expertParallel: expertParallel, compute: compute.precision)
        return LoadedModel(
            model: model, family: family, modelArgs: resolved.args, source: source,
            trainConfig: resolved.config, argsOrigin: resolved.origin,
            loadSeconds: Date().timeIntervalSince(start), compute: compute.precision, computeReason: compute.reason)
    }

    /// Numerics from the key names' era, unless the spec or an HF config beside the weights says otherwise.
    static func numerics(_ spec: ModelSpec, args: ModelArgs, source: WeightSource, hf: HFModelConfig?) -> Numerics {
        var numerics = Numerics.resolve(
            args: args, namingEra: source.namingEra, era: spec.era, yarn: spec.yarn, finalNormEps: spec.finalNormEps)
        if let hf, spec.yarn == nil, spec.era == nil {
            numerics.yarn = hf.yarn
            numerics.finalNormEps = spec.finalNormEps ?? hf.finalNormEps
            numerics.origin = "HF config (rope_scaling, rms_norm_eps)"
        }
        return numerics
    }
}
