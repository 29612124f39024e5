import Foundation

/// Builders for hand-made hostile checkpoint files: a pickle opcode writer, a stored-zip writer that can
/// be told to lie, and a DCP `.metadata` writer. Each regression test states its file byte by byte here
/// instead of committing opaque fixtures.
struct PickleWriter {
    var bytes: [UInt8] = [0x80, 0x02]

    mutating func op(_ opcode: UInt8) { bytes.append(opcode) }
    mutating func mark() { op(0x28) }
    mutating func stop() { op(0x2E) }
    mutating func none() { op(0x4E) }
    mutating func bool(_ value: Bool) { op(value ? 0x88 : 0x89) }
    mutating func emptyTuple() { op(0x29) }
    mutating func tupleFromMark() { op(0x74) }
    mutating func emptyDict() { op(0x7D) }
    mutating func setItemsFromMark() { op(0x75) }
    mutating func emptyList() { op(0x5D) }
    mutating func appendsFromMark() { op(0x65) }

    mutating func global(_ module: String, _ name: String) {
        op(0x63)
        bytes += Array((module + "\n" + name + "\n").utf8)
    }

    mutating func string(_ text: String) {
        let utf8 = Array(text.utf8)
        op(0x58)
        bytes += littleEndian(UInt64(utf8.count), width: 4) + utf8
    }

    /// LONG1 with all eight bytes, so any Int is written the same way.
    mutating func int(_ value: Int) {
        op(0x8A)
        bytes.append(8)
        bytes += littleEndian(UInt64(bitPattern: Int64(value)), width: 8)
    }

    mutating func ints(_ values: [Int]) {
        mark()
        for v in values { int(v) }
        tupleFromMark()
    }

    mutating func put(_ index: UInt8) { op(0x71); bytes.append(index) }
    mutating func get(_ index: UInt8) { op(0x68); bytes.append(index) }

    /// `cls.__new__(cls)` with `state` (a dict written by `fields`) applied by BUILD.
    mutating func object(_ module: String, _ name: String, fields: (inout PickleWriter) -> Void) {
        global(module, name)
        emptyTuple()
        op(0x81) // NEWOBJ
        dict(fields)
        op(0x62) // BUILD
    }

    /// A dict whose items `items` pushes as key, value, key, value…
    mutating func dict(_ items: (inout PickleWriter) -> Void) {
        emptyDict()
        mark()
        items(&self)
        setItemsFromMark()
    }
}

func littleEndian(_ value: UInt64, width: Int) -> [UInt8] {
    (0..<width).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
}

/// CRC-32 as zip computes it (bitwise; the test data is small).
func referenceCRC32(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
    }
    return ~crc
}

/// A stored (uncompressed) zip as torch.save writes it, with knobs to make the central directory lie.
struct ZipWriter {
    struct Entry {
        var name: String
        var data: [UInt8]
        /// What the local header claims, when it should differ from the truth.
        var localName: String? = nil
        var localSize: UInt32? = nil
        var crc: UInt32? = nil
    }
    var entries: [Entry] = []
    /// Central-directory entry index → the entry whose local header it should point at instead.
    var pointLocalHeader: [Int: Int] = [:]

    mutating func add(_ name: String, _ data: [UInt8]) { entries.append(Entry(name: name, data: data)) }

    /// The archive; `totalLength` pads the end record's comment so the archive fills a slot exactly.
    func bytes(totalLength: Int? = nil) -> [UInt8] {
        var out: [UInt8] = []
        var offsets: [Int] = []
        for entry in entries {
            offsets.append(out.count)
            let name = Array((entry.localName ?? entry.name).utf8)
            let crc = entry.crc ?? referenceCRC32(entry.data)
            let size = entry.localSize ?? UInt32(entry.data.count)
            out += littleEndian(0x0403_4B50, width: 4) + littleEndian(20, width: 2) + littleEndian(0, width: 2)
            out += littleEndian(0, width: 2) + littleEndian(0, width: 4) // method, time+date
            out += littleEndian(UInt64(crc), width: 4) + littleEndian(UInt64(size), width: 4) + littleEndian(UInt64(size), width: 4)
            out += littleEndian(UInt64(name.count), width: 2) + littleEndian(0, width: 2) + name + entry.data
        }
        let directoryStart = out.count
        for (i, entry) in entries.enumerated() {
            let name = Array(entry.name.utf8)
            let crc = entry.crc ?? referenceCRC32(entry.data)
            let local = offsets[pointLocalHeader[i] ?? i]
            out += littleEndian(0x0201_4B50, width: 4) + littleEndian(20, width: 2) + littleEndian(20, width: 2)
            out += littleEndian(0, width: 2) + littleEndian(0, width: 2) + littleEndian(0, width: 4)
            out += littleEndian(UInt64(crc), width: 4) + littleEndian(UInt64(entry.data.count), width: 4)
            out += littleEndian(UInt64(entry.data.count), width: 4)
            out += littleEndian(UInt64(name.count), width: 2) + littleEndian(0, width: 2) + littleEndian(0, width: 2)
            out += littleEndian(0, width: 2) + littleEndian(0, width: 2) + littleEndian(0, width: 4)
            out += littleEndian(UInt64(local), width: 4) + name
        }
        let directorySize = out.count - directoryStart
        let commentLength = max(0, (totalLength ?? 0) - (out.count + 22))
        out += littleEndian(0x0605_4B50, width: 4) + littleEndian(0, width: 2) + littleEndian(0, width: 2)
        out += littleEndian(UInt64(entries.count), width: 2) + littleEndian(UInt64(entries.count), width: 2)
        out += littleEndian(UInt64(directorySize), width: 4) + littleEndian(UInt64(directoryStart), width: 4)
        out += littleEndian(UInt64(commentLength), width: 2) + [UInt8](repeating: 0x20, count: commentLength)
        return out
    }
}

/// The `data.pkl` torch.save writes for one tensor: `_rebuild_tensor_v2(storage, offset, size, stride, …)`.
func tensorPickle(
    storageType: String = "FloatStorage", key: String = "0", storageElements: Int,
    offset: Int = 0, shape: [Int], strides: [Int]
) -> [UInt8] {
    var p = PickleWriter()
    p.global("torch._utils", "_rebuild_tensor_v2")
    p.mark()
    p.mark()
    p.string("storage")
    p.global("torch", storageType)
    p.string(key)
    p.string("cpu")
    p.int(storageElements)
    p.tupleFromMark()
    p.op(0x51) // BINPERSID
    p.int(offset)
    p.ints(shape)
    p.ints(strides)
    p.bool(false)
    p.global("collections", "OrderedDict")
    p.emptyTuple()
    p.op(0x52) // REDUCE
    p.tupleFromMark()
    p.op(0x52) // REDUCE
    p.stop()
    return p.bytes
}

func float32Bytes(_ values: [Float]) -> [UInt8] {
    values.flatMap { littleEndian(UInt64($0.bitPattern), width: 4) }
}

/// A DCP `.metadata` pickle: `Metadata(state_dict_metadata=…, storage_data=…)`.
struct DCPMetadataWriter {
    struct TensorEntry {
        var fqn: String
        var dtype = "float32"
        var size: [Int]
        var chunks: [(offsets: [Int], sizes: [Int])]
    }
    struct StorageEntry {
        var fqn: String
        var offsets: [Int]?
        var file = "__0_0.distcp"
        var offset: Int
        var length: Int
    }
    var tensors: [TensorEntry] = []
    var byteEntries: [String] = []
    var storage: [StorageEntry] = []

    static let module = "torch.distributed.checkpoint.metadata"

    func bytes() -> [UInt8] {
        var p = PickleWriter()
        p.object(Self.module, "Metadata") { p in
            p.string("state_dict_metadata")
            p.dict { p in
                for t in tensors {
                    p.string(t.fqn)
                    p.object(Self.module, "TensorStorageMetadata") { p in
                        p.string("properties")
                        p.object(Self.module, "TensorProperties") { p in
                            p.string("dtype")
                            p.global("torch", t.dtype)
                        }
                        p.string("size")
                        p.ints(t.size)
                        p.string("chunks")
                        p.emptyList()
                        p.mark()
                        for chunk in t.chunks {
                            p.object(Self.module, "ChunkStorageMetadata") { p in
                                p.string("offsets")
                                p.ints(chunk.offsets)
                                p.string("sizes")
                                p.ints(chunk.sizes)
                            }
                        }
                        p.appendsFromMark()
                    }
                }
                for name in byteEntries {
                    p.string(name)
                    p.object(Self.module, "BytesStorageMetadata") { _ in }
                }
            }
            p.string("storage_data")
            p.dict { p in
                for s in storage {
                    p.object(Self.module, "MetadataIndex") { p in
                        p.string("fqn")
                        p.string(s.fqn)
                        p.string("offset")
                        if let offsets = s.offsets { p.ints(offsets) } else { p.none() }
                    }
                    p.object("torch.distributed.checkpoint.filesystem", "_StorageInfo") { p in
                        p.string("relative_path")
                        p.string(s.file)
                        p.string("offset")
                        p.int(s.offset)
                        p.string("length")
                        p.int(s.length)
                    }
                }
            }
        }
        p.stop()
        return p.bytes
    }

    /// Writes `.metadata` (and an empty `__0_0.distcp` unless `distcp` is given) into a new folder.
    func writeCheckpoint(distcp: [UInt8] = []) throws -> URL {
        let folder = try makeTemporaryFolder()
        try Data(bytes()).write(to: folder.appendingPathComponent(".metadata"))
        try Data(distcp).write(to: folder.appendingPathComponent("__0_0.distcp"))
        return folder
    }
}
