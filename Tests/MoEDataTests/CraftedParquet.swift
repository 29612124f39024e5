/// Hand-built parquet files for cases pyarrow does not write: legacy 2-level lists, lying headers, absurd
/// nesting. A Thrift compact writer and a one-row-group file assembler, enough for these tests.
struct ThriftWriter {
    var bytes: [UInt8] = []
    private var lastField: [Int16] = [0]

    mutating func varint(_ value: UInt64) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(value & 0x7F) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    mutating func zigzag(_ value: Int64) { varint(UInt64(bitPattern: (value << 1) ^ (value >> 63))) }

    mutating func header(_ id: Int16, _ type: UInt8) {
        let delta = id - lastField[lastField.count - 1]
        if delta > 0 && delta <= 15 {
            bytes.append(UInt8(delta) << 4 | type)
        } else {
            bytes.append(type)
            zigzag(Int64(id))
        }
        lastField[lastField.count - 1] = id
    }

    mutating func int(_ id: Int16, _ value: Int64, type: UInt8 = 5) {
        header(id, type)
        zigzag(value)
    }

    mutating func string(_ id: Int16, _ value: String) {
        header(id, 8)
        varint(UInt64(value.utf8.count))
        bytes.append(contentsOf: value.utf8)
    }

    mutating func structure(_ id: Int16, _ body: (inout ThriftWriter) -> Void) {
        header(id, 12)
        structBody(body)
    }

    mutating func structBody(_ body: (inout ThriftWriter) -> Void) {
        lastField.append(0)
        body(&self)
        bytes.append(0)
        lastField.removeLast()
    }

    mutating func structList(_ id: Int16, _ items: [(inout ThriftWriter) -> Void]) {
        listHeader(id, count: items.count, elementType: 12)
        for item in items { structBody(item) }
    }

    mutating func stringList(_ id: Int16, _ items: [String]) {
        listHeader(id, count: items.count, elementType: 8)
        for item in items {
            varint(UInt64(item.utf8.count))
            bytes.append(contentsOf: item.utf8)
        }
    }

    mutating func intList(_ id: Int16, _ items: [Int64]) {
        listHeader(id, count: items.count, elementType: 5)
        for item in items { zigzag(item) }
    }

    mutating func listHeader(_ id: Int16, count: Int, elementType: UInt8) {
        header(id, 9)
        if count < 15 {
            bytes.append(UInt8(count) << 4 | elementType)
        } else {
            bytes.append(0xF0 | elementType)
            varint(UInt64(count))
        }
    }
}

enum CraftedParquet {
    struct SchemaElement {
        var name: String
        var type: Int64?
        var repetition: Int64 = 0
        var children: Int64?
        var converted: Int64?
    }

    struct Page {
        var type: Int64 // 0 data v1, 2 dictionary
        var body: [UInt8]
        var numValues: Int64
        var encoding: Int64 = 0
        var uncompressedSize: Int64?
        var compressedSize: Int64?
    }

    /// One row group with one column chunk per `(leaf type, path, pages)`.
    static func file(
        schema: [SchemaElement], rows: Int64, columns: [(type: Int64, path: [String], numValues: Int64, pages: [Page])]
    ) -> [UInt8] {
        var bytes = Array("PAR1".utf8)
        var chunkMeta: [(inout ThriftWriter) -> Void] = []
        for column in columns {
            let start = Int64(bytes.count)
            var dictionaryOffset: Int64?
            var dataOffset: Int64?
            for page in column.pages {
                if page.type == 2 { dictionaryOffset = Int64(bytes.count) } else if dataOffset == nil { dataOffset = Int64(bytes.count) }
                var header = ThriftWriter()
                header.int(1, page.type)
                header.int(2, page.uncompressedSize ?? Int64(page.body.count))
                header.int(3, page.compressedSize ?? Int64(page.body.count))
                if page.type == 2 {
                    header.structure(7) {
                        $0.int(1, page.numValues); $0.int(2, 0)
                    }
                } else {
                    header.structure(5) {
                        $0.int(1, page.numValues); $0.int(2, page.encoding); $0.int(3, 3); $0.int(4, 3)
                    }
                }
                bytes += header.bytes + [0] + page.body // 0: the PageHeader struct's stop byte
            }
            let size = Int64(bytes.count) - start
            let data = dataOffset ?? start
            chunkMeta.append { chunk in
                chunk.int(2, start, type: 6)
                chunk.structure(3) { meta in
                    meta.int(1, column.type)
                    meta.intList(2, [0, 3])
                    meta.stringList(3, column.path)
                    meta.int(4, 0)
                    meta.int(5, column.numValues, type: 6)
                    meta.int(6, size, type: 6)
                    meta.int(7, size, type: 6)
                    meta.int(9, data, type: 6)
                    if let dictionaryOffset { meta.int(11, dictionaryOffset, type: 6) }
                }
            }
        }
        var footer = ThriftWriter()
        footer.int(1, 1)
        footer.structList(
            2,
            schema.map { element in
                { writer in
                    if let type = element.type { writer.int(1, type) }
                    writer.int(3, element.repetition)
                    writer.string(4, element.name)
                    if let children = element.children { writer.int(5, children) }
                    if let converted = element.converted { writer.int(6, converted) }
                }
            })
        footer.int(3, rows, type: 6)
        footer.structList(
            4,
            [
                { group in
                    group.structList(1, chunkMeta)
                    group.int(2, 0, type: 6)
                    group.int(3, rows, type: 6)
                }
            ])
        footer.bytes.append(0) // FileMetaData's stop byte
        bytes += footer.bytes
        let length = UInt32(footer.bytes.count)
        bytes += [UInt8(length & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length >> 16 & 0xFF), UInt8(length >> 24)]
        bytes += Array("PAR1".utf8)
        return bytes
    }

    static func plainStrings(_ values: [String]) -> [UInt8] {
        values.flatMap { value -> [UInt8] in
            let count = UInt32(value.utf8.count)
            return [UInt8(count & 0xFF), UInt8(count >> 8 & 0xFF), 0, 0] + Array(value.utf8)
        }
    }

    static func plainInt32(_ values: [Int32]) -> [UInt8] {
        values.flatMap { value -> [UInt8] in
            let bits = UInt32(bitPattern: value)
            return [UInt8(bits & 0xFF), UInt8(bits >> 8 & 0xFF), UInt8(bits >> 16 & 0xFF), UInt8(bits >> 24)]
        }
    }

    /// v1 level block: 4-byte length and the hybrid encoding's bytes.
    static func levels(_ hybrid: [UInt8]) -> [UInt8] {
        [UInt8(hybrid.count), 0, 0, 0] + hybrid
    }
}
