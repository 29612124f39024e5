import Foundation
import MoEJSON

/// Parquet files as the Hugging Face Hub serves datasets: footer, schema, row groups, dictionary and data
/// pages (v1 and v2), PLAIN and dictionary encodings, uncompressed/SNAPPY/GZIP/ZSTD, and nested lists and
/// structs reassembled from repetition and definition levels into JSON rows.
public enum Parquet {
    public static func read(_ url: URL, columns: Set<String>? = nil) throws -> DataTable {
        let bytes: [UInt8]
        do {
            bytes = [UInt8](try Data(contentsOf: url))
        } catch {
            throw DataFileError(file: url.path, "cannot read the file: \(error.localizedDescription)")
        }
        return try read(bytes: bytes, name: url.path, columns: columns)
    }

    /// Reads a parquet file already in memory; `name` is how errors name it.
    public static func read(bytes: [UInt8], name: String, columns: Set<String>? = nil) throws -> DataTable {
        var reader = ParquetFileReader(bytes: bytes)
        do {
            return try reader.read(columns: columns)
        } catch let problem as FormatProblem {
            throw DataFileError(file: name, problem.message + reader.context)
        }
    }
}

/// One parquet file being read; `context` says where reading stopped, for error messages.
struct ParquetFileReader {
    enum PageType: Int64 { case data = 0, index = 1, dictionary = 2, dataV2 = 3 }

    let bytes: [UInt8]
    private var rowGroupIndex: Int?
    private var columnName: String?
    private var pageOffset: Int?
    /// Level entries still allowed: counts come from the file, and a few bytes of RLE can claim billions.
    private var entryBudget: Int

    init(bytes: [UInt8]) {
        self.bytes = bytes
        let (scaled, overflow) = bytes.count.multipliedReportingOverflow(by: 64)
        self.entryBudget = overflow ? Int.max : scaled + (1 << 22)
    }

    var context: String {
        var parts: [String] = []
        if let rowGroupIndex { parts.append("row group \(rowGroupIndex)") }
        if let columnName { parts.append("column \(columnName)") }
        if let pageOffset { parts.append("page at byte \(pageOffset)") }
        return parts.isEmpty ? "" : " (\(parts.joined(separator: ", ")))"
    }

    mutating func read(columns selection: Set<String>?) throws -> DataTable {
        let magic: [UInt8] = Array("PAR1".utf8)
        guard bytes.count >= 12 else { throw FormatProblem("not a parquet file: \(bytes.count) bytes, too short for magic and footer") }
        guard Array(bytes[0..<4]) == magic else { throw FormatProblem("not a parquet file: no PAR1 magic at byte 0") }
        let tail = Array(bytes[(bytes.count - 4)...])
        if tail == Array("PARE".utf8) { throw FormatProblem("encrypted parquet files are not supported") }
        guard tail == magic else {
            throw FormatProblem("not a parquet file (or truncated): no PAR1 magic at the end (byte \(bytes.count - 4))")
        }
        let footerLength = Int(try bytes.littleEndian(UInt32.self, at: bytes.count - 8, "footer length"))
        guard footerLength <= bytes.count - 12 else {
            throw FormatProblem("footer length \(footerLength) at byte \(bytes.count - 8) is beyond the file (\(bytes.count) bytes)")
        }
        let footerStart = bytes.count - 8 - footerLength
        var thrift = ThriftCompactReader(bytes: bytes, start: footerStart, end: bytes.count - 8)
        let metadata: ThriftStruct
        do {
            metadata = try thrift.readStruct()
        } catch let problem as FormatProblem {
            throw FormatProblem("bad footer (FileMetaData at byte \(footerStart)): \(problem.message)")
        }
        guard let schemaElements = try metadata.list(2, "FileMetaData.schema") else { throw FormatProblem("footer has no schema") }
        let schema = try ParquetSchema(elements: schemaElements, bytes: bytes)
        let topLevel = schema.topLevel
        let names = topLevel.map { schema.nodes[$0].name }
        if let selection {
            let missing = selection.subtracting(names).sorted()
            guard missing.isEmpty else {
                throw FormatProblem("no column \(missing.joined(separator: ", ")) in the file (columns: \(names.joined(separator: ", ")))")
            }
        }
        let chosen = topLevel.filter { selection?.contains(schema.nodes[$0].name) ?? true }
        let totalRows = try Checked.count(try metadata.requiredInt(3, "FileMetaData.num_rows"), "FileMetaData.num_rows")
        var rows: [JSONObject] = []
        let groups = try metadata.list(4, "FileMetaData.row_groups") ?? []
        for (groupIndex, groupValue) in groups.enumerated() {
            rowGroupIndex = groupIndex
            guard case .structure(let group) = groupValue else { throw FormatProblem("row group is not a struct") }
            let groupRows = try Checked.count(try group.requiredInt(3, "RowGroup.num_rows"), "RowGroup.num_rows")
            guard groupRows <= totalRows - rows.count else {
                throw FormatProblem("row groups hold more rows than the footer's \(totalRows)")
            }
            try spend(groupRows)
            guard let chunks = try group.list(1, "RowGroup.columns"), chunks.count == schema.leafNodes.count else {
                throw FormatProblem("row group does not have one column chunk per leaf column (\(schema.leafNodes.count))")
            }
            var leafData: [Int: ParquetLeafColumn] = [:]
            for top in chosen {
                for leaf in schema.nodes[top].leaves {
                    let node = schema.nodes[schema.leafNodes[leaf]]
                    columnName = node.path.joined(separator: ".")
                    guard case .structure(let chunk) = chunks[leaf] else { throw FormatProblem("column chunk is not a struct") }
                    leafData[leaf] = try readColumnChunk(chunk, node: node)
                    pageOffset = nil
                }
            }
            columnName = nil
            let assembler = ParquetRecordAssembler(schema: schema, leafData: leafData)
            var groupObjects = [JSONObject](repeating: JSONObject(), count: groupRows)
            for top in chosen {
                columnName = schema.nodes[top].name
                let values = try assembler.column(top, rowCount: groupRows)
                for index in 0..<groupRows { groupObjects[index].append(schema.nodes[top].name, values[index]) }
            }
            columnName = nil
            rows.append(contentsOf: groupObjects)
        }
        rowGroupIndex = nil
        guard rows.count == totalRows else { throw FormatProblem("row groups hold \(rows.count) rows, the footer says \(totalRows)") }
        return DataTable(columns: chosen.map { schema.nodes[$0].name }, rows: rows)
    }

    private mutating func spend(_ entries: Int) throws {
        guard entries <= entryBudget else {
            throw FormatProblem("rows and values claimed exceed what a file of \(bytes.count) bytes can plausibly hold")
        }
        entryBudget -= entries
    }

    private mutating func readColumnChunk(_ chunk: ThriftStruct, node: ParquetSchema.Node) throws -> ParquetLeafColumn {
        if let path = try chunk.string(1, "ColumnChunk.file_path", in: bytes), !path.isEmpty {
            throw FormatProblem("column data in another file (\(path)) is not supported")
        }
        guard let meta = try chunk.structure(3, "ColumnChunk.meta_data") else { throw FormatProblem("column chunk has no metadata") }
        guard try meta.requiredInt(1, "ColumnMetaData.type") == node.physicalType?.rawValue else {
            throw FormatProblem("column chunk type does not match the schema")
        }
        let codecCode = try meta.requiredInt(4, "ColumnMetaData.codec")
        let codec: Decompression.Codec?
        switch codecCode {
        case 0: codec = nil
        case 1: codec = .snappy
        case 2: codec = .gzip
        case 6: codec = .zstd
        default:
            let names: [Int64: String] = [3: "LZO", 4: "BROTLI", 5: "LZ4", 7: "LZ4_RAW"]
            throw FormatProblem(
                "compression \(names[codecCode] ?? "code \(codecCode)") is not supported (UNCOMPRESSED, SNAPPY, GZIP, ZSTD are)")
        }
        let totalValues = try Checked.count(try meta.requiredInt(5, "ColumnMetaData.num_values"), "ColumnMetaData.num_values")
        let compressedSize = try Checked.count(
            try meta.requiredInt(7, "ColumnMetaData.total_compressed_size"), "ColumnMetaData.total_compressed_size")
        let dataOffset = try Checked.count(try meta.requiredInt(9, "ColumnMetaData.data_page_offset"), "ColumnMetaData.data_page_offset")
        var start = dataOffset
        if let dictionaryOffset = try meta.int(11, "ColumnMetaData.dictionary_page_offset"), dictionaryOffset > 0,
            dictionaryOffset < dataOffset
        {
            start = Int(dictionaryOffset)
        }
        let end = try Checked.range(start: start, length: compressedSize, limit: bytes.count - 8, "column chunk")
        try spend(totalValues)

        var column = ParquetLeafColumn(node: node, capacity: totalValues)
        var dictionary: [JSONValue]?
        var position = start
        while column.count < totalValues {
            guard position < end else {
                throw FormatProblem("column chunk ends at byte \(end) after \(column.count) of \(totalValues) values")
            }
            pageOffset = position
            var thrift = ThriftCompactReader(bytes: bytes, start: position, end: end)
            let header: ThriftStruct
            do {
                header = try thrift.readStruct()
            } catch let problem as FormatProblem {
                throw FormatProblem("bad page header: \(problem.message)")
            }
            let uncompressedSize = try Checked.count(
                try header.requiredInt(2, "PageHeader.uncompressed_page_size"), "PageHeader.uncompressed_page_size")
            let pageSize = try Checked.count(
                try header.requiredInt(3, "PageHeader.compressed_page_size"), "PageHeader.compressed_page_size")
            let bodyStart = thrift.position
            let bodyEnd = try Checked.range(start: bodyStart, length: pageSize, limit: end, "page body")
            let body = bytes[bodyStart..<bodyEnd]
            position = bodyEnd
            let typeCode = try header.requiredInt(1, "PageHeader.type")
            switch PageType(rawValue: typeCode) {
            case .dictionary:
                guard dictionary == nil, column.count == 0 else { throw FormatProblem("dictionary page after data pages") }
                guard let info = try header.structure(7, "PageHeader.dictionary_page_header") else {
                    throw FormatProblem("dictionary page without its header")
                }
                let count = try Checked.count(try info.requiredInt(1, "DictionaryPageHeader.num_values"), "DictionaryPageHeader.num_values")
                let encoding = try info.int(2, "DictionaryPageHeader.encoding") ?? 0
                guard encoding == 0 || encoding == 2 else {
                    throw FormatProblem("dictionary page encoding \(encodingName(encoding)) is not supported")
                }
                let data = try decompress(body, codec: codec, size: uncompressedSize)
                dictionary = try ParquetEncoding.plain(data, start: 0, end: data.count, count: count, node: node).values
            case .data:
                guard let info = try header.structure(5, "PageHeader.data_page_header") else {
                    throw FormatProblem("data page without its header")
                }
                let count = try Checked.count(try info.requiredInt(1, "DataPageHeader.num_values"), "DataPageHeader.num_values")
                guard count <= totalValues - column.count else {
                    throw FormatProblem("pages hold more values than the chunk's \(totalValues)")
                }
                let encoding = try info.requiredInt(2, "DataPageHeader.encoding")
                let data = try decompress(body, codec: codec, size: uncompressedSize)
                var cursor = 0
                let repetition = try levelsV1(
                    data, &cursor, count: count, max: node.maxRepetition,
                    encoding: try info.int(4, "DataPageHeader.repetition_level_encoding") ?? 3, what: "repetition")
                let definition = try levelsV1(
                    data, &cursor, count: count, max: node.maxDefinition,
                    encoding: try info.int(3, "DataPageHeader.definition_level_encoding") ?? 3, what: "definition")
                try column.append(
                    count: count, repetition: repetition, definition: definition,
                    values: try pageValues(
                        data, start: cursor, encoding: encoding, definition: definition, count: count, node: node, dictionary: dictionary))
            case .dataV2:
                guard let info = try header.structure(8, "PageHeader.data_page_header_v2") else {
                    throw FormatProblem("data page v2 without its header")
                }
                let count = try Checked.count(try info.requiredInt(1, "DataPageHeaderV2.num_values"), "DataPageHeaderV2.num_values")
                guard count <= totalValues - column.count else {
                    throw FormatProblem("pages hold more values than the chunk's \(totalValues)")
                }
                let encoding = try info.requiredInt(4, "DataPageHeaderV2.encoding")
                let definitionLength = try Checked.count(
                    try info.requiredInt(5, "DataPageHeaderV2.definition_levels_byte_length"), "definition_levels_byte_length")
                let repetitionLength = try Checked.count(
                    try info.requiredInt(6, "DataPageHeaderV2.repetition_levels_byte_length"), "repetition_levels_byte_length")
                let isCompressed = try info.bool(7, "DataPageHeaderV2.is_compressed") ?? true
                let levelsLength = try Checked.add(repetitionLength, definitionLength, "level byte lengths")
                guard levelsLength <= body.count, levelsLength <= uncompressedSize else {
                    throw FormatProblem("level byte lengths (\(levelsLength)) exceed the page (\(body.count) bytes)")
                }
                let levelBytes = Array(body.prefix(levelsLength))
                let repetition =
                    node.maxRepetition == 0
                    ? nil
                    : try levels(levelBytes, start: 0, end: repetitionLength, count: count, max: node.maxRepetition, what: "repetition")
                let definition =
                    node.maxDefinition == 0
                    ? nil
                    : try levels(
                        levelBytes, start: repetitionLength, end: levelsLength, count: count, max: node.maxDefinition, what: "definition")
                let valueBody = body.dropFirst(levelsLength)
                let valueSize = uncompressedSize - levelsLength
                let data =
                    isCompressed
                    ? try decompress(valueBody, codec: codec, size: valueSize) : try decompress(valueBody, codec: nil, size: valueSize)
                try column.append(
                    count: count, repetition: repetition, definition: definition,
                    values: try pageValues(
                        data, start: 0, encoding: encoding, definition: definition, count: count, node: node, dictionary: dictionary))
            case .index, nil:
                continue // index pages and page types of newer format versions carry no values
            }
        }
        return column
    }

    private func decompress(_ body: ArraySlice<UInt8>, codec: Decompression.Codec?, size: Int) throws -> [UInt8] {
        guard let codec else {
            guard body.count == size else { throw FormatProblem("uncompressed page is \(body.count) bytes, its header says \(size)") }
            return Array(body)
        }
        return try Decompression.decompress(codec, body, expectedSize: size)
    }

    /// Levels of a v1 page: a 4-byte length and the hybrid encoding, absent when the maximum level is 0.
    private func levelsV1(_ data: [UInt8], _ cursor: inout Int, count: Int, max: Int, encoding: Int64, what: String) throws -> [UInt8]? {
        guard max > 0 else { return nil }
        guard encoding == 3 else { throw FormatProblem("\(what) level encoding \(encodingName(encoding)) is not supported (RLE is)") }
        let length = Int(try data.littleEndian(UInt32.self, at: cursor, "\(what) levels length"))
        let start = cursor + 4
        let end = try Checked.range(start: start, length: length, limit: data.count, "\(what) levels")
        cursor = end
        return try levels(data, start: start, end: end, count: count, max: max, what: what)
    }

    private func levels(_ data: [UInt8], start: Int, end: Int, count: Int, max: Int, what: String) throws -> [UInt8] {
        let decoded = try ParquetEncoding.hybrid(
            data, start: start, end: end, bitWidth: ParquetEncoding.bitWidth(forMax: max), count: count)
        var result = [UInt8](repeating: 0, count: decoded.count)
        for (index, level) in decoded.enumerated() {
            guard level <= UInt32(max) else { throw FormatProblem("\(what) level \(level) above the column's maximum \(max)") }
            result[index] = UInt8(level)
        }
        return result
    }

    private func pageValues(
        _ data: [UInt8], start: Int, encoding: Int64, definition: [UInt8]?, count: Int,
        node: ParquetSchema.Node, dictionary: [JSONValue]?
    ) throws -> [JSONValue] {
        var present = count
        if let definition {
            let maxDefinition = UInt8(node.maxDefinition)
            present = definition.reduce(0) { $0 + ($1 == maxDefinition ? 1 : 0) }
        }
        switch encoding {
        case 0:
            return try ParquetEncoding.plain(data, start: start, end: data.count, count: present, node: node).values
        case 2, 8:
            guard let dictionary else { throw FormatProblem("dictionary-encoded page without a dictionary page") }
            guard present > 0 else { return [] }
            guard start < data.count else { throw FormatProblem("dictionary index bit width missing") }
            let ids = try ParquetEncoding.hybrid(data, start: start + 1, end: data.count, bitWidth: Int(data[start]), count: present)
            var values: [JSONValue] = []
            values.reserveCapacity(present)
            for id in ids {
                guard id < dictionary.count else {
                    throw FormatProblem("dictionary index \(id) out of range (dictionary has \(dictionary.count) values)")
                }
                values.append(dictionary[Int(id)])
            }
            return values
        case 3:
            guard node.physicalType == .boolean else { throw FormatProblem("RLE value encoding on a non-boolean column") }
            let length = Int(try data.littleEndian(UInt32.self, at: start, "RLE boolean length"))
            let end = try Checked.range(start: start + 4, length: length, limit: data.count, "RLE booleans")
            return try ParquetEncoding.hybrid(data, start: start + 4, end: end, bitWidth: 1, count: present).map { .bool($0 == 1) }
        default:
            throw FormatProblem(
                "value encoding \(encodingName(encoding)) is not supported (PLAIN, RLE_DICTIONARY, PLAIN_DICTIONARY, RLE booleans are)")
        }
    }

    private func encodingName(_ code: Int64) -> String {
        let names: [Int64: String] = [
            0: "PLAIN", 2: "PLAIN_DICTIONARY", 3: "RLE", 4: "BIT_PACKED", 5: "DELTA_BINARY_PACKED",
            6: "DELTA_LENGTH_BYTE_ARRAY", 7: "DELTA_BYTE_ARRAY", 8: "RLE_DICTIONARY", 9: "BYTE_STREAM_SPLIT",
        ]
        return names[code] ?? "code \(code)"
    }
}

/// One leaf column of a row group: a level entry per value slot, and the value (or null) of each entry.
struct ParquetLeafColumn {
    let maxDefinition: Int
    var repetition: [UInt8] = []
    var definition: [UInt8] = []
    var values: [JSONValue] = []
    var count: Int { values.count }

    init(node: ParquetSchema.Node, capacity: Int) {
        maxDefinition = node.maxDefinition
        values.reserveCapacity(min(capacity, 1 << 20))
    }

    mutating func append(
        count: Int, repetition pageRepetition: [UInt8]?, definition pageDefinition: [UInt8]?, values present: [JSONValue]
    ) throws {
        if let pageRepetition { repetition.append(contentsOf: pageRepetition) }
        guard let pageDefinition else {
            guard present.count == count else { throw FormatProblem("page has \(present.count) values, its header says \(count)") }
            values.append(contentsOf: present)
            return
        }
        definition.append(contentsOf: pageDefinition)
        var next = 0
        let maxDefinition = UInt8(self.maxDefinition)
        for level in pageDefinition {
            if level == maxDefinition {
                guard next < present.count else { throw FormatProblem("page has fewer values than its definition levels say") }
                values.append(present[next])
                next += 1
            } else {
                values.append(.null)
            }
        }
        guard next == present.count else { throw FormatProblem("page has more values than its definition levels say") }
    }
}
