import Foundation
import MoECheckpoint

/// What a checkpoint key is, in TorchTitan's DeepSeek-V3 naming.
public enum TorchTitanKey: Equatable, Sendable {
    /// A model weight, with its canonical (v0.2.x) name and, for era-specific spellings, the style.
    case weight(canonical: String, style: NamingStyle?)
    /// Present in some checkpoints but not needed: non-persistent buffers, multi-token-prediction layers.
    case ignored(reason: String)
}

/// TorchTitan key spellings, matched per key so that both eras and the mixes saved from main
/// between the releases are understood. Canonical names are the v0.2.x ones.
public enum TorchTitanNames {
    static let attentionWeights: Set<String> = ["wq", "wq_a", "q_norm", "wq_b", "wkv_a", "kv_norm", "wkv_b", "wo"]
    static let projections: Set<String> = ["w1", "w2", "w3"]
    /// The 0.3.0 shape suffix each grouped expert weight carries (layouts unchanged from v0.2.x).
    static let shapeSuffixes = ["w1": "w1_EFD", "w2": "w2_EDF", "w3": "w3_EFD"]

    /// Classifies a key; nil when it is not a DeepSeek-V3 TorchTitan key.
    public static func classify(_ key: String) -> TorchTitanKey? {
        let parts = key.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        switch parts {
        case ["tok_embeddings", "weight"], ["norm", "weight"]:
            return .weight(canonical: key, style: nil)
        case ["output", "weight"]:
            return .weight(canonical: key, style: NamingStyle(feature: "output head", spelling: key, era: .v0_2))
        case ["lm_head", "weight"]:
            return .weight(canonical: "output.weight", style: NamingStyle(feature: "output head", spelling: key, era: .v0_3))
        case ["freqs_cis"]:
            return .ignored(reason: "non-persistent RoPE buffer")
        default:
            break
        }
        if parts.first == "mtp_layers" { return .ignored(reason: "multi-token-prediction layer") }
        guard parts.count >= 3, parts[0] == "layers", let layer = Int(parts[1]), layer >= 0,
            String(layer) == parts[1]
        else { return nil }
        let prefix = "layers.\(layer)."
        let rest = Array(parts[2...])
        func same() -> TorchTitanKey { .weight(canonical: key, style: nil) }
        switch rest.count {
        case 2:
            if rest[1] == "weight", rest[0] == "attention_norm" || rest[0] == "ffn_norm" { return same() }
            if rest[0] == "moe" {
                switch rest[1] {
                case "expert_bias":
                    return .weight(canonical: key, style: NamingStyle(feature: "expert bias", spelling: "moe.expert_bias", era: .v0_2))
                case "expert_bias_E":
                    return .weight(
                        canonical: prefix + "moe.expert_bias",
                        style: NamingStyle(feature: "expert bias", spelling: "moe.expert_bias_E", era: .v0_3))
                case "tokens_per_expert", "tokens_per_expert_E":
                    return .ignored(reason: "non-persistent routing counter")
                default: return nil
                }
            }
            return nil
        case 3:
            if rest[0] == "attention", attentionWeights.contains(rest[1]), rest[2] == "weight" { return same() }
            if rest == ["attention", "rope", "cache"] { return .ignored(reason: "non-persistent RoPE buffer") }
            if rest[0] == "feed_forward", projections.contains(rest[1]), rest[2] == "weight" { return same() }
            if rest[0] == "moe", rest[1] == "experts" {
                if projections.contains(rest[2]) {
                    return .weight(
                        canonical: key, style: NamingStyle(feature: "routed experts", spelling: "moe.experts.w1|w2|w3", era: .v0_2))
                }
                if let w = projection(withSuffix: rest[2]) {
                    return .weight(
                        canonical: prefix + "moe.experts." + w,
                        style: NamingStyle(feature: "routed experts", spelling: "moe.experts.w1_EFD|w2_EDF|w3_EFD", era: .v0_3))
                }
            }
            return nil
        case 4:
            if rest[0] == "moe", rest[1] == "router", rest[2] == "gate", rest[3] == "weight" || rest[3] == "bias" { return same() }
            if rest[0] == "moe", rest[1] == "shared_experts", projections.contains(rest[2]), rest[3] == "weight" { return same() }
            if rest[0] == "moe", rest[1] == "routed_experts", rest[2] == "inner_experts", let w = projection(withSuffix: rest[3]) {
                return .weight(
                    canonical: prefix + "moe.experts." + w,
                    style: NamingStyle(
                        feature: "routed experts",
                        spelling: "moe.routed_experts.inner_experts.w1_EFD|w2_EDF|w3_EFD", era: .v0_3))
            }
            return nil
        default:
            return nil
        }
    }

    /// Up to 20 keys, sorted, for an error message.
    static func keyList(_ keys: [String]) -> String {
        let list = keys.sorted()
        return list.prefix(20).joined(separator: ", ") + (list.count > 20 ? ", … (\(list.count) in all)" : "")
    }

    private static func projection(withSuffix name: String) -> String? {
        shapeSuffixes.first(where: { $0.value == name })?.key
    }

    /// The TorchTitan 0.3.0 spelling of a canonical name (for writing 0.3.0-style checkpoints).
    public static func v0_3Name(ofCanonical name: String) -> String {
        if name == "output.weight" { return "lm_head.weight" }
        let parts = name.split(separator: ".").map(String.init)
        if parts.count == 5, parts[0] == "layers", parts[2] == "moe", parts[3] == "experts", let suffixed = shapeSuffixes[parts[4]] {
            return "layers.\(parts[1]).moe.routed_experts.inner_experts.\(suffixed)"
        }
        if parts.count == 4, parts[0] == "layers", parts[2] == "moe", parts[3] == "expert_bias" {
            return name + "_E"
        }
        return name
    }
}

/// The canonical naming of a whole checkpoint's keys, with the era they were saved in.
public struct TorchTitanNaming: Sendable {
    public let era: NamingEra
    /// The era-specific spellings found (what decided `era`).
    public let styles: [NamingStyle]
    /// Canonical name → key in the checkpoint.
    public let rawNames: [String: String]
    /// Keys deliberately skipped, with why.
    public let ignoredKeys: [(key: String, reason: String)]

    /// `source` names the checkpoint in errors.
    public init(keys: some Sequence<String>, source: String) throws {
        var rawNames: [String: String] = [:]
        var styles = Set<NamingStyle>()
        var ignored: [(String, String)] = []
        var unrecognised: [String] = []
        for key in keys {
            switch TorchTitanNames.classify(key) {
            case .weight(let canonical, let style)?:
                if let previous = rawNames[canonical] {
                    throw CheckpointError("\(source): keys '\(previous)' and '\(key)' both name \(canonical)")
                }
                rawNames[canonical] = key
                if let style { styles.insert(style) }
            case .ignored(let reason)?:
                ignored.append((key, reason))
            case nil:
                unrecognised.append(key)
            }
        }
        guard unrecognised.isEmpty else {
            throw CheckpointError("\(source): unrecognised DeepSeek-V3 TorchTitan key(s): \(TorchTitanNames.keyList(unrecognised))")
        }
        self.rawNames = rawNames
        self.styles = styles.sorted()
        self.ignoredKeys = ignored.sorted { $0.0 < $1.0 }
        let hasOld = styles.contains { $0.era == .v0_2 }, hasNew = styles.contains { $0.era == .v0_3 }
        era = hasNew ? (hasOld ? .mixed : .v0_3) : .v0_2
    }
}
