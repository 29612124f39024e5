import Foundation
import MoECore
import MoEJSON
import MoETensor

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Safetensors dtype codes ↔ DType.
public enum SafetensorsDType {
    public static func dtype(code: String) -> DType? {
        switch code {
        case "F64": return .float64
        case "F32": return .float32
        case "F16": return .float16
        case "BF16": return .bfloat16
        case "I64": return .int64
        case "I32": return .int32
        case "I16": return .int16
        case "I8": return .int8
        case "U8": return .uint8
        case "BOOL": return .bool
        default: return nil
        }
    }

    public static func code(_ dtype: DType) -> String {
        switch dtype {
        case .float64: return "F64"
        case .float32: return "F32"
        case .float16: return "F16"
        case .bfloat16: return "BF16"
        case .int64: return "I64"
        case .int32: return "I32"
        case .int16: return "I16"
        case .int8: return "I8"
        case .uint8: return "U8"
        case .bool: return "BOOL"
        }
    }
}

/// One `.safetensors` file, memory-mapped; tensors are zero-copy views.
public final class SafetensorsFile: Sendable {
    public let url: URL
    /// The header's `__metadata__` (string → string), if any.
    public let metadata: [String: String]?
    public let tensorInfos: [String: TensorInfo]
    /// Absolute byte range of each tensor in the file.
    let ranges: [String: Range<Int>]
    let file: MappedFile

    public init(url: URL) throws {
        self.url = url
        file = try MappedFile(path: url.path)
        let (header, dataStart) = try SafetensorsHeader.parse(fileBytes: file.bytes, source: url.path)
        metadata = header.metadata
        tensorInfos = header.tensorInfos
        ranges = header.ranges.mapValues { (dataStart + $0.lowerBound)..<(dataStart + $0.upperBound) }
    }

    public var names: [String] { tensorInfos.keys.sorted() }

    public func load(_ name: String) throws -> StoredTensor {
        guard let info = tensorInfos[name], let range = ranges[name] else {
            throw CheckpointError("\(url.path): tensor '\(name)' is not in the file")
        }
        let bytes = UnsafeRawBufferPointer(rebasing: file.bytes[range])
        return try StoredTensor(name: name, dtype: info.dtype, shape: info.shape, bytes: bytes, owner: file)
    }
}

/// A safetensors checkpoint: one file, a folder of files, or shards listed by `model.safetensors.index.json`.
public final class SafetensorsCheckpoint: RawTensorStore {
    public let url: URL
    public let files: [SafetensorsFile]
    /// Tensor name → index into `files`.
    let location: [String: Int]
    public let rawTensorInfos: [String: TensorInfo]

    /// `url`: a `.safetensors` file, a `*.safetensors.index.json`, or a folder holding either.
    public init(url: URL) throws {
        self.url = url
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw CheckpointError("\(url.path): no such file or folder")
        }
        var files: [SafetensorsFile] = []
        var location: [String: Int] = [:]
        let indexURL: URL?
        if isDirectory.boolValue {
            let candidate = url.appendingPathComponent("model.safetensors.index.json")
            indexURL = FileManager.default.fileExists(atPath: candidate.path) ? candidate : nil
        } else {
            indexURL = url.lastPathComponent.hasSuffix(".index.json") ? url : nil
        }
        if let indexURL {
            let folder = indexURL.deletingLastPathComponent()
            let weightMap = try SafetensorsCheckpoint.readIndex(indexURL)
            var fileIndex: [String: Int] = [:]
            for fileName in Set(weightMap.values).sorted() {
                guard !fileName.contains("/"), fileName != "..", fileName != "." else {
                    throw CheckpointError("\(indexURL.path): shard name '\(fileName)' is not a plain file name")
                }
                fileIndex[fileName] = files.count
                files.append(try SafetensorsFile(url: folder.appendingPathComponent(fileName)))
            }
            for (name, fileName) in weightMap {
                let index = fileIndex[fileName]!
                guard files[index].tensorInfos[name] != nil else {
                    throw CheckpointError("\(indexURL.path): lists tensor '\(name)' in \(fileName), which does not hold it")
                }
                location[name] = index
            }
        } else {
            let urls: [URL]
            if isDirectory.boolValue {
                let names = (try? FileManager.default.contentsOfDirectory(atPath: url.path)) ?? []
                urls = names.filter { $0.hasSuffix(".safetensors") }.sorted().map { url.appendingPathComponent($0) }
                guard !urls.isEmpty else { throw CheckpointError("\(url.path): no .safetensors files") }
            } else {
                urls = [url]
            }
            for fileURL in urls {
                let file = try SafetensorsFile(url: fileURL)
                for name in file.tensorInfos.keys {
                    if let previous = location[name] {
                        throw CheckpointError(
                            "\(url.path): tensor '\(name)' is in both \(files[previous].url.lastPathComponent) and \(fileURL.lastPathComponent)"
                        )
                    }
                    location[name] = files.count
                }
                files.append(file)
            }
        }
        self.files = files
        self.location = location
        var infos: [String: TensorInfo] = [:]
        for (name, index) in location { infos[name] = files[index].tensorInfos[name] }
        rawTensorInfos = infos
    }

    private static func readIndex(_ url: URL) throws -> [String: String] {
        struct Index: Decodable { let weight_map: [String: String] }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw CheckpointError("\(url.path): cannot read (\(shortDescription(of: error)))")
        }
        do { return try JSONValueDecoder().decode(Index.self, from: Array(data)).weight_map } catch {
            throw CheckpointError("\(url.path): not a valid safetensors index (\(error))")
        }
    }

    public var description: String {
        files.count == 1 ? "safetensors \(files[0].url.path)" : "safetensors checkpoint \(url.path) (\(files.count) files)"
    }

    public var entries: [CheckpointEntry] {
        rawTensorInfos.keys.sorted().map { name in
            let info = rawTensorInfos[name]!
            return CheckpointEntry(
                name: name, kind: .tensor(dtype: info.dtype.torchName, shape: info.shape),
                role: .model, chunkCount: 1, byteCount: info.byteCount)
        }
    }

    public func loadRaw(_ name: String) throws -> StoredTensor {
        guard let index = location[name] else { throw CheckpointError("\(description): tensor '\(name)' is not in the checkpoint") }
        return try files[index].load(name)
    }
}

/// Writes safetensors files the way the reference Rust writer lays them out: header padded with
/// spaces to a multiple of 8, tensors sorted by descending dtype (wider first) then name, so every
/// tensor is naturally aligned and the data section matches the `safetensors` library's byte for byte. Files appear atomically (temporary file, then rename).
public enum SafetensorsWriter {
    public static func write(_ tensors: [StoredTensor], metadata: [String: String]? = nil, to url: URL) throws {
        var seen = Set<String>()
        for t in tensors where !seen.insert(t.name).inserted {
            throw CheckpointError("\(url.path): tensor '\(t.name)' given twice")
        }
        let ordered = tensors.sorted { a, b in
            let ra = layoutRank(a.dtype), rb = layoutRank(b.dtype)
            return ra != rb ? ra > rb : a.name < b.name
        }
        var json = "{"
        var fields: [String] = []
        if let metadata, !metadata.isEmpty {
            let items = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
            fields.append("\"__metadata__\":{" + items.joined(separator: ",") + "}")
        }
        var offset = 0
        for t in ordered {
            let shape = t.shape.map(String.init).joined(separator: ",")
            fields.append(
                "\(jsonString(t.name)):{\"dtype\":\"\(SafetensorsDType.code(t.dtype))\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + t.bytes.count)]}"
            )
            offset += t.bytes.count
        }
        json += fields.joined(separator: ",") + "}"
        var header = Array(json.utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        var prefix = [UInt8](repeating: 0, count: 8)
        var length = UInt64(header.count)
        for i in 0..<8 { prefix[i] = UInt8(truncatingIfNeeded: length); length >>= 8 }
        try writeAtomically(to: url) { sink in
            try prefix.withUnsafeBytes { try sink($0) }
            try header.withUnsafeBytes { try sink($0) }
            for t in ordered { try sink(t.bytes) }
        }
    }

    /// The order of the Rust `Dtype` enum, which its writer sorts by (descending): wider types first.
    static func layoutRank(_ dtype: DType) -> Int {
        switch dtype {
        case .bool: return 0
        case .uint8: return 1
        case .int8: return 2
        case .int16: return 5
        case .float16: return 7
        case .bfloat16: return 8
        case .int32: return 9
        case .float32: return 11
        case .float64: return 12
        case .int64: return 13
        }
    }

    /// Writes `model.safetensors.index.json` for sharded files.
    public static func writeIndex(weightMap: [String: String], totalSize: Int, to url: URL) throws {
        let items = weightMap.keys.sorted().map { "    \(jsonString($0)): \(jsonString(weightMap[$0]!))" }
        let text =
            "{\n  \"metadata\": {\n    \"total_size\": \(totalSize)\n  },\n  \"weight_map\": {\n"
            + items.joined(separator: ",\n") + "\n  }\n}\n"
        let bytes = Array(text.utf8)
        try writeAtomically(to: url) { sink in try bytes.withUnsafeBytes { try sink($0) } }
    }

    static func jsonString(_ s: String) -> String { JSONValue.quoted(s) }

    /// Streams bytes into a temporary file beside `url`, then renames it into place (see `AtomicFile`).
    static func writeAtomically(to url: URL, _ body: (AtomicFile.Sink) throws -> Void) throws {
        do {
            try AtomicFile.write(to: url, existing: .replace) { _, output in try body { try output.write($0) } }
        } catch let error as AtomicFileError {
            throw CheckpointError("\(error.path): \(error.reason)")
        }
    }
}

/// A safetensors header, checked: known dtypes, non-negative shapes whose byte count fits, byte ranges
/// inside the data section that match dtype × shape and do not overlap, no tensor named twice.
public struct SafetensorsHeader: Sendable {
    /// `__metadata__` (string → string), if present.
    public let metadata: [String: String]?
    public let tensorInfos: [String: TensorInfo]
    /// Each tensor's bytes, relative to the start of the data section.
    public let ranges: [String: Range<Int>]

    /// The format's own limit on header size.
    public static let maximumSize = 100_000_000

    /// Reads the 8-byte header length and the header of a whole file held in memory; returns the header
    /// and where the data section starts.
    public static func parse(
        fileBytes bytes: UnsafeRawBufferPointer, source: String
    ) throws
        -> (header: SafetensorsHeader, dataStart: Int)
    {
        guard let length = readLittleEndian(bytes, at: 0, width: 8) else {
            throw CheckpointError("\(source): too short to be a safetensors file (\(bytes.count) bytes)")
        }
        guard length <= UInt64(min(bytes.count - 8, maximumSize)) else {
            throw CheckpointError("\(source): header length \(length) exceeds the file (\(bytes.count) bytes) or the 100 MB limit")
        }
        let dataStart = 8 + Int(length)
        let header = try parse(json: Array(bytes[8..<dataStart]), dataSize: bytes.count - dataStart, source: source)
        return (header, dataStart)
    }

    /// Parses the JSON header alone; `dataSize` is the length of the data section that follows it.
    public static func parse(json: [UInt8], dataSize: Int, source: String) throws -> SafetensorsHeader {
        let root: JSONValue
        do { root = try JSONValue.parse(json) } catch {
            throw CheckpointError("\(source): header is not valid safetensors JSON (\(error))")
        }
        guard case .object(let object) = root else { throw CheckpointError("\(source): header is not a JSON object") }
        var metadata: [String: String]?
        var infos: [String: TensorInfo] = [:]
        var ranges: [String: Range<Int>] = [:]
        for (name, value) in object.entries {
            if name == "__metadata__" {
                guard metadata == nil, case .object(let items) = value else {
                    throw CheckpointError("\(source): __metadata__ must be one object of strings")
                }
                var strings: [String: String] = [:]
                for (key, item) in items.entries {
                    guard let text = item.stringValue else {
                        throw CheckpointError("\(source): __metadata__ value of '\(key)' is \(item.typeName), not a string")
                    }
                    strings[key] = text
                }
                metadata = strings
                continue
            }
            let what = "\(source): tensor '\(name)'"
            guard infos[name] == nil else { throw CheckpointError("\(what): appears more than once in the header") }
            guard case .object(let entry) = value else { throw CheckpointError("\(what): is \(value.typeName), not an object") }
            guard let code = entry["dtype"]?.stringValue else { throw CheckpointError("\(what): dtype is missing or not a string") }
            guard let dtype = SafetensorsDType.dtype(code: code) else { throw CheckpointError("\(what): unknown dtype \(code)") }
            guard let shapeValues = entry["shape"]?.arrayValue else { throw CheckpointError("\(what): shape is missing or not an array") }
            let shape = try shapeValues.map { dimension -> Int in
                guard case .int(let n) = dimension else {
                    throw CheckpointError(
                        "\(what): shape \(JSONValue.array(shapeValues).serialized) holds something that is not an integer")
                }
                return n
            }
            let byteCount = try checkedByteCount(shape: shape, dtype: dtype, what: what)
            guard let offsets = entry["data_offsets"]?.arrayValue, offsets.count == 2,
                case .int(let begin) = offsets[0], case .int(let end) = offsets[1]
            else {
                throw CheckpointError("\(what): data_offsets must be two integers")
            }
            guard begin >= 0, begin <= end, end <= dataSize else {
                throw CheckpointError("\(what): data_offsets [\(begin), \(end)] lie outside the \(dataSize) data bytes (truncated file?)")
            }
            guard end - begin == byteCount else {
                throw CheckpointError("\(what): data_offsets span \(end - begin) bytes but \(dtype.torchName) \(shape) needs \(byteCount)")
            }
            infos[name] = TensorInfo(dtype: dtype, shape: shape)
            ranges[name] = begin..<end
        }
        let sorted = ranges.filter { !$0.value.isEmpty }.sorted { $0.value.lowerBound < $1.value.lowerBound }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.value.upperBound > b.value.lowerBound {
            throw CheckpointError("\(source): tensors '\(a.key)' and '\(b.key)' overlap")
        }
        return SafetensorsHeader(metadata: metadata, tensorInfos: infos, ranges: ranges)
    }
}

/// A decoding error as one short phrase (Foundation's descriptions span lines).
func shortDescription(of error: Error) -> String {
    if let e = error as? CheckpointError { return e.description }
    if let e = error as? DecodingError {
        switch e {
        case .dataCorrupted(let c), .keyNotFound(_, let c), .typeMismatch(_, let c), .valueNotFound(_, let c):
            let path = c.codingPath.map(\.stringValue).joined(separator: ".")
            return (path.isEmpty ? "" : "at \(path): ") + c.debugDescription
        @unknown default:
            break
        }
    }
    return String(describing: error).split(separator: "\n").first.map(String.init) ?? "error"
}
