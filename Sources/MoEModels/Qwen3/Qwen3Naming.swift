import Foundation
import MoECheckpoint
import MoETensor

/// Qwen3-MoE's tensor names and shapes, declared once for the loader, the shape check, `convert` and the
/// parameter count. Canonical names are TorchTitan 0.3.0's DCP keys (the fused `wqkv` is saved split as
/// `attention.qkv_linear.wq/wk/wv.weight`); HF names are `Qwen3MoeForCausalLM`'s, with one tensor per expert.
public enum Qwen3Naming {
    public static let embedding = "tok_embeddings.weight"
    public static let finalNorm = "norm.weight"
    public static let lmHead = "lm_head.weight"

    /// Names of layer `i`'s tensors.
    public struct Layer: Sendable {
        public let prefix: String
        public init(_ i: Int) { prefix = "layers.\(i)." }
        public var wq: String { prefix + "attention.qkv_linear.wq.weight" }
        public var wk: String { prefix + "attention.qkv_linear.wk.weight" }
        public var wv: String { prefix + "attention.qkv_linear.wv.weight" }
        public var wo: String { prefix + "attention.wo.weight" }
        public var qNorm: String { prefix + "attention.q_norm.weight" }
        public var kNorm: String { prefix + "attention.k_norm.weight" }
        public var attentionNorm: String { prefix + "attention_norm.weight" }
        public var ffnNorm: String { prefix + "ffn_norm.weight" }
        public var gate: String { prefix + "moe.router.gate.weight" }
        /// Grouped expert weights `[E, F, D]`, `[E, D, F]`, `[E, F, D]`.
        public var w1: String { prefix + "moe.routed_experts.inner_experts.w1_EFD" }
        public var w2: String { prefix + "moe.routed_experts.inner_experts.w2_EDF" }
        public var w3: String { prefix + "moe.routed_experts.inner_experts.w3_EFD" }
        /// The load-balancing bias (selection only); a buffer, present when trained with `load_balance_coeff`.
        public var expertBias: String { prefix + "moe.expert_bias_E" }
    }

    /// Every parameter tensor (not the expert-bias buffers) with its shape, in model order. Products are checked:
    /// this is what `Qwen3Args.validate()` proves fits in an Int.
    public static func shapes(_ a: Qwen3Args) throws -> [(name: String, shape: [Int])] {
        let d = a.dim, e = a.moeArgs.numExperts, f = a.moeInterDim
        let qWidth = try Checked.multiply(a.nHeads, a.headDim, what: "n_heads × head_dim")
        let kvWidth = try Checked.multiply(a.nKVHeads, a.headDim, what: "n_kv_heads × head_dim")
        var list: [(name: String, shape: [Int])] = [(embedding, [a.vocabSize, d])]
        for i in 0..<a.nLayers {
            let l = Layer(i)
            list.append((l.wq, [qWidth, d]))
            list.append((l.wk, [kvWidth, d]))
            list.append((l.wv, [kvWidth, d]))
            list.append((l.wo, [d, qWidth]))
            if a.qkNorm {
                list.append((l.qNorm, [a.headDim]))
                list.append((l.kNorm, [a.headDim]))
            }
            list.append((l.attentionNorm, [d]))
            list.append((l.ffnNorm, [d]))
            list.append((l.gate, [e, d]))
            list.append((l.w1, [e, f, d]))
            list.append((l.w2, [e, d, f]))
            list.append((l.w3, [e, f, d]))
        }
        list.append((finalNorm, [d]))
        if !a.enableWeightTying { list.append((lmHead, [a.vocabSize, d])) }
        return list
    }

    // MARK: Hugging Face names

    /// The HF name of a canonical tensor that HF stores whole (everything but the grouped expert weights and
    /// the expert bias, which `Qwen3MoeForCausalLM` does not have).
    public static func hfName(_ canonical: String) -> String? {
        switch canonical {
        case embedding: return "model.embed_tokens.weight"
        case finalNorm: return "model.norm.weight"
        case lmHead: return "lm_head.weight"
        default: break
        }
        guard let (layer, rest) = splitLayer(canonical) else { return nil }
        let p = "model.layers.\(layer)."
        switch rest {
        case "attention.qkv_linear.wq.weight": return p + "self_attn.q_proj.weight"
        case "attention.qkv_linear.wk.weight": return p + "self_attn.k_proj.weight"
        case "attention.qkv_linear.wv.weight": return p + "self_attn.v_proj.weight"
        case "attention.wo.weight": return p + "self_attn.o_proj.weight"
        case "attention.q_norm.weight": return p + "self_attn.q_norm.weight"
        case "attention.k_norm.weight": return p + "self_attn.k_norm.weight"
        case "attention_norm.weight": return p + "input_layernorm.weight"
        case "ffn_norm.weight": return p + "post_attention_layernorm.weight"
        case "moe.router.gate.weight": return p + "mlp.gate.weight"
        default: return nil
        }
    }

    /// The HF per-expert names of a grouped canonical expert weight (`gate_proj`/`down_proj`/`up_proj`).
    public static func hfExpertNames(_ canonical: String, experts: Int) -> [String]? {
        guard let (layer, rest) = splitLayer(canonical) else { return nil }
        let projection: String
        switch rest {
        case "moe.routed_experts.inner_experts.w1_EFD": projection = "gate_proj"
        case "moe.routed_experts.inner_experts.w2_EDF": projection = "down_proj"
        case "moe.routed_experts.inner_experts.w3_EFD": projection = "up_proj"
        default: return nil
        }
        return (0..<experts).map { "model.layers.\(layer).mlp.experts.\($0).\(projection).weight" }
    }

    static func splitLayer(_ canonical: String) -> (Int, String)? {
        let parts = canonical.split(separator: ".", maxSplits: 2)
        guard parts.count == 3, parts[0] == "layers", let layer = Int(parts[1]), layer >= 0 else { return nil }
        return (layer, String(parts[2]))
    }
}

/// A Qwen3-MoE checkpoint's tensors under canonical (TorchTitan 0.3.0) names: DCP or safetensors with
/// TorchTitan keys as they are, or HF `Qwen3MoeForCausalLM` safetensors mapped and experts stacked on load.
/// Keys that are neither are kept under their own name, so the model's unused-tensor check names them.
public final class Qwen3WeightSource: CheckpointWeightSource {
    public let store: any RawTensorStore
    public let tensorInfos: [String: TensorInfo]
    public let namingEra: NamingEra
    /// Canonical name → the file's key (whole tensors).
    let rawNames: [String: String]
    /// Canonical grouped expert weight → the file's per-expert keys, in expert order.
    let expertKeys: [String: [String]]

    public init(store: any RawTensorStore, args: Qwen3Args) throws {
        self.store = store
        let raw = store.rawTensorInfos
        var infos: [String: TensorInfo] = [:], names: [String: String] = [:], experts: [String: [String]] = [:]
        let isHF = raw.keys.contains { $0.hasPrefix("model.") }
        namingEra = isHF ? .huggingface : .v0_3
        if isHF {
            var claimed = Set<String>()
            for (canonical, _) in try Qwen3Naming.shapes(args) {
                if let hf = Qwen3Naming.hfName(canonical), let info = raw[hf] {
                    infos[canonical] = info; names[canonical] = hf; claimed.insert(hf)
                } else if let keys = Qwen3Naming.hfExpertNames(canonical, experts: args.moeArgs.numExperts),
                    let first = raw[keys[0]]
                {
                    for key in keys {
                        guard let info = raw[key] else {
                            throw CheckpointError(
                                "\(store.description): '\(key)' is missing ('\(keys[0])' is there; \(keys.count) experts expected)")
                        }
                        guard info == first else {
                            throw CheckpointError(
                                "\(store.description): expert '\(key)' is \(info.dtype.torchName) \(info.shape), but '\(keys[0])' is \(first.dtype.torchName) \(first.shape)"
                            )
                        }
                        claimed.insert(key)
                    }
                    infos[canonical] = TensorInfo(dtype: first.dtype, shape: [keys.count] + first.shape)
                    experts[canonical] = keys
                }
            }
            for (key, info) in raw where !claimed.contains(key) { infos[key] = info; names[key] = key }
        } else {
            for (key, info) in raw { infos[key] = info; names[key] = key }
        }
        tensorInfos = infos
        rawNames = names
        expertKeys = experts
    }

    /// A DCP folder (or a root of `step-N` folders: the latest), or a safetensors file or folder.
    public static func open(at url: URL, args: Qwen3Args) throws -> Qwen3WeightSource {
        let folder = checkpointFolderEvaluated(at: url)
        let isDCP =
            folder.lastPathComponent == ".metadata"
            || FileManager.default.fileExists(atPath: folder.appendingPathComponent(".metadata").path)
        let store: any RawTensorStore =
            isDCP
            ? try DCPCheckpoint(directory: folder.lastPathComponent == ".metadata" ? folder.deletingLastPathComponent() : folder)
            : try SafetensorsCheckpoint(url: folder)
        return try Qwen3WeightSource(store: store, args: args)
    }

    public var description: String { store.description }
    public var ignoredKeys: [(key: String, reason: String)] { [] }

    public func load(_ name: String) throws -> StoredTensor {
        if let keys = expertKeys[name] {
            return try stackTensors(try keys.map { try store.loadRaw($0) }, name: name)
        }
        guard let raw = rawNames[name] else { throw CheckpointError("\(description): tensor '\(name)' is not in the checkpoint") }
        let tensor = try store.loadRaw(raw)
        if raw == name { return tensor }
        return try StoredTensor(name: name, dtype: tensor.dtype, shape: tensor.shape, bytes: tensor.bytes, owner: tensor.owner)
    }

    /// Only the wanted experts' bytes are read (per-expert HF files; DCP chunks).
    public func load(_ name: String, leading: Range<Int>) throws -> StoredTensor {
        if let keys = expertKeys[name] {
            guard leading.lowerBound >= 0, leading.upperBound <= keys.count else {
                throw CheckpointError("\(description): tensor '\(name)': experts \(leading) are outside its \(keys.count) experts")
            }
            return try stackTensors(try keys[leading].map { try store.loadRaw($0) }, name: name)
        }
        guard let raw = rawNames[name] else { throw CheckpointError("\(description): tensor '\(name)' is not in the checkpoint") }
        let tensor = try store.loadRaw(raw, leading: leading)
        if raw == name { return tensor }
        return try StoredTensor(name: name, dtype: tensor.dtype, shape: tensor.shape, bytes: tensor.bytes, owner: tensor.owner)
    }
}
