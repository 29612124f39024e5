import Foundation
import MoECheckpoint
import MoEJSON
import MoETensor

/// A Qwen3-MoE checkpoint written as Hugging Face `Qwen3MoeForCausalLM` safetensors, named as TorchTitan 0.3.0's
/// `Qwen3StateDictAdapter.to_hf` names them (grouped experts split per expert), streamed by `HFExport.write`.
/// `Qwen3MoeForCausalLM` has no load-balancing bias: `expert_bias_E` is dropped, and a nonzero one is reported,
/// since transformers then routes some tokens to other experts than TorchTitan.
public enum Qwen3HFExport {
    /// The tensors to write, in model order (embedding, layers, final norm, lm_head), and what could not be carried over.
    public static func plan(
        source: WeightSource, args: Qwen3Args, dtype: HFExportDType, maxShardSize: Int
    ) throws
        -> (plan: HFExportPlan, notes: [String])
    {
        func outputDType(_ stored: DType) -> DType {
            guard stored.isFloatingPoint else { return stored }
            switch dtype {
            case .keep: return stored
            case .float32: return .float32
            case .bfloat16: return .bfloat16
            }
        }
        func info(_ name: String) throws -> TensorInfo {
            guard let info = source.tensorInfos[name] else { throw CheckpointError("\(source.description): tensor '\(name)' is missing") }
            return info
        }
        var tensors: [HFExportTensor] = []
        var experts: [HFExportTensor] = []
        var notes: [String] = []
        var layer = -1
        func flushExperts() { tensors += experts.sorted { $0.name.compare($1.name, options: .numeric) == .orderedAscending }; experts = [] }
        for (name, shape) in try Qwen3Naming.shapes(args) {
            let stored = try info(name)
            guard stored.shape == shape else {
                throw CheckpointError(
                    "\(source.description): tensor '\(name)' has shape \(stored.shape) but the qwen3 model args imply \(shape)")
            }
            if let (index, _) = Qwen3Naming.splitLayer(name), index != layer { flushExperts(); layer = index }
            if let hf = Qwen3Naming.hfName(name) {
                if name == Qwen3Naming.finalNorm { flushExperts() }
                tensors.append(
                    HFExportTensor(
                        name: hf, dtype: outputDType(stored.dtype), shape: shape,
                        origin: .whole(canonical: name), sourceDType: stored.dtype))
            } else if let names = Qwen3Naming.hfExpertNames(name, experts: shape[0]) {
                for (expert, hf) in names.enumerated() {
                    experts.append(
                        HFExportTensor(
                            name: hf, dtype: outputDType(stored.dtype), shape: Array(shape.dropFirst()),
                            origin: .expert(canonical: name, expert: expert), sourceDType: stored.dtype))
                }
            } else {
                throw CheckpointError("\(source.description): tensor '\(name)' has no Qwen3MoeForCausalLM name")
            }
        }
        flushExperts()
        for i in 0..<args.nLayers {
            let name = Qwen3Naming.Layer(i).expertBias
            guard source.tensorInfos[name] != nil else { continue }
            let stored = try source.load(name)
            let bias = try Weight(dtype: stored.dtype, shape: stored.shape, bytes: stored.bytes, owner: stored).toFloatArray()
            if let peak = bias.map({ abs($0) }).max(), peak > 0 {
                notes.append(
                    "\(name) is nonzero (max |bias| \(peak)): Qwen3MoeForCausalLM has no selection bias, so transformers may route some tokens to other experts than TorchTitan"
                )
            }
        }
        return (try HFExportPlan(tensors: tensors, maxShardSize: maxShardSize), notes)
    }

    /// Writes the shards, `model.safetensors.index.json` and `config.json` (`dtype` the one most bytes are in).
    public static func write(
        source: WeightSource, args: Qwen3Args, dtype: HFExportDType, maxShardSize: Int, into folder: URL,
        progress: ((Int, Int) -> Void)? = nil
    ) throws -> (plan: HFExportPlan, notes: [String]) {
        let (plan, notes) = try plan(source: source, args: args, dtype: dtype, maxShardSize: maxShardSize)
        try write(plan, source: source, args: args, into: folder, progress: progress)
        return (plan, notes)
    }

    /// Writes a plan made by `plan(…)`.
    static func write(
        _ plan: HFExportPlan, source: WeightSource, args: Qwen3Args, into folder: URL, progress: ((Int, Int) -> Void)?
    ) throws {
        try HFExport.write(plan, from: source, into: folder, progress: progress)
        var bytesByDType: [DType: Int] = [:]
        for t in plan.tensors { bytesByDType[t.dtype, default: 0] += t.byteCount }
        let mostBytes = bytesByDType.max { $0.value < $1.value }?.key ?? .float32
        try Data(args.hfConfig(torchDtype: mostBytes.torchName).prettyPrinted.utf8).write(to: folder.appendingPathComponent("config.json"))
    }
}

extension Qwen3MoE {
    /// `convert` for Qwen3-MoE: `Qwen3MoeForCausalLM`, planned (every tensor's name and shape checked against
    /// the args) before anything is written.
    static func hfConversion(_ request: HFConversionRequest) throws -> HFConversion {
        try request.spec.refuseDeepSeekOnlyOptions(family: familyName)
        try request.refuseRandomWeights(family: familyName)
        let resolved = try resolvedArgs(request.spec)
        let source = try Qwen3WeightSource.open(at: request.spec.checkpoint, args: resolved.args)
        let (plan, notes) = try Qwen3HFExport.plan(
            source: source, args: resolved.args, dtype: request.dtype, maxShardSize: request.maxShardSize)
        return HFConversion(sourceDescription: source.description, trainConfig: resolved.config) { folder, _, progress in
            try Qwen3HFExport.write(plan, source: source, args: resolved.args, into: folder, progress: progress)
            return HFConversionSummary(
                plan: plan, config: "qwen3_moe (Qwen3MoeForCausalLM), model args from \(resolved.origin)", notes: notes)
        }
    }
}
