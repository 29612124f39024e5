import CZlib
import Foundation
import MoETensor

/// A torch.save archive: an uncompressed ("stored") zip holding `<root>/data.pkl` and one
/// `<root>/data/<key>` record per storage. DCP writes one such archive per chunk, back to back
/// inside a `.distcp` file, so this reads from a byte range rather than a file.
public struct TorchArchive {
    /// Names the archive in errors, e.g. "ckpt/__0_0.distcp (tensor 'w', bytes 1024–4096)".
    public let source: String
    /// Payload of each entry, by its name inside the zip (not yet checked against its CRC-32).
    public let entries: [String: UnsafeRawBufferPointer]
    /// The CRC-32 the archive records for each entry; 0 means none was recorded (torch.save writes 0
    /// when told not to compute it).
    let recordedCRC: [String: UInt32]
    /// The folder name every entry sits in (the file stem for files, "archive" for streams).
    public let root: String

    /// Reads the zip directory of an archive held in memory (a file mapping or a byte range of one);
    /// every entry's local header is checked against the central directory. Entry bytes are checked
    /// against their CRC-32 only when read (`value()`, `tensor(…)`), since most of a checkpoint's bytes
    /// are weights that a partial load never touches.
    public init(_ bytes: UnsafeRawBufferPointer, source: String) throws {
        self.source = source
        let directory = try TorchArchive.readEntries(bytes, source: source)
        entries = directory.mapValues(\.bytes)
        recordedCRC = directory.mapValues(\.crc)
        guard let pickleName = entries.keys.filter({ $0.hasSuffix("/data.pkl") }).min() else {
            throw CheckpointError("\(source): not a torch.save archive (no */data.pkl entry)")
        }
        root = String(pickleName.dropLast("/data.pkl".count))
    }

    /// The unpickled `data.pkl` (tensors appear as `_rebuild_tensor_v2` objects).
    public func value() throws -> PickleValue {
        let name = root + "/data.pkl"
        guard let pickle = entries[name] else { throw CheckpointError("\(source): no data.pkl") }
        try checkCRC(of: name, pickle)
        return try Unpickler.load(pickle, source: "\(source) data.pkl")
    }

    /// Refuses an entry whose bytes do not have the CRC-32 the archive records for them.
    func checkCRC(of name: String, _ bytes: UnsafeRawBufferPointer) throws {
        guard let recorded = recordedCRC[name], recorded != 0 else { return }
        let actual =
            bytes.isEmpty ? 0 : UInt32(truncatingIfNeeded: crc32_z(0, bytes.baseAddress!.assumingMemoryBound(to: UInt8.self), bytes.count))
        guard actual == recorded else {
            func hex(_ v: UInt32) -> String { String(repeating: "0", count: 8 - String(v, radix: 16).count) + String(v, radix: 16) }
            throw CheckpointError(
                "\(source): entry \(name): its \(bytes.count) bytes have CRC-32 \(hex(actual)), the archive records \(hex(recorded)) (damaged or altered)"
            )
        }
    }

    /// The single tensor this archive holds: a view into its bytes when the tensor is contiguous,
    /// otherwise a contiguous copy. `owner` keeps the archive's memory alive. `expected` (what the
    /// DCP metadata says) is checked before anything is allocated. `verifyingCRC: false` skips the
    /// CRC-32 of the storage, for callers that read only part of it.
    public func tensor(
        name: String, owner: AnyObject, expecting expected: TensorInfo? = nil,
        verifyingCRC: Bool = true
    ) throws -> StoredTensor {
        let rebuilt = try value()
        guard case .object(let call) = rebuilt, call.type == "torch._utils._rebuild_tensor_v2" else {
            throw CheckpointError("\(source): data.pkl does not hold a tensor (found \(rebuilt.description.prefix(80)))")
        }
        return try tensor(from: call, name: name, owner: owner, expecting: expected, verifyingCRC: verifyingCRC)
    }

    func tensor(
        from call: PickleObject, name: String, owner: AnyObject, expecting expected: TensorInfo? = nil,
        verifyingCRC: Bool = true
    ) throws -> StoredTensor {
        let what = "\(source): tensor '\(name)'"
        guard call.args.count >= 4,
            case .persistent(let pid) = call.args[0],
            let descriptor = pid.sequenceItems, descriptor.count >= 5,
            descriptor[0] == .string("storage"),
            case .global(let storageModule, let storageType) = descriptor[1],
            let key = descriptor[2].stringValue,
            let storageElements = descriptor[4].intValue,
            let storageOffset = call.args[1].intValue,
            let shape = call.args[2].intArray,
            let strides = call.args[3].intArray
        else {
            throw CheckpointError("\(what): unexpected _rebuild_tensor_v2 arguments")
        }
        guard let dtype = TorchArchive.dtype(storageType: storageType) else {
            throw CheckpointError("\(what): unknown dtype (storage type \(storageModule).\(storageType))")
        }
        if let expected {
            guard dtype == expected.dtype else {
                throw CheckpointError("\(source): stored as \(dtype.torchName), but .metadata says \(expected.dtype.torchName)")
            }
            guard shape == expected.shape else {
                throw CheckpointError("\(source): chunk holds \(shape), but .metadata says \(expected.shape)")
            }
        }
        guard shape.count == strides.count else { throw CheckpointError("\(what): size and stride ranks differ") }
        let storageName = root + "/data/" + key
        guard let storage = entries[storageName] else {
            throw CheckpointError("\(what): storage record data/\(key) is missing from the archive")
        }
        let elementSize = dtype.byteSize
        guard storageElements >= 0, storageElements <= storage.count / elementSize else {
            throw CheckpointError(
                "\(what): storage data/\(key) holds \(storage.count) bytes, less than \(storageElements) \(dtype.torchName) elements")
        }
        if verifyingCRC { try checkCRC(of: storageName, storage) }
        let count = try checkedByteCount(shape: shape, dtype: dtype, what: what) / elementSize
        if count == 0 {
            return try StoredTensor(name: name, dtype: dtype, shape: shape, copying: UnsafeRawBufferPointer(start: nil, count: 0))
        }
        // The furthest element the strides reach must lie inside the storage.
        guard storageOffset >= 0, strides.allSatisfy({ $0 >= 0 }) else {
            throw CheckpointError("\(what): negative storage offset or stride")
        }
        var last = storageOffset
        for (size, stride) in zip(shape, strides) {
            let (step, o1) = (size - 1).multipliedReportingOverflow(by: stride)
            let (sum, o2) = last.addingReportingOverflow(step)
            guard !o1, !o2 else { throw CheckpointError("\(what): strides overflow") }
            last = sum
        }
        guard last < storageElements else {
            throw CheckpointError(
                "\(what): size \(shape) with strides \(strides) at offset \(storageOffset) reaches past its \(storageElements)-element storage"
            )
        }
        let base = storage.baseAddress! + storageOffset * elementSize
        if isContiguous(shape: shape, strides: strides) {
            return try StoredTensor(
                name: name, dtype: dtype, shape: shape,
                bytes: UnsafeRawBufferPointer(start: base, count: count * elementSize), owner: owner)
        }
        // A copy is bounded by the storage: more elements than it holds means strides that revisit
        // elements (an expanded view, e.g. stride 0), which could ask for any amount of memory.
        guard count <= storageElements else {
            throw CheckpointError(
                "\(what): size \(shape) with strides \(strides) repeats storage elements: it would need \(count) elements but its storage holds \(storageElements) (expanded views are not supported)"
            )
        }
        return try StoredTensor.assembling(name: name, dtype: dtype, shape: shape) { out in
            gatherStrided(from: base, shape: shape, strides: strides, elementSize: elementSize, into: out.baseAddress!)
        }
    }

    /// torch's legacy typed-storage class names, which torch.save still writes in persistent ids.
    public static func dtype(storageType: String) -> DType? {
        switch storageType {
        case "FloatStorage": return .float32
        case "BFloat16Storage": return .bfloat16
        case "HalfStorage": return .float16
        case "DoubleStorage": return .float64
        case "LongStorage": return .int64
        case "IntStorage": return .int32
        case "ShortStorage": return .int16
        case "CharStorage": return .int8
        case "ByteStorage": return .uint8
        case "BoolStorage": return .bool
        default: return nil
        }
    }

    // MARK: zip

    struct DirectoryEntry {
        let bytes: UnsafeRawBufferPointer
        let crc: UInt32
    }

    private static func readEntries(_ bytes: UnsafeRawBufferPointer, source: String) throws -> [String: DirectoryEntry] {
        func malformed(_ why: String) -> CheckpointError {
            CheckpointError("\(source): malformed zip archive (\(why))")
        }
        func field(_ offset: Int, _ width: Int) throws -> UInt64 {
            guard let v = readLittleEndian(bytes, at: offset, width: width) else { throw malformed("truncated") }
            return v
        }
        // End of central directory: 22 bytes plus a comment of at most 65535 bytes.
        let minimumEOCD = 22
        guard bytes.count >= minimumEOCD else { throw malformed("too short to be a zip") }
        var eocd = -1
        var candidate = bytes.count - minimumEOCD
        let lowest = max(0, bytes.count - minimumEOCD - 65535)
        while candidate >= lowest {
            if try field(candidate, 4) == 0x0605_4B50 { eocd = candidate; break }
            candidate -= 1
        }
        guard eocd >= 0 else { throw malformed("no end-of-central-directory record") }
        var entryCount = Int(try field(eocd + 10, 2))
        var directorySize = try field(eocd + 12, 4)
        var directoryOffset = try field(eocd + 16, 4)
        if entryCount == 0xFFFF || directorySize == 0xFFFF_FFFF || directoryOffset == 0xFFFF_FFFF {
            // zip64: a locator just before the EOCD points at the zip64 EOCD record.
            let locator = eocd - 20
            guard locator >= 0, try field(locator, 4) == 0x0706_4B50 else { throw malformed("zip64 locator missing") }
            let record64 = try field(locator + 8, 8)
            guard bytes.count >= 56, record64 <= UInt64(bytes.count - 56), try field(Int(record64), 4) == 0x0606_4B50 else {
                throw malformed("zip64 end record missing")
            }
            let r = Int(record64)
            let count64 = try field(r + 32, 8)
            guard count64 <= UInt64(bytes.count) else { throw malformed("impossible entry count") }
            entryCount = Int(count64)
            directorySize = try field(r + 40, 8)
            directoryOffset = try field(r + 48, 8)
        }
        guard directoryOffset <= UInt64(bytes.count), directorySize <= UInt64(bytes.count) - directoryOffset else {
            throw malformed("central directory outside the archive")
        }
        /// Replaces the 32-bit fields saturated at 0xFFFFFFFF by the zip64 extra field's 64-bit values,
        /// which appear in the order of `fields` (the caller lists them in the format's order).
        func applyZip64(extraStart: Int, extraLength: Int, _ fields: inout [UInt64]) throws {
            var extra = extraStart
            let extraEnd = extraStart + extraLength
            while extra + 4 <= extraEnd {
                let id = try field(extra, 2), length = Int(try field(extra + 2, 2))
                if id == 0x0001 {
                    var p = extra + 4
                    for i in fields.indices where fields[i] == 0xFFFF_FFFF && p + 8 <= extra + 4 + length {
                        fields[i] = try field(p, 8)
                        p += 8
                    }
                }
                extra += 4 + length
            }
        }
        var result: [String: DirectoryEntry] = [:]
        var position = Int(directoryOffset)
        for _ in 0..<entryCount {
            guard try field(position, 4) == 0x0201_4B50 else { throw malformed("bad central directory entry") }
            let method = try field(position + 10, 2)
            let crc = UInt32(try field(position + 16, 4))
            let nameLength = Int(try field(position + 28, 2))
            let extraLength = Int(try field(position + 30, 2))
            let commentLength = Int(try field(position + 32, 2))
            guard let nameBytes = ByteReader(bytes, position: position + 46).peek(nameLength) else { throw malformed("truncated name") }
            let name = String(decoding: nameBytes, as: UTF8.self)
            // zip64 order: uncompressed size, compressed size, local header offset.
            var sizes = [try field(position + 24, 4), try field(position + 20, 4), try field(position + 42, 4)]
            try applyZip64(extraStart: position + 46 + nameLength, extraLength: extraLength, &sizes)
            let (size, compressedSize, localOffset) = (sizes[0], sizes[1], sizes[2])
            position += 46 + nameLength + extraLength + commentLength
            guard method == 0 else { throw malformed("entry \(name) is compressed (method \(method)); torch.save writes stored entries") }
            guard compressedSize == size else { throw malformed("entry \(name) sizes disagree") }
            guard result[name] == nil else { throw malformed("entry \(name) appears twice in the central directory") }
            guard bytes.count >= 30, localOffset <= UInt64(bytes.count - 30) else {
                throw malformed("entry \(name) starts outside the archive")
            }
            let local = Int(localOffset)
            guard try field(local, 4) == 0x0403_4B50 else { throw malformed("entry \(name) has no local header") }

            // The local header must describe the same entry: a central directory pointing at another
            // entry's header would otherwise load that entry's bytes under this name.
            let localNameLength = Int(try field(local + 26, 2)), localExtraLength = Int(try field(local + 28, 2))
            guard let localName = ByteReader(bytes, position: local + 30).peek(localNameLength) else {
                throw malformed("entry \(name): truncated local header")
            }
            guard localName.elementsEqual(nameBytes) else {
                throw malformed(
                    "entry \(name): its local header names \(String(decoding: localName, as: UTF8.self)) (the central directory points at another entry)"
                )
            }
            guard try field(local + 8, 2) == method else {
                throw malformed("entry \(name): local header and central directory disagree on the compression method")
            }
            let flags = try field(local + 6, 2)
            var localSizes = [try field(local + 22, 4), try field(local + 18, 4)]
            try applyZip64(extraStart: local + 30 + localNameLength, extraLength: localExtraLength, &localSizes)
            let localCRC = UInt32(try field(local + 14, 4))
            let dataStart = local + 30 + localNameLength + localExtraLength
            guard dataStart <= bytes.count, size <= UInt64(bytes.count - dataStart) else {
                throw malformed("entry \(name) runs past the end of the archive")
            }
            let dataEnd = dataStart + Int(size)
            if flags & 0x8 != 0 {
                // Streamed entry (torch.save): zeros (or zip64's saturated marker) in the local header, the
                // values in a data descriptor after the data, with 32- or 64-bit sizes.
                guard localCRC == 0 || localCRC == crc, localSizes.allSatisfy({ $0 == 0 || $0 == 0xFFFF_FFFF || $0 == size }) else {
                    throw malformed("entry \(name): local header size or CRC-32 disagrees with the central directory")
                }
                var descriptor = dataEnd
                if readLittleEndian(bytes, at: descriptor, width: 4) == 0x0807_4B50 { descriptor += 4 }
                let narrow =
                    readLittleEndian(bytes, at: descriptor + 4, width: 4) == size
                    && readLittleEndian(bytes, at: descriptor + 8, width: 4) == size
                let wide =
                    readLittleEndian(bytes, at: descriptor + 4, width: 8) == size
                    && readLittleEndian(bytes, at: descriptor + 12, width: 8) == size
                guard readLittleEndian(bytes, at: descriptor, width: 4) == UInt64(crc), narrow || wide else {
                    throw malformed("entry \(name): data descriptor size or CRC-32 disagrees with the central directory")
                }
            } else {
                guard localCRC == crc, localSizes[0] == size, localSizes[1] == compressedSize else {
                    throw malformed("entry \(name): local header size or CRC-32 disagrees with the central directory")
                }
            }
            result[name] = DirectoryEntry(bytes: UnsafeRawBufferPointer(rebasing: bytes[dataStart..<dataEnd]), crc: crc)
        }
        return result
    }
}

/// A standalone torch.save file holding one tensor (or any allowlisted data).
public final class TorchSaveFile: @unchecked Sendable {
    public let url: URL
    public let archive: TorchArchive
    private let file: MappedFile

    public init(url: URL) throws {
        self.url = url
        file = try MappedFile(path: url.path)
        archive = try TorchArchive(file.bytes, source: url.path)
    }

    public func value() throws -> PickleValue { try archive.value() }

    /// The tensor the file holds (a zero-copy view when contiguous).
    public func tensor(name: String? = nil) throws -> StoredTensor {
        try archive.tensor(name: name ?? url.lastPathComponent, owner: file)
    }
}

func isContiguous(shape: [Int], strides: [Int]) -> Bool {
    var expected = 1
    for axis in stride(from: shape.count - 1, through: 0, by: -1) {
        if shape[axis] != 1 && strides[axis] != expected { return false }
        expected *= shape[axis]
    }
    return true
}

/// Copies a strided tensor into row-major order (rare: DCP clones views before saving).
private func gatherStrided(
    from base: UnsafeRawPointer, shape: [Int], strides: [Int], elementSize: Int,
    into out: UnsafeMutableRawPointer
) {
    let rank = shape.count
    var index = [Int](repeating: 0, count: rank)
    var written = 0
    let total = shape.reduce(1, *)
    while written < total {
        var offset = 0
        for axis in 0..<rank { offset += index[axis] * strides[axis] }
        (out + written * elementSize).copyMemory(from: base + offset * elementSize, byteCount: elementSize)
        written += 1
        var axis = rank - 1
        while axis >= 0 {
            index[axis] += 1
            if index[axis] < shape[axis] { break }
            index[axis] = 0
            axis -= 1
        }
    }
}

extension ByteReader {
    func peek(_ n: Int) -> UnsafeRawBufferPointer? {
        var copy = self
        return copy.take(n)
    }
}
