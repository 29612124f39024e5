/// Thrift compact protocol, read into a generic value tree (parquet's footer and page headers).
///
/// Generic because parquet readers must skip fields of newer format versions; typed accessors on `ThriftStruct`
/// then check each field parquet needs. Nesting is bounded and every length is checked against the bytes left.
enum ThriftValue {
    case bool(Bool)
    case int(Int64)
    case double(Double)
    /// Bytes `range` of the buffer that was read.
    case binary(Range<Int>)
    case list([ThriftValue])
    case map([(ThriftValue, ThriftValue)])
    case structure(ThriftStruct)
}

struct ThriftStruct {
    var fields: [Int16: ThriftValue] = [:]
}

struct ThriftCompactReader {
    static let maxDepth = 64
    let bytes: [UInt8]
    private(set) var position: Int
    let end: Int

    init(bytes: [UInt8], start: Int, end: Int) {
        self.bytes = bytes
        self.position = start
        self.end = end
    }

    mutating func readStruct() throws -> ThriftStruct { try readStruct(depth: 0) }

    private mutating func readStruct(depth: Int) throws -> ThriftStruct {
        guard depth < Self.maxDepth else { throw FormatProblem("Thrift structure nested deeper than \(Self.maxDepth) at byte \(position)") }
        var result = ThriftStruct()
        var lastField: Int16 = 0
        while true {
            let header = try readByte()
            if header == 0 { return result }
            let type = header & 0x0F
            let delta = Int16(header >> 4)
            let fieldID: Int16
            if delta == 0 {
                let raw = try readZigzag()
                guard let id = Int16(exactly: raw) else { throw FormatProblem("Thrift field id \(raw) out of range at byte \(position)") }
                fieldID = id
            } else {
                let (next, overflow) = lastField.addingReportingOverflow(delta)
                guard !overflow else { throw FormatProblem("Thrift field id overflows at byte \(position)") }
                fieldID = next
            }
            lastField = fieldID
            let value: ThriftValue
            switch type {
            case 1: value = .bool(true)
            case 2: value = .bool(false)
            default: value = try readValue(type: type, depth: depth + 1)
            }
            result.fields[fieldID] = value
        }
    }

    private mutating func readValue(type: UInt8, depth: Int) throws -> ThriftValue {
        switch type {
        case 1, 2: return .bool(try readByte() == 1) // inside lists and maps a bool is one byte
        case 3: return .int(Int64(Int8(bitPattern: try readByte())))
        case 4, 5, 6: return .int(try readZigzag())
        case 7:
            let bits: UInt64 = try bytes.littleEndian(UInt64.self, at: position, "Thrift double")
            guard position + 8 <= end else { throw FormatProblem("Thrift double at byte \(position) runs past the end") }
            position += 8
            return .double(Double(bitPattern: bits))
        case 8:
            let length = try Checked.count(try readVarint(), "Thrift binary length at byte \(position)")
            let stop = try Checked.range(start: position, length: length, limit: end, "Thrift binary")
            defer { position = stop }
            return .binary(position..<stop)
        case 9, 10:
            let header = try readByte()
            var size = Int(header >> 4)
            if size == 15 { size = try Checked.count(try readVarint(), "Thrift list size at byte \(position)") }
            guard size <= end - position else {
                throw FormatProblem("Thrift list of \(size) elements at byte \(position) is longer than the data left")
            }
            guard depth < Self.maxDepth else {
                throw FormatProblem("Thrift structure nested deeper than \(Self.maxDepth) at byte \(position)")
            }
            var items: [ThriftValue] = []
            items.reserveCapacity(size)
            for _ in 0..<size { items.append(try readValue(type: header & 0x0F, depth: depth + 1)) }
            return .list(items)
        case 11:
            let size = try Checked.count(try readVarint(), "Thrift map size at byte \(position)")
            guard size <= end - position else {
                throw FormatProblem("Thrift map of \(size) entries at byte \(position) is longer than the data left")
            }
            guard depth < Self.maxDepth else {
                throw FormatProblem("Thrift structure nested deeper than \(Self.maxDepth) at byte \(position)")
            }
            var entries: [(ThriftValue, ThriftValue)] = []
            if size > 0 {
                let types = try readByte()
                for _ in 0..<size {
                    let key = try readValue(type: types >> 4, depth: depth + 1)
                    entries.append((key, try readValue(type: types & 0x0F, depth: depth + 1)))
                }
            }
            return .map(entries)
        case 12: return .structure(try readStruct(depth: depth))
        default: throw FormatProblem("unknown Thrift type \(type) at byte \(position)")
        }
    }

    private mutating func readByte() throws -> UInt8 {
        guard position < end, position < bytes.count else { throw FormatProblem("Thrift data ends early at byte \(position)") }
        defer { position += 1 }
        return bytes[position]
    }

    private mutating func readVarint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = try readByte()
            guard shift < 64 else { throw FormatProblem("Thrift varint too long at byte \(position)") }
            result |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    private mutating func readZigzag() throws -> Int64 {
        let raw = try readVarint()
        return Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }
}

/// Typed access to a struct's fields; a field of the wrong type reads as a format problem naming it.
extension ThriftStruct {
    func int(_ id: Int16, _ name: String) throws -> Int64? {
        guard let value = fields[id] else { return nil }
        guard case .int(let v) = value else { throw FormatProblem("Thrift field \(name) is not an integer") }
        return v
    }

    func requiredInt(_ id: Int16, _ name: String) throws -> Int64 {
        guard let v = try int(id, name) else { throw FormatProblem("Thrift field \(name) is missing") }
        return v
    }

    func bool(_ id: Int16, _ name: String) throws -> Bool? {
        guard let value = fields[id] else { return nil }
        guard case .bool(let v) = value else { throw FormatProblem("Thrift field \(name) is not a boolean") }
        return v
    }

    func structure(_ id: Int16, _ name: String) throws -> ThriftStruct? {
        guard let value = fields[id] else { return nil }
        guard case .structure(let v) = value else { throw FormatProblem("Thrift field \(name) is not a struct") }
        return v
    }

    func list(_ id: Int16, _ name: String) throws -> [ThriftValue]? {
        guard let value = fields[id] else { return nil }
        guard case .list(let v) = value else { throw FormatProblem("Thrift field \(name) is not a list") }
        return v
    }

    func string(_ id: Int16, _ name: String, in bytes: [UInt8]) throws -> String? {
        guard let value = fields[id] else { return nil }
        guard case .binary(let range) = value, let text = String(validating: bytes[range], as: UTF8.self) else {
            throw FormatProblem("Thrift field \(name) is not a UTF-8 string")
        }
        return text
    }
}
