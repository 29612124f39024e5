import Foundation
import MoECheckpoint
import MoETensor

/// gpt-oss tensor names: TorchTitan 0.3.0's DCP keys (`GptOssModel.state_dict()`; the fused QKV projection saves
/// split `wq/wk/wv` through its state-dict hook) and Hugging Face `GptOssForCausalLM`'s. Declared once, as
/// TorchTitan name → shape, for both the shape check and the loader.
public enum GptOssNaming: String, Sendable {
    case torchTitan = "TorchTitan 0.3.0"
    case huggingFace = "Hugging Face GptOssForCausalLM"

    /// HF names when the embedding is spelled HF's way.
    public static func detect(_ keys: some Collection<String>) -> GptOssNaming {
        keys.contains("model.embed_tokens.weight") ? .huggingFace : .torchTitan
    }
}

public enum GptOssWeights {
    static let expertPrefix = "moe.routed_experts.inner_experts."

    /// Every tensor the args need, by TorchTitan 0.3.0 name, in load order.
    public static func expectedShapes(_ a: GptOssArgs) -> [(name: String, shape: [Int])] {
        let d = a.dim, q = a.queryWidth, kv = a.keyValueWidth, e = a.moeArgs.numExperts, f = a.moeInterDim
        var list: [(String, [Int])] = [("tok_embeddings.weight", [a.vocabSize, d])]
        for i in 0..<a.nLayers {
            let p = "layers.\(i)."
            list.append((p + "attention_norm.weight", [d]))
            list.append((p + "attention.qkv_linear.wq.weight", [q, d]))
            list.append((p + "attention.qkv_linear.wk.weight", [kv, d]))
            list.append((p + "attention.qkv_linear.wv.weight", [kv, d]))
            if a.qkvBias {
                list.append((p + "attention.qkv_linear.wq.bias", [q]))
                list.append((p + "attention.qkv_linear.wk.bias", [kv]))
                list.append((p + "attention.qkv_linear.wv.bias", [kv]))
            }
            list.append((p + "attention.wo.weight", [d, q]))
            if a.woBias { list.append((p + "attention.wo.bias", [d])) }
            if a.attentionSinks { list.append((p + "attention.sinks", [a.nHeads])) }
            list.append((p + "ffn_norm.weight", [d]))
            list.append((p + "moe.router.gate.weight", [e, d]))
            if a.moeArgs.gateBias { list.append((p + "moe.router.gate.bias", [e])) }
            if a.moeArgs.loadBalanceCoeff != nil { list.append((p + "moe.expert_bias_E", [e])) }
            list.append((p + expertPrefix + "mlp1_weight_EGD", [e, 2 * f, d]))
            list.append((p + expertPrefix + "mlp1_bias_EG", [e, 2 * f]))
            list.append((p + expertPrefix + "mlp2_weight_EDF", [e, d, f]))
            list.append((p + expertPrefix + "mlp2_bias_ED", [e, d]))
        }
        list.append(("norm.weight", [d]))
        if !a.enableWeightTying { list.append(("lm_head.weight", [a.vocabSize, d])) }
        return list
    }

    /// How a TorchTitan name is stored under HF names; `transposed`: HF keeps the expert matrices `[E, in, out]`
    /// (`gate_up_proj [E, D, 2F]`, `down_proj [E, F, D]`) where TorchTitan keeps `[E, out, in]`.
    /// nil: HF has no such tensor (the load-balancing `expert_bias_E`).
    public static func hfName(_ name: String) -> (name: String, transposed: Bool)? {
        switch name {
        case "tok_embeddings.weight": return ("model.embed_tokens.weight", false)
        case "norm.weight": return ("model.norm.weight", false)
        case "lm_head.weight": return ("lm_head.weight", false)
        default: break
        }
        let parts = name.split(separator: ".", maxSplits: 2).map(String.init)
        guard parts.count == 3, parts[0] == "layers", Int(parts[1]) != nil else { return nil }
        let p = "model.layers.\(parts[1])."
        switch parts[2] {
        case "attention_norm.weight": return (p + "input_layernorm.weight", false)
        case "ffn_norm.weight": return (p + "post_attention_layernorm.weight", false)
        case "attention.qkv_linear.wq.weight": return (p + "self_attn.q_proj.weight", false)
        case "attention.qkv_linear.wq.bias": return (p + "self_attn.q_proj.bias", false)
        case "attention.qkv_linear.wk.weight": return (p + "self_attn.k_proj.weight", false)
        case "attention.qkv_linear.wk.bias": return (p + "self_attn.k_proj.bias", false)
        case "attention.qkv_linear.wv.weight": return (p + "self_attn.v_proj.weight", false)
        case "attention.qkv_linear.wv.bias": return (p + "self_attn.v_proj.bias", false)
        case "attention.wo.weight": return (p + "self_attn.o_proj.weight", false)
        case "attention.wo.bias": return (p + "self_attn.o_proj.bias", false)
        case "attention.sinks": return (p + "self_attn.sinks", false)
        case "moe.router.gate.weight": return (p + "mlp.router.weight", false)
        case "moe.router.gate.bias": return (p + "mlp.router.bias", false)
        case expertPrefix + "mlp1_weight_EGD": return (p + "mlp.experts.gate_up_proj", true)
        case expertPrefix + "mlp1_bias_EG": return (p + "mlp.experts.gate_up_proj_bias", false)
        case expertPrefix + "mlp2_weight_EDF": return (p + "mlp.experts.down_proj", true)
        case expertPrefix + "mlp2_bias_ED": return (p + "mlp.experts.down_proj_bias", false)
        default: return nil
        }
    }

    /// Keys a TorchTitan checkpoint may hold that carry no weight the forward needs.
    static func ignorable(_ key: String) -> Bool {
        key.hasSuffix("moe.tokens_per_expert_E") || key.hasSuffix("rope.cache") || key == "freqs_cis"
    }

    /// Opens the checkpoint at `url` (DCP folder, a `step-N` root, a safetensors file or folder) as a raw store.
    public static func openStore(at url: URL) throws -> any RawTensorStore {
        let folder = checkpointFolderEvaluated(at: url)
        let fm = FileManager.default
        if url.lastPathComponent == ".metadata" { return try DCPCheckpoint(directory: url.deletingLastPathComponent()) }
        if fm.fileExists(atPath: folder.appendingPathComponent(".metadata").path) { return try DCPCheckpoint(directory: folder) }
        return try SafetensorsCheckpoint(url: folder)
    }
}

/// gpt-oss weights read from a raw store by stored name, checked against the args before any tensor is read.
public final class GptOssWeightSet: @unchecked Sendable {
    public let store: any RawTensorStore
    public let naming: GptOssNaming
    public let args: GptOssArgs
    let expected: [String: [Int]]

    public var description: String { store.description }

    /// `allowUnused`: tolerate tensors the args do not use (experiments that switch a feature off).
    public init(store: any RawTensorStore, args: GptOssArgs, allowUnused: Bool = false) throws {
        try args.validate()
        self.store = store
        self.args = args
        let infos = store.rawTensorInfos
        naming = GptOssNaming.detect(infos.keys)
        let shapes = GptOssWeights.expectedShapes(args)
        expected = Dictionary(uniqueKeysWithValues: shapes.map { ($0.name, $0.shape) })
        var used = Set<String>()
        for (name, shape) in shapes {
            let (stored, storedShape) = try Self.storedName(name, shape: shape, naming: naming, args: args, source: store.description)
            guard let info = infos[stored] else {
                throw ModelLoadError("\(store.description): tensor \(stored) is missing (gpt_oss model args need shape \(storedShape))")
            }
            guard info.shape == storedShape else {
                throw ModelLoadError(
                    "\(store.description): tensor \(stored) has shape \(info.shape) but the gpt_oss model args imply \(storedShape)")
            }
            guard info.dtype.isFloatingPoint else {
                throw ModelLoadError("\(store.description): tensor \(stored) is \(info.dtype.torchName), not a floating-point type")
            }
            used.insert(stored)
        }
        let unused = infos.filter { $0.value.elementCount > 0 && !used.contains($0.key) && !GptOssWeights.ignorable($0.key) }
            .keys.sorted()
        if let quantized = unused.first(where: { $0.hasSuffix("_blocks") || $0.hasSuffix("_scales") }) {
            throw ModelLoadError(
                "\(store.description): tensor \(quantized) is an MXFP4-quantized expert weight; moe-eval reads unquantized gpt-oss checkpoints (bf16/fp32 gate_up_proj, down_proj)"
            )
        }
        if !unused.isEmpty && !allowUnused {
            throw ModelLoadError(
                "\(store.description): \(unused.count) tensor(s) not used by the gpt_oss model args (e.g. \(unused.prefix(5).joined(separator: ", "))); the config does not match this checkpoint"
            )
        }
    }

    /// The stored name and shape of TorchTitan tensor `name`.
    static func storedName(
        _ name: String, shape: [Int], naming: GptOssNaming, args: GptOssArgs,
        source: String
    ) throws -> (String, [Int]) {
        guard naming == .huggingFace else { return (name, shape) }
        guard let hf = GptOssWeights.hfName(name) else {
            throw ModelLoadError(
                "\(source): Hugging Face gpt-oss checkpoints have no \(name); read it with load_balance_coeff null (no expert bias)")
        }
        return (hf.name, hf.transposed ? [shape[0], shape[2], shape[1]] : shape)
    }

    /// Tensor `name` (TorchTitan name) in TorchTitan's layout, as a weight in its stored dtype; under expert
    /// parallelism `experts` limits a grouped tensor to some experts (only their bytes are read where the format allows).
    public func load(_ name: String, experts: Range<Int>? = nil) throws -> Weight {
        guard let shape = expected[name] else {
            throw ModelLoadError("\(description): \(name) is not a gpt_oss tensor of these model args")
        }
        let (stored, _) = try Self.storedName(name, shape: shape, naming: naming, args: args, source: description)
        let tensor = try experts.map { try store.loadRaw(stored, leading: $0) } ?? store.loadRaw(stored)
        let transposed = naming == .huggingFace && GptOssWeights.hfName(name)?.transposed == true
        do {
            if transposed { return try Self.transposingLastTwo(tensor) }
            return try Weight(dtype: tensor.dtype, shape: tensor.shape, bytes: tensor.bytes, owner: tensor.owner)
        } catch {
            throw ModelLoadError("\(description): tensor \(stored): \(error)")
        }
    }

    /// fp32 values of a small tensor (norms, biases, sinks).
    public func vector(_ name: String) throws -> [Float] { try load(name).toFloatArray() }

    /// `[n, a, b]` → `[n, b, a]`, element by element in the stored dtype, into memory the weight owns.
    static func transposingLastTwo(_ t: StoredTensor) throws -> Weight {
        let n = t.shape[0], rows = t.shape[1], columns = t.shape[2], size = t.dtype.byteSize
        let buffer = OwnedBytes(byteCount: t.bytes.count)
        let source = t.bytes, target = buffer.bytes
        for m in 0..<n {
            let base = m * rows * columns
            for r in 0..<rows {
                for c in 0..<columns {
                    let from = (base + r * columns + c) * size, to = (base + c * rows + r) * size
                    for byte in 0..<size { target[to + byte] = source[from + byte] }
                }
            }
        }
        return try Weight(
            dtype: t.dtype, shape: [n, columns, rows],
            bytes: UnsafeRawBufferPointer(target), owner: buffer)
    }
}

/// Heap bytes that live as long as the weight viewing them.
final class OwnedBytes {
    let bytes: UnsafeMutableRawBufferPointer
    init(byteCount: Int) { bytes = .allocate(byteCount: max(byteCount, 1), alignment: 64) }
    deinit { bytes.deallocate() }
}
