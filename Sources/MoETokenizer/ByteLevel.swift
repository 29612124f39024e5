/// GPT-2's reversible byte ↔ printable-scalar alphabet: printable Latin-1 bytes stand for
/// themselves, the other 68 bytes map to U+0100... in byte order.
enum ByteLevel {
    static let byteToScalar: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for byte in 0..<256 {
            if (0x21...0x7E).contains(byte) || (0xA1...0xAC).contains(byte) || (0xAE...0xFF).contains(byte) {
                table[byte] = UInt32(byte)
            } else {
                table[byte] = next
                next += 1
            }
        }
        return table
    }()

    /// Indexed by scalar below `scalarToByte.count`; -1 where the scalar is not in the alphabet.
    static let scalarToByte: [Int16] = {
        var table = [Int16](repeating: -1, count: 0x144)
        for (byte, scalar) in byteToScalar.enumerated() {
            table[Int(scalar)] = Int16(byte)
        }
        return table
    }()

    @inline(__always)
    static func byte(for scalar: UInt32) -> UInt8? {
        guard scalar < UInt32(scalarToByte.count) else { return nil }
        let byte = scalarToByte[Int(scalar)]
        return byte < 0 ? nil : UInt8(byte)
    }

    /// Appends the byte-level scalars of `scalar`'s UTF-8 encoding.
    @inline(__always)
    static func appendEncoded(_ scalar: UInt32, to output: inout [UInt32], table: UnsafeBufferPointer<UInt32>) {
        switch scalar {
        case 0..<0x80:
            output.append(table[Int(scalar)])
        case 0x80..<0x800:
            output.append(table[Int(0xC0 | scalar >> 6)])
            output.append(table[Int(0x80 | scalar & 0x3F)])
        case 0x800..<0x10000:
            output.append(table[Int(0xE0 | scalar >> 12)])
            output.append(table[Int(0x80 | scalar >> 6 & 0x3F)])
            output.append(table[Int(0x80 | scalar & 0x3F)])
        default:
            output.append(table[Int(0xF0 | scalar >> 18)])
            output.append(table[Int(0x80 | scalar >> 12 & 0x3F)])
            output.append(table[Int(0x80 | scalar >> 6 & 0x3F)])
            output.append(table[Int(0x80 | scalar & 0x3F)])
        }
    }
}

extension Unicode.Scalar {
    /// Number of UTF-8 bytes of a scalar value.
    @inline(__always)
    static func utf8Length(_ value: UInt32) -> Int {
        value < 0x80 ? 1 : value < 0x800 ? 2 : value < 0x10000 ? 3 : 4
    }
}

/// Decodes bytes as UTF-8, replacing each maximal invalid subsequence by U+FFFD
/// (what Rust's `String::from_utf8_lossy` does).
func decodeUTF8Lossy(_ bytes: [UInt8]) -> String {
    String(decoding: bytes, as: UTF8.self)
}
