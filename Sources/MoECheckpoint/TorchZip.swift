import Foundation
import MoETensor

/// A torch.save archive: an uncompressed ("stored") zip holding `<root>/data.pkl` and one
/// `<root>/data/<key>` record per storage. DCP writes one such archive per chunk, back to back
/// inside a `.distcp` file, so this reads from a byte range rather than a file.
public struct TorchArchive {
    /// Names the archive in errors, e.g. "ckpt/__0_0.distcp (tensor 'w', bytes 1024–4096)".
    public let source: String
    /// Payload of each entry, by its name inside the zip.
    public let entries: [String: UnsafeRawBufferPointer]
    /// The folder name every entry sits in (the file stem for files, "archive" for streams).
    public let root: String

    public init(_ bytes: UnsafeRawBufferPointer, source: String) throws {
        self.source = source
        self.entries = try TorchArchive.readEntries(bytes, source: source)
        guard let pickleName = entries.keys.filter({ $0.hasSuffix("/data.pkl") }).min() else {
            throw CheckpointError("\(source): not a torch.save archive (no */data.pkl entry)")
        }
        root = String(pickleName.dropLast("/data.pkl".count))
    }

    /// The unpickled `data.pkl` (tensors appear as `_rebuild_tensor_v2` objects).
    public func value() throws -> PickleValue {
        guard let pickle = entries[root + "/data.pkl"] else { throw CheckpointError("\(source): no data.pkl") }
        return try Unpickler.load(pickle, source: "\(source) data.pkl")
    }

    /// The single tensor this archive holds: a view into its bytes when the tensor is contiguous,
    /// otherwise a contiguous copy. `owner` keeps the archive's memory alive.
    public func tensor(name: String, owner: AnyObject) throws -> StoredTensor {
        let rebuilt = try value()
        guard case .object(let call) = rebuilt, call.type == "torch._utils._rebuild_tensor_v2" else {
            throw CheckpointError("\(source): data.pkl does not hold a tensor (found \(rebuilt.description.prefix(80)))")
        }
        return try tensor(from: call, name: name, owner: owner)
    }

    func tensor(from call: PickleObject, name: String, owner: AnyObject) throws -> StoredTensor {
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
              let strides = call.args[3].intArray else {
            throw CheckpointError("\(what): unexpected _rebuild_tensor_v2 arguments")
        }
        guard let dtype = TorchArchive.dtype(storageType: storageType) else {
            throw CheckpointError("\(what): unknown dtype (storage type \(storageModule).\(storageType))")
        }
        guard shape.count == strides.count else { throw CheckpointError("\(what): size and stride ranks differ") }
        guard let storage = entries[root + "/data/" + key] else {
            throw CheckpointError("\(what): storage record data/\(key) is missing from the archive")
        }
        let elementSize = dtype.byteSize
        guard storageElements >= 0, storageElements <= storage.count / elementSize else {
            throw CheckpointError("\(what): storage data/\(key) holds \(storage.count) bytes, less than \(storageElements) \(dtype.torchName) elements")
        }
        let count = try checkedByteCount(shape: shape, dtype: dtype, what: name) / elementSize
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
            throw CheckpointError("\(what): size \(shape) with strides \(strides) at offset \(storageOffset) reaches past its \(storageElements)-element storage")
        }
        let base = storage.baseAddress! + storageOffset * elementSize
        if isContiguous(shape: shape, strides: strides) {
            return try StoredTensor(name: name, dtype: dtype, shape: shape,
                                    bytes: UnsafeRawBufferPointer(start: base, count: count * elementSize), owner: owner)
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

    private static func readEntries(_ bytes: UnsafeRawBufferPointer, source: String) throws -> [String: UnsafeRawBufferPointer] {
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
        var result: [String: UnsafeRawBufferPointer] = [:]
        var position = Int(directoryOffset)
        for _ in 0..<entryCount {
            guard try field(position, 4) == 0x0201_4B50 else { throw malformed("bad central directory entry") }
            let method = try field(position + 10, 2)
            var compressedSize = try field(position + 20, 4)
            var size = try field(position + 24, 4)
            let nameLength = Int(try field(position + 28, 2))
            let extraLength = Int(try field(position + 30, 2))
            let commentLength = Int(try field(position + 32, 2))
            var localOffset = try field(position + 42, 4)
            guard let nameBytes = ByteReader(bytes, position: position + 46).peek(nameLength) else { throw malformed("truncated name") }
            let name = String(decoding: nameBytes, as: UTF8.self)
            // zip64 extra field: 64-bit values for exactly the fields saturated above, in this order.
            var extra = position + 46 + nameLength
            let extraEnd = extra + extraLength
            while extra + 4 <= extraEnd {
                let id = try field(extra, 2), length = Int(try field(extra + 2, 2))
                if id == 0x0001 {
                    var p = extra + 4
                    if size == 0xFFFF_FFFF { size = try field(p, 8); p += 8 }
                    if compressedSize == 0xFFFF_FFFF { compressedSize = try field(p, 8); p += 8 }
                    if localOffset == 0xFFFF_FFFF { localOffset = try field(p, 8); p += 8 }
                }
                extra += 4 + length
            }
            position = extraEnd + commentLength
            guard method == 0 else { throw malformed("entry \(name) is compressed (method \(method)); torch.save writes stored entries") }
            guard compressedSize == size else { throw malformed("entry \(name) sizes disagree") }
            guard bytes.count >= 30, localOffset <= UInt64(bytes.count - 30) else { throw malformed("entry \(name) starts outside the archive") }
            let local = Int(localOffset)
            guard try field(local, 4) == 0x0403_4B50 else { throw malformed("entry \(name) has no local header") }
            let dataStart = local + 30 + Int(try field(local + 26, 2)) + Int(try field(local + 28, 2))
            guard dataStart <= bytes.count, size <= UInt64(bytes.count - dataStart) else {
                throw malformed("entry \(name) runs past the end of the archive")
            }
            result[name] = UnsafeRawBufferPointer(rebasing: bytes[dataStart..<(dataStart + Int(size))])
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
private func gatherStrided(from base: UnsafeRawPointer, shape: [Int], strides: [Int], elementSize: Int,
                           into out: UnsafeMutableRawPointer) {
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
