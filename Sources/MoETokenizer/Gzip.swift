/// gzip (RFC 1952) / DEFLATE (RFC 1951) decompression, so that `tokenizer.json.gz` files and the
/// test fixtures load without a zlib dependency.
enum Gzip {
    static func isGzip(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B
    }

    /// Decompresses every member of a gzip file, checking each member's CRC-32 and length.
    static func decompress(_ bytes: [UInt8], file: String) throws -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count * 4)
        var offset = 0
        repeat {
            offset = try decompressMember(bytes, at: offset, into: &output, file: file)
            // Trailing zero padding after the last member is allowed (as gzip(1) does).
            while offset < bytes.count, bytes[offset] == 0 { offset += 1 }
        } while offset < bytes.count
        return output
    }

    private static func decompressMember(
        _ bytes: [UInt8], at start: Int, into output: inout [UInt8],
        file: String
    ) throws -> Int {
        func failure(_ message: String) -> TokenizerError {
            TokenizerError(file: file, "corrupt gzip data: \(message)")
        }
        guard start + 10 <= bytes.count, bytes[start] == 0x1F, bytes[start + 1] == 0x8B else {
            throw failure("missing gzip header")
        }
        guard bytes[start + 2] == 8 else { throw failure("unknown compression method \(bytes[start + 2])") }
        let flags = bytes[start + 3]
        var offset = start + 10
        if flags & 0x04 != 0 {
            guard offset + 2 <= bytes.count else { throw failure("truncated header") }
            offset += 2 + (Int(bytes[offset]) | Int(bytes[offset + 1]) << 8)
        }
        for flag: UInt8 in [0x08, 0x10] where flags & flag != 0 {
            while offset < bytes.count, bytes[offset] != 0 { offset += 1 }
            offset += 1
        }
        if flags & 0x02 != 0 { offset += 2 }
        guard offset <= bytes.count else { throw failure("truncated header") }
        let memberStart = output.count
        var inflater = Inflater(input: bytes, position: offset)
        do {
            try inflater.inflate(into: &output)
        } catch let error as InflateError {
            throw failure(error.message)
        }
        offset = inflater.bytePosition
        guard offset + 8 <= bytes.count else { throw failure("truncated trailer") }
        let expectedCRC =
            UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8
            | UInt32(bytes[offset + 2]) << 16 | UInt32(bytes[offset + 3]) << 24
        let expectedSize =
            UInt32(bytes[offset + 4]) | UInt32(bytes[offset + 5]) << 8
            | UInt32(bytes[offset + 6]) << 16 | UInt32(bytes[offset + 7]) << 24
        let produced = output[memberStart...]
        guard UInt32(truncatingIfNeeded: produced.count) == expectedSize else { throw failure("length mismatch") }
        guard CRC32.checksum(produced) == expectedCRC else { throw failure("CRC-32 mismatch") }
        return offset + 8
    }
}

private struct InflateError: Error {
    let message: String
}

private enum CRC32 {
    static let table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 {
            value = value & 1 != 0 ? 0xEDB8_8320 ^ (value >> 1) : value >> 1
        }
        return value
    }

    static func checksum(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        table.withUnsafeBufferPointer { table in
            for byte in bytes {
                crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
            }
        }
        return crc ^ 0xFFFF_FFFF
    }
}

/// A canonical Huffman code as a direct lookup table indexed by the next `maxLength` input bits
/// (bit-reversed, as DEFLATE packs codes); each entry is `symbol << 4 | length`.
private struct HuffmanTable {
    var entries: [UInt16]
    var maxLength: Int

    init(lengths: ArraySlice<UInt8>) throws {
        var counts = [Int](repeating: 0, count: 16)
        for length in lengths { counts[Int(length)] += 1 }
        counts[0] = 0
        maxLength = counts.lastIndex { $0 > 0 } ?? 1
        var remaining = 1
        for length in 1...15 {
            remaining = remaining << 1 - counts[length]
            if remaining < 0 { throw InflateError(message: "over-subscribed Huffman code") }
        }
        var nextCode = [Int](repeating: 0, count: 16)
        var code = 0
        for length in 1...15 {
            code = (code + counts[length - 1]) << 1
            nextCode[length] = code
        }
        let size = 1 << maxLength
        entries = [UInt16](repeating: 0, count: size)
        for (symbol, lengthByte) in zip(0..., lengths) where lengthByte > 0 {
            let length = Int(lengthByte)
            let assigned = nextCode[length]
            nextCode[length] += 1
            var reversed = 0
            for bit in 0..<length where assigned & (1 << bit) != 0 {
                reversed |= 1 << (length - 1 - bit)
            }
            let entry = UInt16(symbol << 4 | length)
            var index = reversed
            while index < size {
                entries[index] = entry
                index += 1 << length
            }
        }
    }
}

private struct Inflater {
    let input: [UInt8]
    var position: Int
    var bitBuffer: UInt64 = 0
    var bitCount = 0

    init(input: [UInt8], position: Int) {
        self.input = input
        self.position = position
    }

    /// The byte position after the deflate stream (the unread whole bytes are returned).
    var bytePosition: Int { position - bitCount / 8 }

    private static let lengthBase: [Int] = [
        3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59,
        67, 83, 99, 115, 131, 163, 195, 227, 258,
    ]
    private static let lengthExtra: [Int] = [
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4,
        5, 5, 5, 5, 0,
    ]
    private static let distanceBase: [Int] = [
        1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385,
        513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
    ]
    private static let distanceExtra: [Int] = [
        0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10,
        10, 11, 11, 12, 12, 13, 13,
    ]
    private static let codeLengthOrder: [Int] = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15]

    /// True once more bits were consumed than the input holds (the refill pads with zeros).
    private var isOverrun: Bool { position * 8 - bitCount > input.count * 8 }

    private mutating func refill() {
        while bitCount <= 56 {
            let byte: UInt64 = position < input.count ? UInt64(input[position]) : 0
            bitBuffer |= byte << UInt64(bitCount)
            bitCount += 8
            position += 1
        }
    }

    private mutating func bits(_ count: Int) throws -> Int {
        if count == 0 { return 0 }
        if bitCount < count { refill() }
        let value = Int(bitBuffer & ((1 << UInt64(count)) - 1))
        bitBuffer >>= UInt64(count)
        bitCount -= count
        if isOverrun { throw InflateError(message: "unexpected end of data") }
        return value
    }

    private mutating func decode(_ table: HuffmanTable) throws -> Int {
        if bitCount < table.maxLength { refill() }
        let entry = Int(table.entries[Int(bitBuffer & ((1 << UInt64(table.maxLength)) - 1))])
        let length = entry & 15
        if length == 0 { throw InflateError(message: "invalid Huffman code") }
        bitBuffer >>= UInt64(length)
        bitCount -= length
        if isOverrun { throw InflateError(message: "unexpected end of data") }
        return entry >> 4
    }

    mutating func inflate(into output: inout [UInt8]) throws {
        var isLast = false
        while !isLast {
            isLast = try bits(1) == 1
            switch try bits(2) {
            case 0: try storedBlock(into: &output)
            case 1: try compressedBlock(into: &output, fixed: true)
            case 2: try compressedBlock(into: &output, fixed: false)
            default: throw InflateError(message: "invalid block type")
            }
        }
        // Drop the partial byte; whole unread bytes stay counted in `bitCount`.
        let partial = bitCount % 8
        bitBuffer >>= UInt64(partial)
        bitCount -= partial
        if bytePosition > input.count { throw InflateError(message: "unexpected end of data") }
    }

    private mutating func storedBlock(into output: inout [UInt8]) throws {
        let partial = bitCount % 8
        _ = try bits(partial)
        let length = try bits(16)
        let complement = try bits(16)
        guard length == ~complement & 0xFFFF else { throw InflateError(message: "stored block length mismatch") }
        for _ in 0..<length {
            output.append(UInt8(try bits(8)))
        }
    }

    private static let fixedTables: (HuffmanTable, HuffmanTable)? = {
        var lengths = [UInt8](repeating: 8, count: 288)
        for index in 144..<256 { lengths[index] = 9 }
        for index in 256..<280 { lengths[index] = 7 }
        guard let literal = try? HuffmanTable(lengths: lengths[...]),
            let distance = try? HuffmanTable(lengths: [UInt8](repeating: 5, count: 30)[...])
        else { return nil }
        return (literal, distance)
    }()

    private mutating func compressedBlock(into output: inout [UInt8], fixed: Bool) throws {
        let literalTable: HuffmanTable
        let distanceTable: HuffmanTable
        if fixed {
            guard let tables = Self.fixedTables else { throw InflateError(message: "internal: fixed tables") }
            (literalTable, distanceTable) = tables
        } else {
            (literalTable, distanceTable) = try dynamicTables()
        }
        while true {
            let symbol = try decode(literalTable)
            if symbol < 256 {
                output.append(UInt8(symbol))
            } else if symbol == 256 {
                return
            } else {
                let lengthIndex = symbol - 257
                guard lengthIndex < 29 else { throw InflateError(message: "invalid length symbol") }
                let length = Self.lengthBase[lengthIndex] + (try bits(Self.lengthExtra[lengthIndex]))
                let distanceSymbol = try decode(distanceTable)
                guard distanceSymbol < 30 else { throw InflateError(message: "invalid distance symbol") }
                let distance = Self.distanceBase[distanceSymbol] + (try bits(Self.distanceExtra[distanceSymbol]))
                guard distance <= output.count else { throw InflateError(message: "distance too far back") }
                let from = output.count - distance
                for index in 0..<length {
                    output.append(output[from + index])
                }
            }
        }
    }

    private mutating func dynamicTables() throws -> (HuffmanTable, HuffmanTable) {
        let literalCount = try bits(5) + 257
        let distanceCount = try bits(5) + 1
        let codeLengthCount = try bits(4) + 4
        guard literalCount <= 286, distanceCount <= 30 else { throw InflateError(message: "too many codes") }
        var codeLengthLengths = [UInt8](repeating: 0, count: 19)
        for index in 0..<codeLengthCount {
            codeLengthLengths[Self.codeLengthOrder[index]] = UInt8(try bits(3))
        }
        let codeLengthTable = try HuffmanTable(lengths: codeLengthLengths[...])
        var lengths: [UInt8] = []
        lengths.reserveCapacity(literalCount + distanceCount)
        while lengths.count < literalCount + distanceCount {
            let symbol = try decode(codeLengthTable)
            switch symbol {
            case 0..<16:
                lengths.append(UInt8(symbol))
            case 16:
                guard let previous = lengths.last else { throw InflateError(message: "repeat with no previous length") }
                lengths.append(contentsOf: repeatElement(previous, count: 3 + (try bits(2))))
            case 17:
                lengths.append(contentsOf: repeatElement(0, count: 3 + (try bits(3))))
            default:
                lengths.append(contentsOf: repeatElement(0, count: 11 + (try bits(7))))
            }
        }
        guard lengths.count == literalCount + distanceCount else { throw InflateError(message: "too many lengths") }
        guard lengths[256] != 0 else { throw InflateError(message: "no end-of-block code") }
        return (
            try HuffmanTable(lengths: lengths[0..<literalCount]),
            try HuffmanTable(lengths: lengths[literalCount...])
        )
    }
}
