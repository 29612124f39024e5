import CKernels
import Foundation
import MoECore
import MoETensor

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The dtype an HF export writes floating-point tensors in.
public enum HFExportDType: String, Sendable, CaseIterable {
    /// As stored in the checkpoint.
    case keep
    case float32 = "fp32"
    case bfloat16 = "bf16"
}

/// One tensor of an HF DeepSeek-V3 checkpoint being written, and where its bytes come from.
public struct HFExportTensor: Sendable, Equatable {
    public enum Origin: Sendable, Equatable {
        /// A canonical tensor written whole.
        case whole(canonical: String)
        /// One expert's matrix of a grouped canonical expert weight `[E, …]`.
        case expert(canonical: String, expert: Int)
        /// A routing bias the checkpoint lacks (TorchTitan trained without load balancing): zeros, i.e. no bias.
        case zeros
    }
    public let name: String
    public let dtype: DType
    public let shape: [Int]
    public let origin: Origin
    /// The dtype the bytes are read in (the checkpoint's).
    public let sourceDType: DType
    public var byteCount: Int { shape.reduce(1, *) * dtype.byteSize }

    public init(name: String, dtype: DType, shape: [Int], origin: Origin, sourceDType: DType) {
        self.name = name; self.dtype = dtype; self.shape = shape; self.origin = origin; self.sourceDType = sourceDType
    }
}

/// One `.safetensors` file of the export: its tensors in the order their bytes are laid out.
public struct HFExportShard: Sendable {
    public let fileName: String
    public let tensors: [HFExportTensor]
    public var byteCount: Int { tensors.reduce(0) { $0 + $1.byteCount } }
}

/// What an HF export will write, computed from tensor infos alone (no tensor is read), so that
/// shard boundaries and every safetensors header are known before the first byte is written.
/// A family's HF export builds the tensor list (DeepSeek-V3's: MoEModels/DeepSeekV3/DeepSeekV3HFExport.swift).
public struct HFExportPlan: Sendable {
    /// Tensors in checkpoint order: embedding, layers in order, final norm, output head.
    public let tensors: [HFExportTensor]
    public let shards: [HFExportShard]
    public var totalSize: Int { shards.reduce(0) { $0 + $1.byteCount } }
    public var weightMap: [String: String] {
        var map: [String: String] = [:]
        for shard in shards { for t in shard.tensors { map[t.name] = shard.fileName } }
        return map
    }

    /// A plan for `tensors` (named and ordered as the target architecture's checkpoint lists them), split into
    /// shards as above. Families whose HF names are not DeepSeek-V3's build their tensor list themselves.
    public init(tensors: [HFExportTensor], maxShardSize: Int) throws {
        guard maxShardSize > 0 else { throw CheckpointError("maximum shard size must be positive (got \(maxShardSize))") }
        self.tensors = tensors

        var groups: [[HFExportTensor]] = []
        var current: [HFExportTensor] = [], currentSize = 0
        for t in tensors {
            if !current.isEmpty && currentSize + t.byteCount > maxShardSize {
                groups.append(current)
                current = []
                currentSize = 0
            }
            current.append(t)
            currentSize += t.byteCount
        }
        if !current.isEmpty || groups.isEmpty { groups.append(current) }
        shards = groups.enumerated().map { index, members in
            // Wider dtypes first keeps every tensor naturally aligned; otherwise checkpoint order, so that
            // the experts of one grouped weight are written one after another.
            let ordered = members.enumerated().sorted { a, b in
                let ra = SafetensorsWriter.layoutRank(a.element.dtype), rb = SafetensorsWriter.layoutRank(b.element.dtype)
                return ra != rb ? ra > rb : a.offset < b.offset
            }.map(\.element)
            return HFExportShard(fileName: HFExport.shardFileName(index + 1, of: groups.count), tensors: ordered)
        }
    }

    /// TorchTitan's load-balancing routing bias (`moe.expert_bias`, canonical name).
    public static func isRoutingBias(_ canonical: String) -> Bool { canonical.hasSuffix(".moe.expert_bias") }
}

/// Writes a TorchTitan checkpoint as HF DeepSeek-V3 safetensors shards, one tensor (or one expert's
/// matrix) at a time: peak memory is one tensor of the checkpoint (none when it is memory-mapped and kept in
/// its dtype) plus fixed conversion buffers, whatever the model's size.
public enum HFExport {
    public static func shardFileName(_ number: Int, of count: Int) -> String {
        String(format: "model-%05d-of-%05d.safetensors", number, count)
    }

    /// Whether every routing bias (`moe.expert_bias`) the checkpoint holds is zero (true when it holds none): the
    /// bias only decides which experts are selected, so a zero bias selects as an architecture without one does.
    public static func routingBiasIsZero(in source: WeightSource) throws -> Bool {
        for (canonical, info) in source.tensorInfos where HFExportPlan.isRoutingBias(canonical) {
            let stored = try loadChecked(canonical, from: source, expecting: info.dtype)
            defer { releasePages(of: stored) }
            let size = info.dtype.byteSize
            // ±0 in every IEEE float width: all bits but the sign bit (the top bit of the last, little-endian, byte) clear.
            for (index, byte) in stored.bytes.enumerated() where byte != 0 {
                guard info.dtype.isFloatingPoint, index % size == size - 1, byte == 0x80 else { return false }
            }
        }
        return true
    }

    /// Writes every shard of `plan` and then `model.safetensors.index.json` into `folder`.
    /// `progress(done, total)` is called after each tensor.
    public static func write(
        _ plan: HFExportPlan, from source: WeightSource, into folder: URL,
        progress: ((Int, Int) -> Void)? = nil
    ) throws {
        let converter = DTypeConverter()
        var done = 0
        var cached: StoredTensor?
        for shard in plan.shards {
            let url = folder.appendingPathComponent(shard.fileName)
            let header = headerBytes(shard.tensors)
            try SafetensorsWriter.writeAtomically(to: url) { sink in
                try header.withUnsafeBytes { try sink($0) }
                for t in shard.tensors {
                    switch t.origin {
                    case .whole(let canonical):
                        releasePages(of: cached)
                        cached = nil
                        let stored = try loadChecked(canonical, from: source, expecting: t.sourceDType)
                        try converter.convert(stored.bytes, from: t.sourceDType, to: t.dtype, into: sink)
                        releasePages(of: stored)
                    case .expert(let canonical, let expert):
                        if cached?.name != canonical {
                            releasePages(of: cached)
                            cached = nil
                            cached = try loadChecked(canonical, from: source, expecting: t.sourceDType)
                        }
                        let grouped = cached!
                        let size = t.shape.reduce(1, *) * t.sourceDType.byteSize
                        guard grouped.shape.first.map({ $0 * size }) == grouped.bytes.count, expert < grouped.shape[0] else {
                            throw CheckpointError(
                                "\(source.description): tensor '\(canonical)' is \(grouped.shape), not \(expert + 1)+ experts of \(t.shape)"
                            )
                        }
                        let slice = UnsafeRawBufferPointer(rebasing: grouped.bytes[(expert * size)..<((expert + 1) * size)])
                        try converter.convert(slice, from: t.sourceDType, to: t.dtype, into: sink)
                    case .zeros:
                        try converter.zeros(byteCount: t.byteCount, into: sink)
                    }
                    done += 1
                    progress?(done, plan.tensors.count)
                }
            }
        }
        releasePages(of: cached)
        cached = nil
        try SafetensorsWriter.writeIndex(
            weightMap: plan.weightMap, totalSize: plan.totalSize,
            to: folder.appendingPathComponent("model.safetensors.index.json"))
    }

    /// Drops the pages of a memory-mapped tensor once written, so that reading a whole checkpoint through the
    /// mapping does not keep it all resident (the read-only private mapping re-reads the file if touched again).
    private static func releasePages(of tensor: StoredTensor?) {
        guard let tensor, tensor.isMemoryMapped, let base = tensor.bytes.baseAddress, tensor.bytes.count > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = Int(bitPattern: base) / page * page
        let end = (Int(bitPattern: base) + tensor.bytes.count + page - 1) / page * page
        _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_DONTNEED)
    }

    private static func loadChecked(_ canonical: String, from source: WeightSource, expecting dtype: DType) throws -> StoredTensor {
        let stored = try source.load(canonical)
        guard stored.dtype == dtype, stored.info == source.tensorInfos[canonical] else {
            throw CheckpointError(
                "\(source.description): tensor '\(canonical)' loaded as \(stored.dtype.torchName) \(stored.shape), but its metadata says \(dtype.torchName) \(source.tensorInfos[canonical]?.shape ?? [])"
            )
        }
        return stored
    }

    /// The 8-byte length, then the JSON header (with `__metadata__ {"format": "pt"}`, which transformers requires)
    /// padded with spaces to a multiple of 8, listing the tensors in the order given.
    static func headerBytes(_ tensors: [HFExportTensor]) -> [UInt8] {
        var fields = ["\"__metadata__\":{\"format\":\"pt\"}"]
        var offset = 0
        for t in tensors {
            let shape = t.shape.map(String.init).joined(separator: ",")
            fields.append(
                "\(SafetensorsWriter.jsonString(t.name)):{\"dtype\":\"\(SafetensorsDType.code(t.dtype))\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + t.byteCount)]}"
            )
            offset += t.byteCount
        }
        var header = Array(("{" + fields.joined(separator: ",") + "}").utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        var length = UInt64(header.count)
        var prefix = [UInt8](repeating: 0, count: 8)
        for i in 0..<8 { prefix[i] = UInt8(truncatingIfNeeded: length); length >>= 8 }
        return prefix + header
    }
}

/// Converts tensor bytes between dtypes through fixed-size aligned buffers, so that a conversion never
/// holds more than one chunk (the source bytes may be an unaligned memory-mapped view).
final class DTypeConverter {
    static let chunkElements = 1 << 20
    private let source = UnsafeMutableRawPointer.allocate(byteCount: DTypeConverter.chunkElements * 8, alignment: 64)
    private let widened = UnsafeMutablePointer<Float>.allocate(capacity: DTypeConverter.chunkElements)
    private let narrowed = UnsafeMutablePointer<UInt16>.allocate(capacity: DTypeConverter.chunkElements)

    deinit {
        source.deallocate()
        widened.deallocate()
        narrowed.deallocate()
    }

    func convert(
        _ bytes: UnsafeRawBufferPointer, from: DType, to: DType,
        into sink: (UnsafeRawBufferPointer) throws -> Void
    ) throws {
        if from == to || bytes.isEmpty {
            if !bytes.isEmpty { try sink(bytes) }
            return
        }
        guard from.isFloatingPoint, to == .float32 || to == .bfloat16 else {
            throw CheckpointError("cannot convert \(from.torchName) to \(to.torchName)")
        }
        let count = bytes.count / from.byteSize
        var start = 0
        while start < count {
            let n = min(DTypeConverter.chunkElements, count - start)
            source.copyMemory(from: bytes.baseAddress! + start * from.byteSize, byteCount: n * from.byteSize)
            widen(n, from: from)
            if to == .float32 {
                try sink(UnsafeRawBufferPointer(start: widened, count: n * 4))
            } else {
                moe_f32_to_bf16(widened, narrowed, n)
                try sink(UnsafeRawBufferPointer(start: narrowed, count: n * 2))
            }
            start += n
        }
    }

    /// Widens `n` elements of `source` into `widened`.
    private func widen(_ n: Int, from: DType) {
        switch from {
        case .float32:
            widened.update(from: source.assumingMemoryBound(to: Float.self), count: n)
        case .bfloat16:
            moe_bf16_to_f32(source.assumingMemoryBound(to: UInt16.self), widened, n)
        case .float16:
            moe_f16_to_f32(source.assumingMemoryBound(to: UInt16.self), widened, n)
        case .float64:
            let doubles = source.assumingMemoryBound(to: Double.self)
            for i in 0..<n { widened[i] = Float(doubles[i]) }
        default:
            break // refused by convert
        }
    }

    func zeros(byteCount: Int, into sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        let chunk = DTypeConverter.chunkElements * 4
        widened.update(repeating: 0, count: DTypeConverter.chunkElements)
        var left = byteCount
        while left > 0 {
            let n = min(left, chunk)
            try sink(UnsafeRawBufferPointer(start: widened, count: n))
            left -= n
        }
    }
}

/// An output folder that appears complete or not at all: everything is written into a hidden folder beside
/// the destination, which is renamed into place by `commit`. An existing non-empty destination is refused
/// unless `overwrite`, and is only removed once the new folder is complete.
public final class StagedOutputFolder {
    public let destination: URL
    public let staging: URL
    private var committed = false
    /// A SIGINT or SIGTERM before `commit()` removes the staging folder.
    private let interruptCleanup: InterruptCleanup

    public init(destination: URL, overwrite: Bool) throws {
        let fm = FileManager.default
        let path = destination.path
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw CheckpointError("\(path): exists and is a file, not a folder; choose another --output")
            }
            let contents = (try? fm.contentsOfDirectory(atPath: path)) ?? []
            if !contents.isEmpty && !overwrite {
                throw CheckpointError(
                    "\(path): folder exists and is not empty (\(contents.count) entries); refusing to overwrite it (pass --overwrite)")
            }
        }
        let parent = destination.deletingLastPathComponent()
        var missing: [URL] = []
        var ancestor = parent
        while !fm.fileExists(atPath: ancestor.path) && ancestor.path != "/" {
            missing.insert(ancestor, at: 0)
            ancestor = ancestor.deletingLastPathComponent()
        }
        for folder in missing where mkdir(folder.path, 0o755) != 0 && errno != EEXIST {
            throw CheckpointError("\(path): cannot create folder \(folder.path) (\(String(cString: strerror(errno))))")
        }
        staging = parent.appendingPathComponent(
            ".\(destination.lastPathComponent).partial-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        interruptCleanup = InterruptCleanup(path: staging.path, isFolder: true)
        guard mkdir(staging.path, 0o755) == 0 else {
            throw CheckpointError("\(path): cannot create a folder in \(parent.path) (\(String(cString: strerror(errno))))")
        }
        self.destination = destination
    }

    deinit { if !committed { discard() } }

    /// Removes the staging folder and everything in it.
    public func discard() {
        try? FileManager.default.removeItem(at: staging)
        interruptCleanup.release()
    }

    /// Puts the staged folder at the destination (replacing an existing one) with renames only.
    public func commit() throws {
        let fm = FileManager.default
        let path = destination.path
        var previous: URL?
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: path, isDirectory: &isDirectory) {
            if rmdir(path) != 0 {
                let moved = staging.deletingLastPathComponent()
                    .appendingPathComponent(".\(destination.lastPathComponent).replaced-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
                guard rename(path, moved.path) == 0 else {
                    throw CheckpointError("\(path): cannot move the existing folder aside (\(String(cString: strerror(errno))))")
                }
                previous = moved
            }
        }
        guard rename(staging.path, path) == 0 else {
            let reason = String(cString: strerror(errno))
            if let previous { _ = rename(previous.path, path) }
            throw CheckpointError("\(path): cannot rename the finished folder into place (\(reason))")
        }
        committed = true
        interruptCleanup.release()
        if let previous { try? fm.removeItem(at: previous) }
    }

    /// Writes a small file into the staging folder (whole or not at all).
    public func write(_ data: Data, to name: String) throws {
        try SafetensorsWriter.writeAtomically(to: staging.appendingPathComponent(name)) { sink in
            try data.withUnsafeBytes { try sink($0) }
        }
    }
}

/// `5GB`, `500MB`, `2KB`, `1.5GiB`, `1000` (bytes): decimal units as transformers' `max_shard_size` reads them
/// (KB = 1000 B), binary ones with an `i` (KiB = 1024 B).
public func parseByteSize(_ text: String) -> Int? {
    let trimmed = text.trimmingCharacters(in: .whitespaces).uppercased()
    let units: [(String, Double)] = [
        ("KIB", 1024), ("MIB", 1_048_576), ("GIB", 1_073_741_824), ("TIB", 1_099_511_627_776),
        ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12), ("B", 1),
    ]
    var number = trimmed, multiplier = 1.0
    for (suffix, factor) in units where trimmed.hasSuffix(suffix) {
        number = String(trimmed.dropLast(suffix.count)).trimmingCharacters(in: .whitespaces)
        multiplier = factor
        break
    }
    guard let value = Double(number), value.isFinite, value > 0 else { return nil }
    let bytes = (value * multiplier).rounded(.down)
    guard bytes >= 1, bytes < 9e18 else { return nil }
    return Int(bytes)
}
