import MoEJSON

/// Parquet's value and level encodings: the RLE/bit-packed hybrid (levels, dictionary ids, RLE booleans)
/// and PLAIN for every physical type.
enum ParquetEncoding {
    /// Decodes `count` values of `bitWidth` bits from the hybrid encoding in `bytes[start..<end]`.
    static func hybrid(_ bytes: [UInt8], start: Int, end: Int, bitWidth: Int, count: Int) throws -> [UInt32] {
        guard (0...32).contains(bitWidth) else { throw FormatProblem("RLE bit width \(bitWidth) is out of range") }
        guard start >= 0, start <= end, end <= bytes.count else { throw FormatProblem("RLE data range is outside the page") }
        var output: [UInt32] = []
        output.reserveCapacity(count)
        var position = start
        let byteWidth = (bitWidth + 7) / 8
        while output.count < count {
            var header: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                guard position < end else { throw FormatProblem("RLE data ends after \(output.count) of \(count) values") }
                let byte = bytes[position]
                position += 1
                guard shift < 64 else { throw FormatProblem("RLE run header too long at byte \(position)") }
                header |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { break }
                shift += 7
            }
            if header & 1 == 0 {
                let runLength = header >> 1
                guard end - position >= byteWidth else { throw FormatProblem("RLE run value runs past the data") }
                var value: UInt32 = 0
                for index in 0..<byteWidth { value |= UInt32(bytes[position + index]) << (8 * index) }
                position += byteWidth
                if bitWidth < 32, value >> bitWidth != 0 { throw FormatProblem("RLE run value \(value) wider than \(bitWidth) bits") }
                let take = Int(min(runLength, UInt64(count - output.count)))
                output.append(contentsOf: repeatElement(value, count: take))
            } else {
                let groups = header >> 1
                guard groups <= UInt64(end - position) else { throw FormatProblem("bit-packed run of \(groups) groups runs past the data") }
                let byteCount = Int(groups) * bitWidth
                guard byteCount <= end - position else { throw FormatProblem("bit-packed run of \(groups) groups runs past the data") }
                let valuesInRun = Int(groups) * 8
                let take = min(valuesInRun, count - output.count)
                if bitWidth == 0 {
                    output.append(contentsOf: repeatElement(0, count: take))
                } else {
                    let mask: UInt64 = bitWidth == 32 ? 0xFFFF_FFFF : (1 << UInt64(bitWidth)) - 1
                    var bitPosition = position * 8
                    for _ in 0..<take {
                        var byteIndex = bitPosition >> 3
                        let bitOffset = UInt64(bitPosition & 7)
                        var word: UInt64 = 0
                        var loaded: UInt64 = 0
                        while loaded < UInt64(bitWidth) + bitOffset {
                            word |= UInt64(bytes[byteIndex]) << loaded
                            byteIndex += 1
                            loaded += 8
                        }
                        output.append(UInt32((word >> bitOffset) & mask))
                        bitPosition += bitWidth
                    }
                }
                position += byteCount
            }
        }
        return output
    }

    /// Bits needed to store levels up to `maxLevel`.
    static func bitWidth(forMax maxLevel: Int) -> Int {
        maxLevel <= 0 ? 0 : (Int.bitWidth - maxLevel.leadingZeroBitCount)
    }

    /// `count` PLAIN values from `bytes[start..<end]`; returns them and where they end.
    static func plain(
        _ bytes: [UInt8], start: Int, end: Int, count: Int, node: ParquetSchema.Node
    ) throws -> (values: [JSONValue], end: Int) {
        guard let physical = node.physicalType else { throw FormatProblem("values for a group column") }
        guard start >= 0, start <= end, end <= bytes.count else { throw FormatProblem("value data range is outside the page") }
        var values: [JSONValue] = []
        var position = start
        func fixedWidth(_ width: Int) throws {
            let needed = try Checked.multiply(count, width, "PLAIN data size")
            guard needed <= end - position else {
                throw FormatProblem("PLAIN data holds \((end - position) / max(width, 1)) values of \(width) bytes, page says \(count)")
            }
        }
        switch physical {
        case .boolean:
            guard (count + 7) / 8 <= end - position else {
                throw FormatProblem("PLAIN booleans: \(count) values need \((count + 7) / 8) bytes, page has \(end - position)")
            }
            values.reserveCapacity(count)
            for index in 0..<count { values.append(.bool(bytes[position + index >> 3] >> UInt8(index & 7) & 1 == 1)) }
            position += (count + 7) / 8
        case .int32:
            try fixedWidth(4)
            values.reserveCapacity(count)
            for _ in 0..<count {
                let raw =
                    UInt32(bytes[position]) | UInt32(bytes[position + 1]) << 8 | UInt32(bytes[position + 2]) << 16 | UInt32(
                        bytes[position + 3]) << 24
                values.append(.int(node.valueKind == .unsigned ? Int(raw) : Int(Int32(bitPattern: raw))))
                position += 4
            }
        case .int64:
            try fixedWidth(8)
            values.reserveCapacity(count)
            for _ in 0..<count {
                var raw: UInt64 = 0
                for index in 0..<8 { raw |= UInt64(bytes[position + index]) << (8 * index) }
                if node.valueKind == .unsigned, raw > UInt64(Int.max) {
                    values.append(.double(Double(raw)))
                } else {
                    values.append(.int(Int(Int64(bitPattern: raw))))
                }
                position += 8
            }
        case .float:
            try fixedWidth(4)
            values.reserveCapacity(count)
            for _ in 0..<count {
                let raw =
                    UInt32(bytes[position]) | UInt32(bytes[position + 1]) << 8 | UInt32(bytes[position + 2]) << 16 | UInt32(
                        bytes[position + 3]) << 24
                values.append(.double(Double(Float(bitPattern: raw))))
                position += 4
            }
        case .double:
            try fixedWidth(8)
            values.reserveCapacity(count)
            for _ in 0..<count {
                var raw: UInt64 = 0
                for index in 0..<8 { raw |= UInt64(bytes[position + index]) << (8 * index) }
                values.append(.double(Double(bitPattern: raw)))
                position += 8
            }
        case .int96:
            throw FormatProblem("INT96 values (legacy timestamps) are not supported")
        case .byteArray:
            // Each value takes at least its 4-byte length, so the count is bounded by the data before reserving.
            guard count <= (end - position) / 4 else {
                throw FormatProblem("PLAIN byte arrays: page says \(count) values, data holds at most \((end - position) / 4)")
            }
            values.reserveCapacity(count)
            for index in 0..<count {
                guard end - position >= 4 else { throw FormatProblem("byte array \(index) length runs past the data") }
                let length = Int(
                    UInt32(bytes[position]) | UInt32(bytes[position + 1]) << 8 | UInt32(bytes[position + 2]) << 16 | UInt32(
                        bytes[position + 3]) << 24)
                position += 4
                guard length <= end - position else { throw FormatProblem("byte array \(index) of \(length) bytes runs past the data") }
                values.append(try bytesValue(bytes[position..<(position + length)], kind: node.valueKind, index: index))
                position += length
            }
        case .fixedLenByteArray:
            let width = node.typeLength
            try fixedWidth(width)
            values.reserveCapacity(count)
            for index in 0..<count {
                let slice = bytes[position..<(position + width)]
                if node.valueKind == .float16 {
                    let raw = UInt16(slice[slice.startIndex]) | UInt16(slice[slice.startIndex + 1]) << 8
                    values.append(.double(halfToDouble(raw)))
                } else {
                    values.append(try bytesValue(slice, kind: node.valueKind, index: index))
                }
                position += width
            }
        }
        return (values, position)
    }

    /// Strings must be UTF-8; binary columns are read as text when they are valid UTF-8 (JSON has no bytes).
    private static func bytesValue(_ slice: ArraySlice<UInt8>, kind: ParquetSchema.ValueKind, index: Int) throws -> JSONValue {
        if let text = String(validating: slice, as: UTF8.self) { return .string(text) }
        throw FormatProblem(
            kind == .string
                ? "string value \(index) is not valid UTF-8" : "binary value \(index) is not UTF-8 text (binary columns are not supported)")
    }

    static func halfToDouble(_ bits: UInt16) -> Double {
        let sign: Double = bits & 0x8000 != 0 ? -1 : 1
        let exponent = Int((bits >> 10) & 0x1F)
        let fraction = Double(bits & 0x3FF)
        switch exponent {
        case 0: return sign * fraction * 0x1p-24
        case 31: return fraction == 0 ? sign * .infinity : .nan
        default: return sign * (1 + fraction / 1024) * Double(sign: .plus, exponent: exponent - 15, significand: 1)
        }
    }
}
