import Foundation
import MoECheckpoint
import MoETensor

/// What a HuggingFace DeepSeek-V3 key holds, in TorchTitan terms.
public enum HFKey: Equatable, Sendable {
    /// A tensor that maps one-to-one to a canonical TorchTitan name.
    case tensor(canonical: String)
    /// One expert's slice of a grouped TorchTitan weight `layers.L.moe.experts.wN`.
    case expert(canonical: String, expert: Int)
    case ignored(reason: String)
}

/// HF ⇄ TorchTitan names for DeepSeek-V3, as TorchTitan's DeepSeekV3StateDictAdapter maps them.
/// Canonical names are TorchTitan v0.2.x ones. Per-expert HF weights `[F, D]` / `[D, F]` stack,
/// in expert order and without transposes, into TorchTitan's `[E, F, D]` / `[E, D, F]`.
public enum HFNames {
    /// HF suffix under `model.layers.L.` → TorchTitan suffix under `layers.L.`.
    static let layerNames: [String: String] = [
        "self_attn.q_proj.weight": "attention.wq.weight",
        "self_attn.q_a_proj.weight": "attention.wq_a.weight",
        "self_attn.q_a_layernorm.weight": "attention.q_norm.weight",
        "self_attn.q_b_proj.weight": "attention.wq_b.weight",
        "self_attn.kv_a_proj_with_mqa.weight": "attention.wkv_a.weight",
        "self_attn.kv_a_layernorm.weight": "attention.kv_norm.weight",
        "self_attn.kv_b_proj.weight": "attention.wkv_b.weight",
        "self_attn.o_proj.weight": "attention.wo.weight",
        "mlp.gate_proj.weight": "feed_forward.w1.weight",
        "mlp.up_proj.weight": "feed_forward.w3.weight",
        "mlp.down_proj.weight": "feed_forward.w2.weight",
        "input_layernorm.weight": "attention_norm.weight",
        "post_attention_layernorm.weight": "ffn_norm.weight",
        "mlp.gate.weight": "moe.router.gate.weight",
        "mlp.shared_experts.gate_proj.weight": "moe.shared_experts.w1.weight",
        "mlp.shared_experts.up_proj.weight": "moe.shared_experts.w3.weight",
        "mlp.shared_experts.down_proj.weight": "moe.shared_experts.w2.weight",
        "mlp.gate.e_score_correction_bias": "moe.expert_bias",
    ]
    static let globalNames: [String: String] = [
        "model.embed_tokens.weight": "tok_embeddings.weight",
        "model.norm.weight": "norm.weight",
        "lm_head.weight": "output.weight",
    ]
    /// HF expert projection → TorchTitan grouped weight.
    static let expertProjections = ["gate_proj": "w1", "up_proj": "w3", "down_proj": "w2"]
    /// Module names that only multi-token-prediction layers have (DeepSeek-V3 stores the MTP
    /// block as an extra `model.layers.<n_layers>`).
    static let mtpModules: Set<String> = ["enorm", "hnorm", "eh_proj", "shared_head", "embed_tokens"]

    /// The TorchTitan meaning of an HF key; nil when unrecognised. Keys of MTP layers are only
    /// recognised as such by `HFNaming`, which sees all keys.
    public static func fromHF(_ key: String) -> HFKey? {
        if let canonical = globalNames[key] { return .tensor(canonical: canonical) }
        guard key.hasPrefix("model.layers.") else { return nil }
        let afterPrefix = key.dropFirst("model.layers.".count)
        guard let dot = afterPrefix.firstIndex(of: "."), let layer = Int(afterPrefix[..<dot]), layer >= 0,
            String(layer) == afterPrefix[..<dot]
        else { return nil }
        let rest = String(afterPrefix[afterPrefix.index(after: dot)...])
        if let mapped = layerNames[rest] { return .tensor(canonical: "layers.\(layer).\(mapped)") }
        if rest == "self_attn.rotary_emb.inv_freq" { return .ignored(reason: "non-persistent RoPE buffer") }
        // mlp.experts.<e>.<proj>.weight
        let parts = rest.split(separator: ".", omittingEmptySubsequences: false)
        if parts.count == 5, parts[0] == "mlp", parts[1] == "experts", let expert = Int(parts[2]), expert >= 0,
            String(expert) == parts[2], let w = expertProjections[String(parts[3])], parts[4] == "weight"
        {
            return .expert(canonical: "layers.\(layer).moe.experts.\(w)", expert: expert)
        }
        return nil
    }

    /// The HF name of a canonical non-expert tensor; nil for grouped experts (see `toHF(experts:expert:)`)
    /// and for names HF DeepSeek-V3 lacks (the router gate bias).
    public static func toHF(_ canonical: String) -> String? {
        if let hf = globalNames.first(where: { $0.value == canonical })?.key { return hf }
        guard let (layer, rest) = splitLayer(canonical),
            let hfRest = layerNames.first(where: { $0.value == rest })?.key
        else { return nil }
        return "model.layers.\(layer).\(hfRest)"
    }

    /// The HF name of one expert's slice of a grouped canonical expert weight.
    public static func toHF(experts canonical: String, expert: Int) -> String? {
        guard let (layer, rest) = splitLayer(canonical), rest.hasPrefix("moe.experts."),
            let projection = expertProjections.first(where: { "moe.experts." + $0.value == rest })?.key
        else { return nil }
        return "model.layers.\(layer).mlp.experts.\(expert).\(projection).weight"
    }

    /// Whether a canonical name is a grouped expert weight (`layers.L.moe.experts.w1|w2|w3`).
    public static func isGroupedExperts(_ canonical: String) -> Bool {
        guard let (_, rest) = splitLayer(canonical) else { return false }
        return ["moe.experts.w1", "moe.experts.w2", "moe.experts.w3"].contains(rest)
    }

    private static func splitLayer(_ canonical: String) -> (Int, String)? {
        let parts = canonical.split(separator: ".", maxSplits: 2)
        guard parts.count == 3, parts[0] == "layers", let layer = Int(parts[1]) else { return nil }
        return (layer, String(parts[2]))
    }

    /// Splits a grouped canonical expert weight `[E, …]` into per-expert HF tensors, as views
    /// sharing the grouped tensor's memory.
    public static func splitExperts(_ grouped: StoredTensor) throws -> [StoredTensor] {
        guard let count = grouped.shape.first, grouped.shape.count >= 2 else {
            throw CheckpointError("tensor '\(grouped.name)': \(grouped.shape) is not a stack of expert matrices")
        }
        let inner = Array(grouped.shape.dropFirst())
        let size = count == 0 ? 0 : grouped.bytes.count / count
        return try (0..<count).map { e in
            guard let hfName = toHF(experts: grouped.name, expert: e) else {
                throw CheckpointError("tensor '\(grouped.name)': not a grouped expert weight")
            }
            let slice = UnsafeRawBufferPointer(rebasing: grouped.bytes[(e * size)..<((e + 1) * size)])
            return try StoredTensor(name: hfName, dtype: grouped.dtype, shape: inner, bytes: slice, owner: grouped)
        }
    }
}

/// The canonical view of a whole HF checkpoint's keys: experts grouped, MTP layers set aside.
public struct HFNaming: Sendable {
    /// Canonical name → HF key, for tensors that map one-to-one.
    public let rawNames: [String: String]
    /// Canonical grouped expert name → HF keys in expert order.
    public let expertNames: [String: [String]]
    public let ignoredKeys: [(key: String, reason: String)]

    public init(keys: some Sequence<String>, source: String) throws {
        let all = Array(keys)
        var mtpLayers = Set<Int>()
        for key in all where key.hasPrefix("model.layers.") {
            let parts = key.split(separator: ".")
            if parts.count > 3, let layer = Int(parts[2]), HFNames.mtpModules.contains(String(parts[3])) {
                mtpLayers.insert(layer)
            }
        }
        var rawNames: [String: String] = [:]
        var experts: [String: [Int: String]] = [:]
        var ignored: [(String, String)] = []
        var unrecognised: [String] = []
        for key in all {
            let parts = key.split(separator: ".")
            if key.hasPrefix("model.layers."), parts.count > 2, let layer = Int(parts[2]), mtpLayers.contains(layer) {
                ignored.append((key, "multi-token-prediction layer"))
                continue
            }
            if key.hasSuffix("_scale_inv") {
                throw CheckpointError(
                    "\(source): '\(key)' is an FP8 block-quantization scale; FP8 checkpoints are not supported (dequantize to bf16 first)")
            }
            switch HFNames.fromHF(key) {
            case .tensor(let canonical)?:
                if let previous = rawNames[canonical] {
                    throw CheckpointError("\(source): keys '\(previous)' and '\(key)' both name \(canonical)")
                }
                rawNames[canonical] = key
            case .expert(let canonical, let expert)?:
                experts[canonical, default: [:]][expert] = key
            case .ignored(let reason)?:
                ignored.append((key, reason))
            case nil:
                unrecognised.append(key)
            }
        }
        guard unrecognised.isEmpty else {
            throw CheckpointError("\(source): unrecognised HuggingFace DeepSeek-V3 key(s): \(TorchTitanNames.keyList(unrecognised))")
        }
        var expertNames: [String: [String]] = [:]
        for (canonical, byIndex) in experts {
            let count = byIndex.count
            let keys = (0..<count).compactMap { byIndex[$0] }
            guard keys.count == count else {
                throw CheckpointError("\(source): experts of \(canonical) are not numbered 0..<\(count) (found \(byIndex.keys.sorted()))")
            }
            expertNames[canonical] = keys
        }
        self.rawNames = rawNames
        self.expertNames = expertNames
        self.ignoredKeys = ignored.sorted { $0.0 < $1.0 }
    }
}
