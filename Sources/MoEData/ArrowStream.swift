import Foundation
import MoEJSON

/// Arrow IPC streams as the `datasets` library caches splits (`cache-*.arrow`, `save_to_disk`), also the
/// pre-1.0 stream framing without the continuation marker and the Arrow file format (`ARROW1`).
public enum ArrowStream {
    public static func read(_ url: URL) throws -> DataTable {
        let bytes: [UInt8]
        do {
            bytes = [UInt8](try Data(contentsOf: url))
        } catch {
            throw DataFileError(file: url.path, "cannot read the file: \(error.localizedDescription)")
        }
        return try read(bytes: bytes, name: url.path)
    }

    /// Reads an Arrow stream already in memory; `name` is how errors name it.
    public static func read(bytes: [UInt8], name: String) throws -> DataTable {
        var reader = ArrowStreamReader(bytes: bytes)
        do {
            return try reader.read()
        } catch let problem as FormatProblem {
            throw DataFileError(file: name, problem.message + reader.context)
        }
    }
}

struct ArrowField {
    indirect enum Kind {
        case null, bool
        case int(bits: Int, signed: Bool)
        case float(bytes: Int)
        case utf8(large: Bool), binary(large: Bool)
        case list(large: Bool, ArrowField)
        case fixedSizeList(Int, ArrowField)
        case structure([ArrowField])
    }

    var name: String
    var kind: Kind
}

struct ArrowStreamReader {
    static let maxDepth = 32
    let bytes: [UInt8]
    private var messageOffset: Int?
    private var batchIndex: Int?
    private var columnName: String?
    private var valueBudget: Int

    init(bytes: [UInt8]) {
        self.bytes = bytes
        let (scaled, overflow) = bytes.count.multipliedReportingOverflow(by: 64)
        self.valueBudget = overflow ? Int.max : scaled + (1 << 22)
    }

    var context: String {
        var parts: [String] = []
        if let batchIndex { parts.append("record batch \(batchIndex)") }
        if let columnName { parts.append("column \(columnName)") }
        if let messageOffset { parts.append("message at byte \(messageOffset)") }
        return parts.isEmpty ? "" : " (\(parts.joined(separator: ", ")))"
    }

    mutating func read() throws -> DataTable {
        var position = 0
        var streamEnd = bytes.count
        let fileMagic = Array("ARROW1".utf8)
        if bytes.count >= 6, Array(bytes[0..<6]) == fileMagic {
            guard bytes.count >= 8 + 10, Array(bytes[(bytes.count - 6)...]) == fileMagic else {
                throw FormatProblem("Arrow file without its closing ARROW1 magic (truncated?)")
            }
            let footerLength = Int(try bytes.littleEndian(Int32.self, at: bytes.count - 10, "footer length"))
            guard footerLength >= 0, footerLength <= bytes.count - 18 else {
                throw FormatProblem("Arrow file footer length \(footerLength) is beyond the file (\(bytes.count) bytes)")
            }
            position = 8
            streamEnd = bytes.count - 10 - footerLength
        }
        guard streamEnd > 0 else { throw FormatProblem("empty file, not an Arrow stream") }
        var fields: [ArrowField]?
        var rows: [JSONObject] = []
        var batches = 0
        var ended = false
        while position < streamEnd {
            messageOffset = position
            var length = Int(try bytes.littleEndian(UInt32.self, at: position, "message length"))
            position += 4
            if length == 0xFFFF_FFFF {
                length = Int(try bytes.littleEndian(Int32.self, at: position, "message length"))
                position += 4
            }
            guard length > 0 else {
                ended = true
                break
            }
            guard length <= Int(Int32.max) else { throw FormatProblem("message length \(length) is invalid (not an Arrow stream?)") }
            let metadataEnd = try Checked.range(start: position, length: length, limit: streamEnd, "message metadata")
            let message = try FlatBuffer(bytes: bytes, start: position, end: metadataEnd).root()
            let bodyLength = try Checked.count(try message.scalar(3, default: Int64(0)), "message body length")
            let bodyEnd = try Checked.range(start: metadataEnd, length: bodyLength, limit: streamEnd, "message body")
            let body = metadataEnd..<bodyEnd
            position = bodyEnd
            let headerType: UInt8 = try message.scalar(1, default: 0)
            guard let header = try message.table(2) else { throw FormatProblem("message without a header") }
            switch headerType {
            case 1:
                guard fields == nil else { throw FormatProblem("second schema message in one stream") }
                guard try header.scalar(0, default: Int16(0)) == 0 else { throw FormatProblem("big-endian Arrow data is not supported") }
                fields = try header.tables(1).map { try field($0, depth: 0) }
            case 3:
                guard let fields else { throw FormatProblem("record batch before the schema") }
                batchIndex = batches
                rows.append(contentsOf: try recordBatch(header, body: body, fields: fields))
                batchIndex = nil
                batches += 1
            case 2:
                throw FormatProblem("dictionary-encoded columns are not supported")
            default:
                throw FormatProblem("unexpected message type \(headerType) (expected a schema or record batch)")
            }
        }
        messageOffset = nil
        guard let fields else { throw FormatProblem("stream has no schema message") }
        // Writers always close a stream with the marker; without it the file was cut short between messages.
        guard ended || streamEnd < bytes.count else {
            throw FormatProblem("stream ends at byte \(bytes.count) without its end-of-stream marker (truncated?)")
        }
        return DataTable(columns: fields.map(\.name), rows: rows)
    }

    private func field(_ table: FlatTable, depth: Int) throws -> ArrowField {
        guard depth < Self.maxDepth else { throw FormatProblem("schema nested deeper than \(Self.maxDepth) levels") }
        let name = try table.string(0) ?? ""
        if try table.table(4) != nil { throw FormatProblem("dictionary-encoded column \(name) is not supported") }
        let typeCode: UInt8 = try table.scalar(2, default: 0)
        let type = try table.table(3)
        let children = try table.tables(5).map { try field($0, depth: depth + 1) }
        func onlyChild() throws -> ArrowField {
            guard children.count == 1 else { throw FormatProblem("list column \(name) has \(children.count) children, not 1") }
            return children[0]
        }
        let kind: ArrowField.Kind
        switch typeCode {
        case 1: kind = .null
        case 2:
            let bits = Int(try type?.scalar(0, default: Int32(0)) ?? 0)
            guard [8, 16, 32, 64].contains(bits) else { throw FormatProblem("column \(name) has integer width \(bits)") }
            kind = .int(bits: bits, signed: try type?.bool(1, default: false) ?? false)
        case 3:
            switch try type?.scalar(0, default: Int16(0)) ?? 0 {
            case 0: kind = .float(bytes: 2)
            case 1: kind = .float(bytes: 4)
            case 2: kind = .float(bytes: 8)
            case let other: throw FormatProblem("column \(name) has unknown float precision \(other)")
            }
        case 4: kind = .binary(large: false)
        case 5: kind = .utf8(large: false)
        case 6: kind = .bool
        case 12: kind = .list(large: false, try onlyChild())
        case 13: kind = .structure(children)
        case 16:
            let size = Int(try type?.scalar(0, default: Int32(0)) ?? 0)
            guard size >= 0 else { throw FormatProblem("column \(name) has fixed list size \(size)") }
            kind = .fixedSizeList(size, try onlyChild())
        case 19: kind = .binary(large: true)
        case 20: kind = .utf8(large: true)
        case 21: kind = .list(large: true, try onlyChild())
        default:
            let names: [UInt8: String] = [
                7: "Decimal", 8: "Date", 9: "Time", 10: "Timestamp", 11: "Interval", 14: "Union",
                15: "FixedSizeBinary", 17: "Map", 18: "Duration", 22: "RunEndEncoded",
                23: "BinaryView", 24: "Utf8View", 25: "ListView", 26: "LargeListView",
            ]
            throw FormatProblem("column \(name) has Arrow type \(names[typeCode] ?? "code \(typeCode)"), which is not supported")
        }
        return ArrowField(name: name, kind: kind)
    }

    private mutating func recordBatch(_ header: FlatTable, body: Range<Int>, fields: [ArrowField]) throws -> [JSONObject] {
        let length = try Checked.count(try header.scalar(0, default: Int64(0)), "record batch length")
        guard let nodes = try header.vector(1, elementSize: 16), let buffers = try header.vector(2, elementSize: 16) else {
            throw FormatProblem("record batch without nodes or buffers")
        }
        var compressed = false
        if let compression = try header.table(3) {
            let codec: Int8 = try compression.scalar(0, default: 0)
            guard codec == 1 else {
                throw FormatProblem(
                    codec == 0 ? "LZ4_FRAME buffer compression is not supported (ZSTD is)" : "buffer compression codec \(codec) is unknown")
            }
            compressed = true
        }
        try spend(length)
        var cursor = ArrowBatchCursor(bytes: bytes, body: body, nodes: nodes, buffers: buffers, compressed: compressed)
        var columns: [[JSONValue]] = []
        for field in fields {
            columnName = field.name
            let values = try decode(field, &cursor, depth: 0)
            guard values.count == length else { throw FormatProblem("column has \(values.count) values, the batch \(length)") }
            columns.append(values)
        }
        columnName = nil
        var rows = [JSONObject](repeating: JSONObject(), count: length)
        for (field, values) in zip(fields, columns) {
            for index in 0..<length { rows[index].append(field.name, values[index]) }
        }
        return rows
    }

    private mutating func spend(_ values: Int) throws {
        guard values <= valueBudget else {
            throw FormatProblem("arrays claim more values than a file of \(bytes.count) bytes can plausibly hold")
        }
        valueBudget -= values
    }

    private mutating func decode(_ field: ArrowField, _ cursor: inout ArrowBatchCursor, depth: Int) throws -> [JSONValue] {
        let (length, nullCount) = try cursor.nextNode()
        try spend(length)
        if case .null = field.kind { return Array(repeating: .null, count: length) }
        let validity = try cursor.nextBuffer()
        if nullCount > 0 {
            guard validity.count >= (length + 7) / 8 else {
                throw FormatProblem("validity bitmap of \(validity.count) bytes for \(length) values")
            }
        }
        func isValid(_ index: Int) -> Bool {
            nullCount == 0 || validity.isEmpty || validity[index >> 3] >> UInt8(index & 7) & 1 == 1
        }
        var values: [JSONValue] = []
        values.reserveCapacity(length)
        switch field.kind {
        case .null:
            break
        case .bool:
            let data = try cursor.nextBuffer()
            guard data.count >= (length + 7) / 8 else { throw FormatProblem("boolean buffer of \(data.count) bytes for \(length) values") }
            for index in 0..<length {
                values.append(isValid(index) ? .bool(data[index >> 3] >> UInt8(index & 7) & 1 == 1) : .null)
            }
        case .int(let bits, let signed):
            let data = try cursor.nextBuffer()
            let width = bits / 8
            guard data.count >= (try Checked.multiply(length, width, "integer buffer size")) else {
                throw FormatProblem("integer buffer of \(data.count) bytes for \(length) values of \(width) bytes")
            }
            for index in 0..<length {
                guard isValid(index) else { values.append(.null); continue }
                var raw: UInt64 = 0
                for byte in 0..<width { raw |= UInt64(data[index * width + byte]) << (8 * byte) }
                if signed {
                    let shift = UInt64(64 - bits)
                    values.append(.int(Int(Int64(bitPattern: raw << shift) >> Int64(shift))))
                } else {
                    values.append(raw > UInt64(Int.max) ? .double(Double(raw)) : .int(Int(raw)))
                }
            }
        case .float(let width):
            let data = try cursor.nextBuffer()
            guard data.count >= (try Checked.multiply(length, width, "float buffer size")) else {
                throw FormatProblem("float buffer of \(data.count) bytes for \(length) values of \(width) bytes")
            }
            for index in 0..<length {
                guard isValid(index) else { values.append(.null); continue }
                var raw: UInt64 = 0
                for byte in 0..<width { raw |= UInt64(data[index * width + byte]) << (8 * byte) }
                switch width {
                case 2: values.append(.double(ParquetEncoding.halfToDouble(UInt16(raw))))
                case 4: values.append(.double(Double(Float(bitPattern: UInt32(raw)))))
                default: values.append(.double(Double(bitPattern: raw)))
                }
            }
        case .utf8(let large), .binary(let large):
            let offsets = try cursor.offsets(length: length, large: large)
            let data = try cursor.nextBuffer()
            for index in 0..<length {
                guard isValid(index) else { values.append(.null); continue }
                let (start, end) = (offsets[index], offsets[index + 1])
                guard start <= end, end <= data.count else {
                    throw FormatProblem("string \(index) offsets \(start)..<\(end) outside its data (\(data.count) bytes)")
                }
                guard let text = String(validating: data[start..<end], as: UTF8.self) else {
                    throw FormatProblem("value \(index) is not valid UTF-8")
                }
                values.append(.string(text))
            }
        case .list(let large, let child):
            let offsets = try cursor.offsets(length: length, large: large)
            guard depth < Self.maxDepth else { throw FormatProblem("arrays nested too deep") }
            let items = try decode(child, &cursor, depth: depth + 1)
            for index in 0..<length {
                guard isValid(index) else { values.append(.null); continue }
                let (start, end) = (offsets[index], offsets[index + 1])
                guard start <= end, end <= items.count else {
                    throw FormatProblem("list \(index) offsets \(start)..<\(end) outside its child (\(items.count) values)")
                }
                values.append(.array(Array(items[start..<end])))
            }
        case .fixedSizeList(let size, let child):
            guard depth < Self.maxDepth else { throw FormatProblem("arrays nested too deep") }
            let items = try decode(child, &cursor, depth: depth + 1)
            guard items.count >= (try Checked.multiply(length, size, "fixed-size list child length")) else {
                throw FormatProblem("fixed-size list child has \(items.count) values for \(length) lists of \(size)")
            }
            for index in 0..<length {
                values.append(isValid(index) ? .array(Array(items[(index * size)..<((index + 1) * size)])) : .null)
            }
        case .structure(let children):
            guard depth < Self.maxDepth else { throw FormatProblem("arrays nested too deep") }
            var childValues: [[JSONValue]] = []
            for child in children {
                let decoded = try decode(child, &cursor, depth: depth + 1)
                guard decoded.count >= length else {
                    throw FormatProblem("struct field \(child.name) has \(decoded.count) values for \(length)")
                }
                childValues.append(decoded)
            }
            for index in 0..<length {
                guard isValid(index) else { values.append(.null); continue }
                var object = JSONObject()
                for (child, decoded) in zip(children, childValues) { object.append(child.name, decoded[index]) }
                values.append(.object(object))
            }
        }
        return values
    }
}

/// Walks a record batch's field nodes and buffers in schema order, decompressing buffers when the batch says so.
struct ArrowBatchCursor {
    let bytes: [UInt8]
    let body: Range<Int>
    let nodes: (start: Int, count: Int)
    let buffers: (start: Int, count: Int)
    let compressed: Bool
    private var nodeIndex = 0
    private var bufferIndex = 0

    init(bytes: [UInt8], body: Range<Int>, nodes: (start: Int, count: Int), buffers: (start: Int, count: Int), compressed: Bool) {
        self.bytes = bytes
        self.body = body
        self.nodes = nodes
        self.buffers = buffers
        self.compressed = compressed
    }

    mutating func nextNode() throws -> (length: Int, nullCount: Int) {
        guard nodeIndex < nodes.count else {
            throw FormatProblem("record batch has fewer field nodes (\(nodes.count)) than the schema needs")
        }
        let at = nodes.start + 16 * nodeIndex
        nodeIndex += 1
        let length = try Checked.count(try bytes.littleEndian(Int64.self, at: at, "field node"), "field node length")
        let nullCount = try Checked.count(try bytes.littleEndian(Int64.self, at: at + 8, "field node"), "field node null count")
        guard nullCount <= length else { throw FormatProblem("field node null count \(nullCount) exceeds its length \(length)") }
        return (length, nullCount)
    }

    /// The next buffer, copied so that it indexes from 0.
    mutating func nextBuffer() throws -> [UInt8] {
        guard bufferIndex < buffers.count else {
            throw FormatProblem("record batch has fewer buffers (\(buffers.count)) than the schema needs")
        }
        let at = buffers.start + 16 * bufferIndex
        bufferIndex += 1
        let offset = try Checked.count(try bytes.littleEndian(Int64.self, at: at, "buffer"), "buffer offset")
        let length = try Checked.count(try bytes.littleEndian(Int64.self, at: at + 8, "buffer"), "buffer length")
        let start = try Checked.add(body.lowerBound, offset, "buffer offset")
        let end = try Checked.range(start: start, length: length, limit: body.upperBound, "buffer \(bufferIndex - 1)")
        guard compressed, end > start else { return Array(bytes[start..<end]) }
        guard end - start >= 8 else { throw FormatProblem("compressed buffer \(bufferIndex - 1) shorter than its length prefix") }
        let declared = try bytes.littleEndian(Int64.self, at: start, "compressed buffer length")
        if declared == -1 { return Array(bytes[(start + 8)..<end]) }
        let size = try Checked.count(declared, "buffer \(bufferIndex - 1) uncompressed length")
        do {
            return try Decompression.decompress(.zstd, bytes[(start + 8)..<end], expectedSize: size)
        } catch let problem as FormatProblem {
            throw FormatProblem("buffer \(bufferIndex - 1): \(problem.message)")
        }
    }

    /// `length + 1` offsets, each ≥ 0 (their bounds are checked where they index).
    mutating func offsets(length: Int, large: Bool) throws -> [Int] {
        let buffer = try nextBuffer()
        let width = large ? 8 : 4
        let needed = try Checked.multiply(try Checked.add(length, 1, "offset count"), width, "offset buffer size")
        if length == 0 && buffer.isEmpty { return [0] }
        guard buffer.count >= needed else { throw FormatProblem("offset buffer of \(buffer.count) bytes for \(length) values") }
        var result: [Int] = []
        result.reserveCapacity(length + 1)
        for index in 0...length {
            var raw: UInt64 = 0
            for byte in 0..<width { raw |= UInt64(buffer[index * width + byte]) << (8 * byte) }
            let value = large ? Int64(bitPattern: raw) : Int64(Int32(truncatingIfNeeded: raw))
            guard value >= 0, let offset = Int(exactly: value) else { throw FormatProblem("negative offset \(value)") }
            result.append(offset)
        }
        return result
    }
}
