import Foundation
import MoECheckpoint
import MoEJSON
import MoETensor

/// A gpt-oss checkpoint written as Hugging Face `GptOssForCausalLM` safetensors: TorchTitan 0.3.0's
/// `GptOssStateDictAdapter.to_hf` names for the attention, norms, router and head, and — since that adapter's
/// expert entries (`mlp1_weight` without the `_EGD` suffix, MXFP4 `*_blocks`) never match 0.3.0's keys and it
/// drops them — the unquantized expert tensors transformers' `GptOssExperts` reads: `gate_up_proj [E, D, 2F]`
/// (gate/linear columns still interleaved), `gate_up_proj_bias`, `down_proj [E, F, D]`, `down_proj_bias`.
/// HF has no load-balancing expert bias: a nonzero `expert_bias_E` is reported, since transformers then routes differently.
public enum GptOssHFExport {
    public struct Summary: Sendable {
        public var tensors = 0
        public var bytes = 0
        public var files: [String] = []
        public var dtypes: Set<String> = []
        public var notes: [String] = []
    }

    /// Writes the shards, `model.safetensors.index.json` (when more than one shard) and `config.json` into `folder`.
    /// `dtype` nil keeps each tensor's stored dtype. A shard closes before a tensor that would take it past
    /// `maxShardSize`; memory holds one shard's converted tensors at most. `progress(done, total)` after each tensor.
    public static func write(
        _ weights: GptOssWeightSet, dtype: DType?, maxShardSize: Int, into folder: URL,
        progress: ((Int, Int) -> Void)? = nil
    ) throws -> Summary {
        let args = weights.args
        var summary = Summary()
        if let bad = dtype, bad != .float32 && bad != .bfloat16 {
            throw ModelLoadError("gpt_oss export: dtype \(bad.torchName) is not supported (float32 or bfloat16)")
        }
        var plan: [(hf: String, tt: String, transposed: Bool)] = []
        for (name, _) in GptOssWeights.expectedShapes(args) {
            guard let hf = GptOssWeights.hfName(name) else {
                let bias = try weights.vector(name)
                if let peak = bias.map(abs).max(), peak > 0 {
                    summary.notes.append(
                        "\(name) is nonzero (max |bias| \(peak)): GptOssForCausalLM has no selection bias, so transformers may route some tokens to other experts than TorchTitan"
                    )
                }
                continue
            }
            plan.append((hf.name, name, hf.transposed))
        }
        plan.sort { $0.hf < $1.hf }

        var shards: [[StoredTensor]] = []
        var current: [StoredTensor] = [], currentBytes = 0
        var weightMap: [(String, Int)] = []
        for item in plan {
            let weight = try weights.load(item.tt)
            let tensor = try storedTensor(weight, name: item.hf, transposed: item.transposed, dtype: dtype ?? weight.dtype)
            if !current.isEmpty && currentBytes + tensor.bytes.count > maxShardSize {
                shards.append(current)
                current = []
                currentBytes = 0
            }
            current.append(tensor)
            currentBytes += tensor.bytes.count
            weightMap.append((item.hf, shards.count))
            summary.tensors += 1
            summary.bytes += tensor.bytes.count
            summary.dtypes.insert(tensor.dtype.torchName)
            progress?(summary.tensors, plan.count)
        }
        if !current.isEmpty { shards.append(current) }
        let names =
            shards.count == 1
            ? ["model.safetensors"]
            : (1...shards.count).map { String(format: "model-%05d-of-%05d.safetensors", $0, shards.count) }
        for (index, shard) in shards.enumerated() {
            try SafetensorsWriter.write(shard, metadata: ["format": "pt"], to: folder.appendingPathComponent(names[index]))
        }
        if shards.count > 1 {
            try SafetensorsWriter.writeIndex(
                weightMap: Dictionary(uniqueKeysWithValues: weightMap.map { ($0.0, names[$0.1]) }),
                totalSize: summary.bytes, to: folder.appendingPathComponent("model.safetensors.index.json"))
        }
        summary.files = names
        var config = args.hfConfig()
        let mostBytes = dtype ?? (weights.store.rawTensorInfos.values.max { $0.byteCount < $1.byteCount }?.dtype ?? .float32)
        config.entries.removeAll { $0.key == "dtype" }
        config.append("dtype", .string(mostBytes.torchName))
        try Data(JSONValue.object(config).prettyPrinted.utf8).write(to: folder.appendingPathComponent("config.json"))
        return summary
    }

    /// A weight (TorchTitan layout) as an HF tensor: `[E, out, in]` → `[E, in, out]` when `transposed`, in `dtype`.
    static func storedTensor(_ w: Weight, name: String, transposed: Bool, dtype: DType) throws -> StoredTensor {
        let shape = transposed ? [w.shape[0], w.shape[2], w.shape[1]] : w.shape
        let count = w.count, size = dtype.byteSize
        let buffer = OwnedBytes(byteCount: count * size)
        let widened = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
        defer { widened.deallocate() }
        w.widen(from: 0, count: count, into: widened)
        func sourceIndex(_ i: Int) -> Int {
            guard transposed else { return i }
            let rows = w.shape[1], columns = w.shape[2], matrix = rows * columns
            let m = i / matrix, within = i % matrix, c = within / rows, r = within % rows
            return m * matrix + r * columns + c
        }
        switch dtype {
        case .float32:
            let out = buffer.bytes.bindMemory(to: Float.self)
            for i in 0..<count { out[i] = widened[sourceIndex(i)] }
        case .bfloat16:
            let out = buffer.bytes.bindMemory(to: UInt16.self)
            for i in 0..<count { out[i] = bfloat16Bits(widened[sourceIndex(i)]) }
        default:
            throw ModelLoadError("gpt_oss export: dtype \(dtype.torchName) is not supported")
        }
        return try StoredTensor(
            name: name, dtype: dtype, shape: shape,
            bytes: UnsafeRawBufferPointer(start: buffer.bytes.baseAddress, count: count * size), owner: buffer)
    }

    /// Round to nearest even, as torch's `.to(torch.bfloat16)`; a NaN stays a (quiet) NaN.
    static func bfloat16Bits(_ value: Float) -> UInt16 {
        if value.isNaN { return 0x7FC0 }
        let bits = value.bitPattern
        return UInt16(truncatingIfNeeded: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
    }
}

extension GptOss {
    /// `convert` for gpt-oss: `GptOssForCausalLM`, with every tensor checked against the args (GptOssWeightSet)
    /// before anything is written.
    static func hfConversion(_ request: HFConversionRequest) throws -> HFConversion {
        let spec = request.spec
        try spec.refuseDeepSeekOnlyOptions(family: familyName)
        try request.refuseRandomWeights(family: familyName)
        let resolved = try resolvedArgs(spec)
        let weights = try GptOssWeightSet(store: GptOssWeights.openStore(at: spec.checkpoint), args: resolved.args)
        let dtype: DType?
        switch request.dtype {
        case .keep: dtype = nil
        case .bfloat16: dtype = .bfloat16
        case .float32: dtype = .float32
        }
        if dtype == nil,
            let (name, info) = weights.store.rawTensorInfos.sorted(by: { $0.key < $1.key }).first(where: {
                $0.value.dtype.isFloatingPoint && $0.value.dtype != .float32 && $0.value.dtype != .bfloat16
            })
        {
            throw ModelArgsError(
                message:
                    "\(weights.description): tensor '\(name)' is stored as \(info.dtype.torchName), which the GptOssForCausalLM export does not write; pass --dtype bf16 or --dtype fp32"
            )
        }
        let trainConfig = try spec.loadTrainConfig()
        return HFConversion(sourceDescription: weights.description, trainConfig: trainConfig) { folder, _, progress in
            let written = try GptOssHFExport.write(
                weights, dtype: dtype, maxShardSize: request.maxShardSize, into: folder, progress: progress)
            return HFConversionSummary(
                tensors: written.tensors, bytes: written.bytes, files: written.files.count, dtypes: written.dtypes.sorted(),
                config: "gpt_oss (GptOssForCausalLM), model args from \(resolved.origin)", notes: written.notes)
        }
    }
}
