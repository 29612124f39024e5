import Foundation
import MoETensor

/// A PyTorch Distributed Checkpoint folder: `.metadata` (a pickled `Metadata`) plus `.distcp`
/// files whose byte ranges are torch.save archives, one per tensor chunk. Only model tensors are
/// prepared for loading; optimizer, lr_scheduler, dataloader and train_state entries are listed
/// but never read. Files are memory-mapped; a tensor saved as one chunk loads without a copy.
public final class DCPCheckpoint: RawTensorStore {
    /// Key prefixes of the non-model state TorchTitan saves beside the model.
    public static let nonModelPrefixes: [(prefix: String, role: CheckpointEntry.Role)] = [
        ("optimizer.", .optimizer), ("lr_scheduler.", .lrScheduler),
        ("dataloader.", .dataloader), ("train_state.", .trainState),
    ]

    /// One saved rectangle of a tensor, in global coordinates, and where its archive lies.
    public struct Chunk: Sendable, Equatable {
        public let offsets: [Int]
        public let sizes: [Int]
        /// `.distcp` file name, relative to the checkpoint folder.
        public let file: String
        public let byteOffset: Int
        public let byteLength: Int
        public var elementCount: Int { sizes.reduce(1, *) }
    }

    struct ModelTensor {
        let info: TensorInfo
        let chunks: [Chunk]
    }

    public let directory: URL
    /// DCP format version recorded in the metadata ("1.0.0" for current torch).
    public let version: String?
    public let entries: [CheckpointEntry]
    public let rawTensorInfos: [String: TensorInfo]
    let tensors: [String: ModelTensor]
    /// Mapped `.distcp` files holding model tensors, by name.
    let files: [String: MappedFile]
    /// Every `.distcp` file the metadata refers to.
    public let fileNames: [String]

    public var description: String {
        "DCP checkpoint \(directory.path) (\(fileNames.count) file\(fileNames.count == 1 ? "" : "s"))"
    }

    /// Every entry, including optimizer and other non-model state (alias of `entries`).
    public var allEntries: [CheckpointEntry] { entries }

    /// Chunk layout of a model tensor (nil if absent).
    public func chunks(of name: String) -> [Chunk]? { tensors[name]?.chunks }

    public init(directory: URL) throws {
        self.directory = directory
        let metadataURL = directory.appendingPathComponent(".metadata")
        let metadataPath = metadataURL.path
        guard FileManager.default.fileExists(atPath: metadataPath) else {
            throw CheckpointError("\(metadataPath): missing (\(directory.path) is not a DCP checkpoint folder)")
        }
        let metadataFile = try MappedFile(path: metadataPath)
        let metadata = try DCPCheckpoint.readMetadata(metadataFile.bytes, source: metadataPath)
        version = metadata.version
        entries = metadata.entries
        let tensors = metadata.modelTensors.mapValues { ModelTensor(info: $0.info, chunks: $0.chunks) }
        self.tensors = tensors
        rawTensorInfos = tensors.mapValues(\.info)
        fileNames = metadata.fileNames

        var files: [String: MappedFile] = [:]
        for name in Set(tensors.values.flatMap { $0.chunks.map(\.file) }).sorted() {
            files[name] = try MappedFile(path: directory.appendingPathComponent(name).path)
        }
        self.files = files
        // Bounds are checked now so that a truncated file is reported before any work starts.
        for name in tensors.keys.sorted() {
            for chunk in tensors[name]!.chunks {
                let file = files[chunk.file]!
                guard chunk.byteOffset <= file.count, chunk.byteLength <= file.count - chunk.byteOffset else {
                    throw CheckpointError(
                        "\(file.path): tensor '\(name)' chunk at \(chunk.offsets) needs bytes \(chunk.byteOffset)..<\(chunk.byteOffset &+ chunk.byteLength), past the end of the file (\(file.count) bytes; truncated?)"
                    )
                }
            }
        }
    }

    /// What a `.metadata` file says, checked for consistency (dtypes, chunk coverage, sizes that fit) but
    /// not against the `.distcp` files.
    public struct Metadata: Sendable {
        public let version: String?
        /// Every entry, sorted by name.
        public let entries: [CheckpointEntry]
        /// Model tensors (no optimizer/lr_scheduler/… prefix) and where their chunks lie.
        public let modelTensors: [String: (info: TensorInfo, chunks: [Chunk])]
        /// Every `.distcp` file the metadata refers to.
        public let fileNames: [String]
    }

    /// Parses a pickled DCP `.metadata` held in memory; `source` names it in errors.
    public static func readMetadata(_ bytes: UnsafeRawBufferPointer, source: String) throws -> Metadata {
        let root = try Unpickler.load(bytes, source: source)
        let parsed = try DCPMetadataParser(source: source).parse(root)

        var entries: [CheckpointEntry] = []
        var tensors: [String: (info: TensorInfo, chunks: [Chunk])] = [:]
        for (name, item) in parsed.items {
            let role = DCPCheckpoint.nonModelPrefixes.first(where: { name.hasPrefix($0.prefix) })?.role
            let storage = parsed.storage[name] ?? []
            let what = "\(source): \(role == nil ? "tensor" : "entry") '\(name)'"
            let byteCount: Int
            do {
                byteCount = try Checked.sum(storage.map(\.info.length), what: "\(what): stored byte count")
            } catch let error as SizeOverflowError {
                throw CheckpointError(error.description)
            }
            switch item {
            case .bytes:
                entries.append(
                    CheckpointEntry(
                        name: name, kind: .bytes, role: role ?? .other,
                        chunkCount: storage.count, byteCount: byteCount))
            case .tensor(let dtypeName, let shape, let chunkBoxes):
                entries.append(
                    CheckpointEntry(
                        name: name, kind: .tensor(dtype: dtypeName, shape: shape),
                        role: role ?? .model, chunkCount: chunkBoxes.count, byteCount: byteCount))
                guard role == nil else { continue }
                guard let dtype = DCPCheckpoint.dtype(torchName: dtypeName) else {
                    throw CheckpointError("\(what): unknown dtype torch.\(dtypeName)")
                }
                _ = try checkedByteCount(shape: shape, dtype: dtype, what: what)
                var located: [[Int]: DCPMetadataParser.StorageInfo] = [:]
                for item in storage { located[item.offsets] = item.info }
                var chunks: [Chunk] = []
                for box in chunkBoxes {
                    guard let info = located[box.offsets] else {
                        throw CheckpointError("\(what): chunk at offsets \(box.offsets) has no storage entry")
                    }
                    chunks.append(
                        Chunk(
                            offsets: box.offsets, sizes: box.sizes, file: info.relativePath,
                            byteOffset: info.offset, byteLength: info.length))
                }
                try DCPCheckpoint.checkCoverage(shape: shape, chunks: chunks, what: what)
                tensors[name] = (TensorInfo(dtype: dtype, shape: shape), chunks)
            }
        }
        return Metadata(
            version: parsed.version, entries: entries.sorted { $0.name < $1.name }, modelTensors: tensors,
            fileNames: Set(parsed.storage.values.flatMap { $0.map(\.info.relativePath) }).sorted())
    }

    /// torch dtype names (`torch.float32` → "float32", aliases included) → DType.
    public static func dtype(torchName: String) -> DType? {
        switch torchName {
        case "float32", "float": return .float32
        case "float64", "double": return .float64
        case "bfloat16": return .bfloat16
        case "float16", "half": return .float16
        case "int64", "long": return .int64
        case "int32", "int": return .int32
        case "int16", "short": return .int16
        case "int8": return .int8
        case "uint8": return .uint8
        case "bool": return .bool
        default: return nil
        }
    }

    /// The chunks must lie inside the tensor, not overlap, and together cover it exactly.
    static func checkCoverage(shape: [Int], chunks: [Chunk], what: String) throws {
        var covered = 0
        var nonEmpty: [Chunk] = []
        for chunk in chunks {
            guard chunk.offsets.count == shape.count, chunk.sizes.count == shape.count else {
                throw CheckpointError("\(what): chunk at \(chunk.offsets) has rank \(chunk.sizes.count), the tensor \(shape.count)")
            }
            for axis in shape.indices {
                let start = chunk.offsets[axis], size = chunk.sizes[axis]
                guard start >= 0, size >= 0, start <= shape[axis], size <= shape[axis] - start else {
                    throw CheckpointError("\(what): chunk at \(chunk.offsets) of size \(chunk.sizes) lies outside the tensor \(shape)")
                }
            }
            // Inside the tensor, whose size was checked, so the chunk's own product cannot overflow.
            let count = chunk.elementCount
            if count > 0 {
                let (sum, overflow) = covered.addingReportingOverflow(count)
                guard !overflow else {
                    throw CheckpointError("\(what): chunks hold more elements than the tensor \(shape) (they overlap)")
                }
                covered = sum
                nonEmpty.append(chunk)
            }
        }
        try checkDisjoint(nonEmpty, shape: shape, what: what)
        let total = shape.reduce(1, *)
        guard covered == total else {
            throw CheckpointError("\(what): chunks cover \(covered) of \(total) elements of \(shape)")
        }
    }

    /// Chunks compared pairwise for overlap before the check needs a faster method.
    static let pairwiseChunkLimit = 1024

    /// No two chunks share an element. Pairwise for the usual few chunks; for many, only the common
    /// layout of slices along one axis is accepted (sorted, then neighbours compared), so that a metadata
    /// file listing a million chunks cannot make the check run for hours.
    static func checkDisjoint(_ nonEmpty: [Chunk], shape: [Int], what: String) throws {
        func overlaps(_ a: Chunk, _ b: Chunk) -> Bool {
            shape.indices.allSatisfy { axis in
                a.offsets[axis] < b.offsets[axis] + b.sizes[axis] && b.offsets[axis] < a.offsets[axis] + a.sizes[axis]
            }
        }
        func overlapError(_ a: Chunk, _ b: Chunk) -> CheckpointError {
            CheckpointError("\(what): chunks at \(a.offsets) and \(b.offsets) overlap")
        }
        guard nonEmpty.count > pairwiseChunkLimit else {
            for i in nonEmpty.indices {
                for j in nonEmpty.indices where j > i && overlaps(nonEmpty[i], nonEmpty[j]) {
                    throw overlapError(nonEmpty[i], nonEmpty[j])
                }
            }
            return
        }
        let spansAll = { (chunk: Chunk, axis: Int) in chunk.offsets[axis] == 0 && chunk.sizes[axis] == shape[axis] }
        guard
            let axis = shape.indices.first(where: { axis in
                nonEmpty.allSatisfy { chunk in shape.indices.allSatisfy { $0 == axis || spansAll(chunk, $0) } }
            })
        else {
            throw CheckpointError(
                "\(what): \(nonEmpty.count) chunks in an irregular layout, more than the \(pairwiseChunkLimit) that can be checked for overlap"
            )
        }
        let sorted = nonEmpty.sorted { $0.offsets[axis] < $1.offsets[axis] }
        for (a, b) in zip(sorted, sorted.dropFirst()) where overlaps(a, b) { throw overlapError(a, b) }
    }

    public func loadRaw(_ name: String) throws -> StoredTensor {
        guard let tensor = tensors[name] else {
            throw CheckpointError("\(description): tensor '\(name)' is not in the checkpoint")
        }
        let info = tensor.info
        let filled = tensor.chunks.filter { $0.elementCount > 0 }
        if filled.count == 1, filled[0].sizes == info.shape {
            return try readChunk(filled[0], of: name, dtype: info.dtype)
        }
        let elementSize = info.dtype.byteSize
        return try StoredTensor.assembling(name: name, dtype: info.dtype, shape: info.shape) { out in
            for chunk in filled {
                let part = try readChunk(chunk, of: name, dtype: info.dtype)
                copyBox(
                    part.bytes, offsets: chunk.offsets, sizes: chunk.sizes, into: out, shape: info.shape,
                    elementSize: elementSize)
            }
        }
    }

    /// Indices `leading` of the tensor's first dimension, touching only those rows' bytes in the chunks that
    /// hold them (a view into the mapping when one chunk holds them all, else a copy of the overlapping rows).
    public func loadRaw(_ name: String, leading range: Range<Int>) throws -> StoredTensor {
        guard let tensor = tensors[name] else {
            throw CheckpointError("\(description): tensor '\(name)' is not in the checkpoint")
        }
        let info = tensor.info
        guard let first = info.shape.first, range.lowerBound >= 0, range.upperBound <= first else {
            throw CheckpointError("\(description): tensor '\(name)': rows \(range) are outside its shape \(info.shape)")
        }
        if range == 0..<first { return try loadRaw(name) }
        let inner = Array(info.shape.dropFirst())
        let shape = [range.count] + inner
        let elementSize = info.dtype.byteSize
        let overlapping = tensor.chunks.filter {
            $0.elementCount > 0 && $0.offsets[0] < range.upperBound && range.lowerBound < $0.offsets[0] + $0.sizes[0]
        }
        if overlapping.count == 1, let chunk = overlapping.first, Array(chunk.sizes.dropFirst()) == inner,
            chunk.offsets[0] <= range.lowerBound, range.upperBound <= chunk.offsets[0] + chunk.sizes[0]
        {
            let part = try readChunk(chunk, of: name, dtype: info.dtype, verifyingCRC: false)
            let rowBytes = inner.reduce(1, *) * elementSize
            let start = (range.lowerBound - chunk.offsets[0]) * rowBytes
            return try StoredTensor(
                name: name, dtype: info.dtype, shape: shape,
                bytes: UnsafeRawBufferPointer(rebasing: part.bytes[start..<(start + range.count * rowBytes)]),
                owner: part.owner)
        }
        return try StoredTensor.assembling(name: name, dtype: info.dtype, shape: shape) { out in
            for chunk in overlapping {
                let part = try readChunk(chunk, of: name, dtype: info.dtype, verifyingCRC: false)
                let lower = max(chunk.offsets[0], range.lowerBound)
                let upper = min(chunk.offsets[0] + chunk.sizes[0], range.upperBound)
                let rowBytes = chunk.sizes.dropFirst().reduce(1, *) * elementSize
                let start = (lower - chunk.offsets[0]) * rowBytes
                copyBox(
                    UnsafeRawBufferPointer(rebasing: part.bytes[start..<(start + (upper - lower) * rowBytes)]),
                    offsets: [lower - range.lowerBound] + chunk.offsets.dropFirst(),
                    sizes: [upper - lower] + chunk.sizes.dropFirst(), into: out, shape: shape, elementSize: elementSize)
            }
        }
    }

    /// `verifyingCRC: false` when only some rows will be read: checking the CRC-32 would read them all.
    private func readChunk(_ chunk: Chunk, of name: String, dtype: DType, verifyingCRC: Bool = true) throws -> StoredTensor {
        let file = files[chunk.file]!
        let source = "\(file.path) (tensor '\(name)', bytes \(chunk.byteOffset)..<\(chunk.byteOffset + chunk.byteLength))"
        guard let bytes = file.slice(offset: chunk.byteOffset, length: chunk.byteLength) else {
            throw CheckpointError("\(source): past the end of the file")
        }
        return try TorchArchive(bytes, source: source)
            .tensor(name: name, owner: file, expecting: TensorInfo(dtype: dtype, shape: chunk.sizes), verifyingCRC: verifyingCRC)
    }
}

/// Copies a contiguous block of `sizes` into a row-major tensor of `shape` at `offsets`,
/// one innermost row at a time.
private func copyBox(
    _ source: UnsafeRawBufferPointer, offsets: [Int], sizes: [Int],
    into destination: UnsafeMutableRawBufferPointer, shape: [Int], elementSize: Int
) {
    let rank = shape.count
    guard rank > 0 else {
        destination.baseAddress!.copyMemory(from: source.baseAddress!, byteCount: elementSize)
        return
    }
    var strides = [Int](repeating: 1, count: rank)
    for axis in stride(from: rank - 2, through: 0, by: -1) { strides[axis] = strides[axis + 1] * shape[axis + 1] }
    let rowBytes = sizes[rank - 1] * elementSize
    let rows = sizes.dropLast().reduce(1, *)
    var index = [Int](repeating: 0, count: rank - 1)
    for row in 0..<rows {
        var element = offsets[rank - 1]
        for axis in 0..<(rank - 1) { element += (offsets[axis] + index[axis]) * strides[axis] }
        (destination.baseAddress! + element * elementSize)
            .copyMemory(from: source.baseAddress! + row * rowBytes, byteCount: rowBytes)
        var axis = rank - 2
        while axis >= 0 {
            index[axis] += 1
            if index[axis] < sizes[axis] { break }
            index[axis] = 0
            axis -= 1
        }
    }
}

// MARK: - Metadata

/// Reads the pickled `torch.distributed.checkpoint.metadata.Metadata` into plain Swift values.
struct DCPMetadataParser {
    enum Item {
        case tensor(dtype: String, shape: [Int], chunks: [(offsets: [Int], sizes: [Int])])
        case bytes
    }
    struct StorageInfo {
        let relativePath: String
        let offset: Int
        let length: Int
    }
    struct Parsed {
        var items: [(String, Item)] = []
        /// fqn → (chunk offsets, where it is stored).
        var storage: [String: [(offsets: [Int], info: StorageInfo)]] = [:]
        var version: String?
    }

    let source: String
    static let module = "torch.distributed.checkpoint.metadata."

    func fail(_ message: String) -> CheckpointError { CheckpointError("\(source): \(message)") }

    func object(_ value: PickleValue?, _ type: String, _ what: String) throws -> PickleObject {
        guard case .object(let o)? = value else {
            throw fail("\(what) is not a \(type) (found \(value.map { String($0.description.prefix(80)) } ?? "nothing"))")
        }
        guard o.type == type else { throw fail("\(what) is a \(o.type), expected \(type)") }
        return o
    }

    func parse(_ root: PickleValue) throws -> Parsed {
        let metadata = try object(root, Self.module + "Metadata", "the pickled root")
        var parsed = Parsed()
        parsed.version = metadata.field("version")?.stringValue
        guard let stateDict = metadata.field("state_dict_metadata")?.dictItems else {
            throw fail("Metadata has no state_dict_metadata dict")
        }
        for item in stateDict {
            guard let name = item.key.stringValue else { throw fail("state_dict_metadata has a non-string key \(item.key)") }
            guard case .object(let o) = item.value else { throw fail("entry '\(name)' is not a storage metadata object") }
            switch o.type {
            case Self.module + "BytesStorageMetadata":
                parsed.items.append((name, .bytes))
            case Self.module + "TensorStorageMetadata":
                parsed.items.append((name, try tensorItem(o, name: name)))
            default:
                throw fail("entry '\(name)' has unexpected metadata type \(o.type)")
            }
        }
        guard let storage = metadata.field("storage_data")?.dictItems else {
            throw fail("Metadata has no storage_data dict")
        }
        for item in storage {
            let index = try object(item.key, Self.module + "MetadataIndex", "a storage_data key")
            guard let fqn = index.field("fqn")?.stringValue else { throw fail("a MetadataIndex has no fqn") }
            let offsets: [Int]
            switch index.field("offset") {
            case nil, .some(PickleValue.none): offsets = []
            case let value?:
                guard let o = value.intArray else { throw fail("MetadataIndex of '\(fqn)' has a bad offset") }
                offsets = o
            }
            let info = try object(
                item.value, "torch.distributed.checkpoint.filesystem._StorageInfo",
                "storage of '\(fqn)'")
            guard let path = info.field("relative_path")?.stringValue,
                let offset = info.field("offset")?.intValue,
                let length = info.field("length")?.intValue
            else {
                throw fail("storage of '\(fqn)' lacks relative_path/offset/length")
            }
            guard offset >= 0, length >= 0 else {
                throw fail("storage of '\(fqn)' has a negative offset (\(offset)) or length (\(length))")
            }
            if let transforms = info.field("transform_descriptors")?.sequenceItems, !transforms.isEmpty {
                throw fail("storage of '\(fqn)' uses transforms \(transforms), which are not supported")
            }
            guard !path.isEmpty, !path.contains("/"), !path.contains("\\"), path != "..", path != "." else {
                throw fail("storage of '\(fqn)' names '\(path)', which is not a file in the checkpoint folder")
            }
            parsed.storage[fqn, default: []].append((offsets, StorageInfo(relativePath: path, offset: offset, length: length)))
        }
        return parsed
    }

    func tensorItem(_ o: PickleObject, name: String) throws -> Item {
        let properties = try object(o.field("properties"), Self.module + "TensorProperties", "properties of '\(name)'")
        // TensorProperties pickles its state as a tuple starting with the dtype (older torch: a dict).
        let dtypeValue: PickleValue?
        if case .tuple(let state)? = properties.state, let first = state.first {
            dtypeValue = first
        } else {
            dtypeValue = properties.field("dtype")
        }
        guard case .global(let module, let dtypeName)? = dtypeValue, module == "torch" else {
            throw fail("tensor '\(name)' has no torch dtype in its properties")
        }
        guard let shape = o.field("size")?.intArray else { throw fail("tensor '\(name)' has no size") }
        guard let chunkList = o.field("chunks")?.sequenceItems else { throw fail("tensor '\(name)' has no chunk list") }
        var chunks: [(offsets: [Int], sizes: [Int])] = []
        for value in chunkList {
            let chunk = try object(value, Self.module + "ChunkStorageMetadata", "a chunk of '\(name)'")
            guard let offsets = chunk.field("offsets")?.intArray, let sizes = chunk.field("sizes")?.intArray else {
                throw fail("a chunk of '\(name)' lacks offsets/sizes")
            }
            chunks.append((offsets, sizes))
        }
        return .tensor(dtype: dtypeName, shape: shape, chunks: chunks)
    }
}
