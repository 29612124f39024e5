import Foundation
import MoETensor

/// A checkpoint problem, as one line naming the file (and the tensor or component).
public struct CheckpointError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
    public var errorDescription: String? { description }
}

public struct TensorInfo: Sendable, Equatable {
    public let dtype: DType
    public let shape: [Int]
    public init(dtype: DType, shape: [Int]) {
        self.dtype = dtype
        self.shape = shape
    }
    public var elementCount: Int { shape.reduce(1, *) }
    public var byteCount: Int { elementCount * dtype.byteSize }
}

/// A tensor's bytes (little-endian, contiguous row-major), kept alive by its owner (mmap or heap).
/// Views into a memory-mapped file need not be aligned to the element size: read them with
/// `loadUnaligned`, or let the consumer copy (MoETensor.Weight does when misaligned).
public final class StoredTensor: @unchecked Sendable {
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    public let bytes: UnsafeRawBufferPointer
    /// The mapping or heap buffer the bytes live in.
    public let owner: AnyObject

    /// Wraps bytes owned by `owner`; they must hold exactly `shape`'s element count.
    public init(name: String, dtype: DType, shape: [Int], bytes: UnsafeRawBufferPointer, owner: AnyObject) throws {
        let expected = try checkedByteCount(shape: shape, dtype: dtype, what: "tensor '\(name)'")
        guard bytes.count == expected else {
            throw CheckpointError("tensor '\(name)': holds \(bytes.count) bytes but \(dtype.torchName) \(shape) needs \(expected)")
        }
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
        self.owner = owner
    }

    /// A tensor owning a copy of `source` (which must hold exactly the tensor's bytes).
    public convenience init(name: String, dtype: DType, shape: [Int], copying source: UnsafeRawBufferPointer) throws {
        let buffer = try HeapBuffer(byteCount: source.count)
        if source.count > 0, let from = source.baseAddress { buffer.pointer.copyMemory(from: from, byteCount: source.count) }
        try self.init(name: name, dtype: dtype, shape: shape, bytes: buffer.bytes, owner: buffer)
    }

    /// A tensor owning freshly allocated bytes, filled by `fill` (used to assemble chunks or stack experts).
    static func assembling(
        name: String, dtype: DType, shape: [Int],
        _ fill: (UnsafeMutableRawBufferPointer) throws -> Void
    ) throws -> StoredTensor {
        let count = try checkedByteCount(shape: shape, dtype: dtype, what: "tensor '\(name)'")
        let buffer = try HeapBuffer(byteCount: count)
        try fill(buffer.mutableBytes)
        return try StoredTensor(name: name, dtype: dtype, shape: shape, bytes: buffer.bytes, owner: buffer)
    }

    public var elementCount: Int { shape.reduce(1, *) }
    public var info: TensorInfo { TensorInfo(dtype: dtype, shape: shape) }

    /// Whether the bytes are a view into a memory-mapped file (no copy was made).
    public var isMemoryMapped: Bool { owner is MappedFile }
}

/// Element count × element size, refusing negative dimensions and overflow (shapes come from files).
/// `what` names the tensor and, where known, its file ("x.distcp: tensor 'w'").
func checkedByteCount(shape: [Int], dtype: DType, what: String) throws -> Int {
    do {
        return try Checked.multiply(
            Checked.product(shape, what: "\(what): shape \(shape)"), dtype.byteSize,
            what: "\(what): shape \(shape)")
    } catch let error as SizeOverflowError {
        throw CheckpointError(error.description)
    }
}

public enum NamingEra: String, Sendable {
    /// TorchTitan v0.2.x keys (`output.weight`, `moe.experts.w1`, `moe.expert_bias`).
    case v0_2
    /// TorchTitan 0.3.0-style keys (`lm_head.weight`, `*_EFD`/`routed_experts`, `expert_bias_E`).
    case v0_3
    /// Some keys of each era (checkpoints from TorchTitan main between the releases).
    case mixed
    /// HuggingFace DeepSeek-V3 names, mapped to TorchTitan names on open.
    case huggingface
}

public protocol WeightSource: Sendable {
    /// e.g. "DCP checkpoint /path (3 files)".
    var description: String { get }
    /// Model tensors only, by canonical (TorchTitan v0.2.x) name.
    var tensorInfos: [String: TensorInfo] { get }
    var namingEra: NamingEra { get }
    /// Loads a tensor by canonical name; an error if missing.
    func load(_ name: String) throws -> StoredTensor
    /// Loads indices `leading` of a tensor's first dimension (some experts of a grouped expert weight),
    /// reading no more of the checkpoint than those rows where the format allows.
    func load(_ name: String, leading: Range<Int>) throws -> StoredTensor
    /// The matrices of a stacked tensor (indices `leading` of its first dimension, all when nil) as the checkpoint
    /// stores them, one tensor each, without stacking them into one copy; nil when it stores the stack whole.
    /// For a loader that copies them into another layout anyway.
    func loadParts(_ name: String, leading: Range<Int>?) throws -> [StoredTensor]?
}

extension WeightSource {
    /// Loads the whole tensor, then keeps a copy of the rows (sources that cannot read part of a tensor).
    public func load(_ name: String, leading: Range<Int>) throws -> StoredTensor {
        try leadingRows(of: load(name), leading)
    }

    public func loadParts(_ name: String, leading: Range<Int>?) throws -> [StoredTensor]? { nil }
}

/// A copy of indices `range` of `tensor`'s first dimension.
func leadingRows(of tensor: StoredTensor, _ range: Range<Int>) throws -> StoredTensor {
    guard let first = tensor.shape.first, range.lowerBound >= 0, range.upperBound <= first else {
        throw CheckpointError("tensor '\(tensor.name)': rows \(range) are outside its shape \(tensor.shape)")
    }
    if range == 0..<first { return tensor }
    let rowBytes = tensor.shape.dropFirst().reduce(1, *) * tensor.dtype.byteSize
    let bytes = UnsafeRawBufferPointer(rebasing: tensor.bytes[(range.lowerBound * rowBytes)..<(range.upperBound * rowBytes)])
    return try StoredTensor(name: tensor.name, dtype: tensor.dtype, shape: [range.count] + tensor.shape.dropFirst(), copying: bytes)
}

/// The folder `openWeightSource(at:)` reads for `url`: the latest `step-N` folder when `url` is a checkpoint
/// root that holds only step folders, else `url` itself.
public func checkpointFolderEvaluated(at url: URL) -> URL {
    let fm = FileManager.default
    var isDirectory: ObjCBool = false
    guard fm.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue,
        let contents = try? fm.contentsOfDirectory(atPath: url.path)
    else { return url }
    if contents.contains(".metadata") || contents.contains(where: { $0.hasSuffix(".distcp") || $0.hasSuffix(".safetensors") })
        || contents.contains("model.safetensors.index.json")
    {
        return url
    }
    return latestStepFolder(in: url, contents: contents) ?? url
}

/// TorchTitan's `step-N` folders: the one with the highest N that holds a checkpoint.
func latestStepFolder(in folder: URL, contents: [String]) -> URL? {
    let steps = contents.compactMap { name -> (Int, String)? in
        guard name.hasPrefix("step-"), let n = Int(name.dropFirst(5)) else { return nil }
        return (n, name)
    }
    for (_, name) in steps.sorted(by: { $0.0 > $1.0 }) {
        let candidate = folder.appendingPathComponent(name)
        let fm = FileManager.default
        if fm.fileExists(atPath: candidate.appendingPathComponent(".metadata").path)
            || fm.fileExists(atPath: candidate.appendingPathComponent("model.safetensors.index.json").path)
        {
            return candidate
        }
    }
    return nil
}

/// A raw entry of a checkpoint, as `inspect` lists it (model tensors and everything else).
public struct CheckpointEntry: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// dtype as torch names it ("float32", "bfloat16", or whatever the file says).
        case tensor(dtype: String, shape: [Int])
        /// A pickled non-tensor value (DCP BytesStorageMetadata).
        case bytes
    }
    /// Which part of a training checkpoint the entry belongs to (by DCP key prefix).
    public enum Role: String, Sendable {
        case model, optimizer, lrScheduler = "lr_scheduler", dataloader, trainState = "train_state", other
    }
    public let name: String
    public let kind: Kind
    public let role: Role
    /// Chunks the tensor was saved in (1 for unsharded saves and safetensors).
    public let chunkCount: Int
    /// Bytes the entry occupies in its files (payload only for safetensors; whole archives for DCP).
    public let byteCount: Int

    public init(name: String, kind: Kind, role: Role, chunkCount: Int, byteCount: Int) {
        self.name = name
        self.kind = kind
        self.role = role
        self.chunkCount = chunkCount
        self.byteCount = byteCount
    }
}

/// A checkpoint format reader, before any model naming is applied.
public protocol RawTensorStore: Sendable {
    var description: String { get }
    /// Model tensors by their key in the file (DCP: without optimizer/lr_scheduler/… entries).
    var rawTensorInfos: [String: TensorInfo] { get }
    /// Every entry, for listing.
    var entries: [CheckpointEntry] { get }
    func loadRaw(_ name: String) throws -> StoredTensor
    /// Indices `leading` of the tensor's first dimension.
    func loadRaw(_ name: String, leading: Range<Int>) throws -> StoredTensor
}

extension RawTensorStore {
    public func loadRaw(_ name: String, leading: Range<Int>) throws -> StoredTensor {
        try leadingRows(of: loadRaw(name), leading)
    }
}

extension WeightSource {
    /// Every raw entry of the underlying checkpoint (optimizer and other non-model entries included).
    public var entries: [CheckpointEntry] { (self as? any CheckpointWeightSource)?.store.entries ?? [] }
}

/// A WeightSource backed by a checkpoint reader.
public protocol CheckpointWeightSource: WeightSource {
    var store: any RawTensorStore { get }
    /// Keys deliberately skipped (non-persistent buffers, MTP layers), with why.
    var ignoredKeys: [(key: String, reason: String)] { get }
}
