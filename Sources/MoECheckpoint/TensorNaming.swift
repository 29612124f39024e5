import Foundation

/// How one model family names its tensors in checkpoints. MoECheckpoint reads tensors by stored key; a family
/// supplies this map from the stored keys to its canonical names (and which per-expert keys stack into one
/// grouped tensor).
public protocol TensorNaming: Sendable {
    /// The canonical view of a checkpoint's keys (`store.rawTensorInfos`); an error names the keys it does not
    /// recognise, and the checkpoint (`store.description`).
    func nameMap(for store: any RawTensorStore) throws -> TensorNameMap
}

/// Stored keys → canonical names, for one checkpoint.
public struct TensorNameMap: Sendable {
    /// The release whose spelling the keys follow.
    public var era: NamingEra
    /// The era-specific spellings found (what decided `era`).
    public var styles: [NamingStyle]
    /// Canonical name → stored key, for tensors stored whole.
    public var direct: [String: String]
    /// Canonical name → stored keys in expert order, stacked along a new first dimension on load.
    public var stacked: [String: [String]]
    /// Keys deliberately skipped (non-persistent buffers, multi-token-prediction layers), with why.
    public var ignoredKeys: [(key: String, reason: String)]

    public init(
        era: NamingEra, styles: [NamingStyle] = [], direct: [String: String], stacked: [String: [String]] = [:],
        ignoredKeys: [(key: String, reason: String)] = []
    ) {
        self.era = era; self.styles = styles; self.direct = direct; self.stacked = stacked; self.ignoredKeys = ignoredKeys
    }
}

/// A checkpoint under a family's canonical names (`TensorNaming`), from any format reader.
public final class NamedWeightSource: CheckpointWeightSource {
    public let store: any RawTensorStore
    public let nameMap: TensorNameMap
    public let tensorInfos: [String: TensorInfo]

    public init(store: any RawTensorStore, naming: some TensorNaming) throws {
        self.store = store
        nameMap = try naming.nameMap(for: store)
        var infos: [String: TensorInfo] = [:]
        for (canonical, raw) in nameMap.direct { infos[canonical] = store.rawTensorInfos[raw] }
        for (canonical, keys) in nameMap.stacked {
            guard let firstKey = keys.first, let first = store.rawTensorInfos[firstKey] else {
                throw CheckpointError("\(store.description): no stored tensors for \(canonical)")
            }
            for key in keys {
                guard let info = store.rawTensorInfos[key] else {
                    throw CheckpointError("\(store.description): tensor '\(key)' is not in the checkpoint")
                }
                guard info == first else {
                    throw CheckpointError(
                        "\(store.description): expert '\(key)' is \(info.dtype.torchName) \(info.shape), but '\(firstKey)' is \(first.dtype.torchName) \(first.shape)"
                    )
                }
            }
            infos[canonical] = TensorInfo(dtype: first.dtype, shape: [keys.count] + first.shape)
        }
        tensorInfos = infos
    }

    public var description: String { store.description }
    public var namingEra: NamingEra { nameMap.era }
    public var ignoredKeys: [(key: String, reason: String)] { nameMap.ignoredKeys }

    public func load(_ name: String) throws -> StoredTensor {
        if let keys = nameMap.stacked[name] {
            return try stackTensors(try keys.map { try store.loadRaw($0) }, name: name)
        }
        guard let raw = nameMap.direct[name] else {
            throw CheckpointError("\(description): tensor '\(name)' is not in the checkpoint")
        }
        return renamed(try store.loadRaw(raw), raw: raw, to: name)
    }

    /// Stacked tensors: only the wanted experts' keys are read.
    public func load(_ name: String, leading: Range<Int>) throws -> StoredTensor {
        if let keys = nameMap.stacked[name] {
            guard leading.lowerBound >= 0, leading.upperBound <= keys.count else {
                throw CheckpointError("\(description): tensor '\(name)': experts \(leading) are outside its \(keys.count) experts")
            }
            return try stackTensors(try keys[leading].map { try store.loadRaw($0) }, name: name)
        }
        guard let raw = nameMap.direct[name] else {
            throw CheckpointError("\(description): tensor '\(name)' is not in the checkpoint")
        }
        return renamed(try store.loadRaw(raw, leading: leading), raw: raw, to: name)
    }

    /// Per-expert tensors (HF checkpoints) come back one by one; a stack stored whole gives nil. Shapes and dtypes
    /// were checked against each other when the source was opened.
    public func loadParts(_ name: String, leading: Range<Int>?) throws -> [StoredTensor]? {
        guard let keys = nameMap.stacked[name] else { return nil }
        let range = leading ?? 0..<keys.count
        guard range.lowerBound >= 0, range.upperBound <= keys.count else {
            throw CheckpointError("\(description): tensor '\(name)': experts \(range) are outside its \(keys.count) experts")
        }
        return try keys[range].map { try store.loadRaw($0) }
    }

    private func renamed(_ tensor: StoredTensor, raw: String, to name: String) -> StoredTensor {
        if raw == name { return tensor }
        // The bytes were already checked against the shape when `tensor` was made.
        return (try? StoredTensor(name: name, dtype: tensor.dtype, shape: tensor.shape, bytes: tensor.bytes, owner: tensor.owner)) ?? tensor
    }
}

/// Stacks tensors of equal shape and dtype (per-expert weights, in expert order) into one `[count, …]` tensor.
public func stackTensors(_ parts: [StoredTensor], name: String) throws -> StoredTensor {
    guard let first = parts.first else { throw CheckpointError("tensor '\(name)': no experts to stack") }
    for e in parts where e.dtype != first.dtype || e.shape != first.shape {
        throw CheckpointError(
            "tensor '\(name)': expert '\(e.name)' is \(e.dtype.torchName) \(e.shape), but '\(first.name)' is \(first.dtype.torchName) \(first.shape)"
        )
    }
    let size = first.bytes.count
    return try StoredTensor.assembling(name: name, dtype: first.dtype, shape: [parts.count] + first.shape) { out in
        for (e, part) in parts.enumerated() where size > 0 {
            (out.baseAddress! + e * size).copyMemory(from: part.bytes.baseAddress!, byteCount: size)
        }
    }
}

/// The format reader for a checkpoint path, before any naming: a DCP folder (or a folder of `step-N` DCP
/// folders, taking the highest step, as TorchTitan does), or a safetensors file, folder or index.
public func openTensorStore(at url: URL) throws -> any RawTensorStore {
    let path = url.path
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
        throw CheckpointError("\(path): no such file or folder")
    }
    if !isDirectory.boolValue {
        let name = url.lastPathComponent
        if name == ".metadata" { return try DCPCheckpoint(directory: url.deletingLastPathComponent()) }
        if name.hasSuffix(".safetensors") || name.hasSuffix(".safetensors.index.json") {
            return try SafetensorsCheckpoint(url: url)
        }
        throw CheckpointError("\(path): not a checkpoint (expected a DCP folder, a .safetensors file or a model.safetensors.index.json)")
    }
    let folder = url
    let contents = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
    if contents.contains(".metadata") { return try DCPCheckpoint(directory: folder) }
    if contents.contains(where: { $0.hasSuffix(".distcp") }) {
        throw CheckpointError(
            "\(folder.appendingPathComponent(".metadata").path): missing (the folder has .distcp files but no DCP .metadata)")
    }
    if contents.contains("model.safetensors.index.json") || contents.contains(where: { $0.hasSuffix(".safetensors") }) {
        return try SafetensorsCheckpoint(url: folder)
    }
    if let step = latestStepFolder(in: folder, contents: contents) { return try openTensorStore(at: step) }
    throw CheckpointError("\(path): no checkpoint found (no DCP .metadata, no .safetensors files, no step-N folders)")
}

/// A checkpoint under `naming`'s canonical names.
public func openWeightSource(at url: URL, naming: some TensorNaming) throws -> WeightSource {
    try NamedWeightSource(store: openTensorStore(at: url), naming: naming)
}

/// How one family of keys is spelled, and which TorchTitan release spells it that way.
public struct NamingStyle: Hashable, Sendable, CustomStringConvertible, Comparable {
    /// What the keys hold: "output head", "routed experts", "expert bias".
    public let feature: String
    /// The spelling seen, e.g. "lm_head.weight" or "moe.routed_experts.inner_experts.w1_EFD".
    public let spelling: String
    public let era: NamingEra

    public init(feature: String, spelling: String, era: NamingEra) {
        self.feature = feature
        self.spelling = spelling
        self.era = era
    }

    public var description: String { "\(feature): \(spelling) (\(era.rawValue))" }
    public static func < (a: NamingStyle, b: NamingStyle) -> Bool { a.description < b.description }
}
