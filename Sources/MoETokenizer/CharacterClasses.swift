/// Unicode classes the pre-tokenizer patterns test, one bit each, precomputed for the Basic
/// Multilingual Plane so the split loops do a table load per scalar instead of a property lookup.
enum CharacterClass {
    /// `\p{L}`
    static let letter: UInt8 = 1 << 0
    /// `\p{N}` (Rust `char::is_numeric`)
    static let number: UInt8 = 1 << 1
    /// `\p{M}`
    static let mark: UInt8 = 1 << 2
    /// `\p{P}`
    static let punctuation: UInt8 = 1 << 3
    /// `\p{S}`
    static let symbol: UInt8 = 1 << 4
    /// White_Space: `\s` in Oniguruma and in Rust's regex crate, and Rust `char::is_whitespace`.
    static let whitespace: UInt8 = 1 << 5
    /// Rust regex `\w`: Alphabetic, `\p{M}`, `\p{Nd}`, `\p{Pc}` or Join_Control.
    static let word: UInt8 = 1 << 6

    /// Classes of every BMP scalar, built once (about 64 KiB, never freed).
    nonisolated(unsafe) static let bmpTable: UnsafePointer<UInt8> = {
        let table = UnsafeMutablePointer<UInt8>.allocate(capacity: 0x10000)
        for value in 0..<0x10000 {
            table[value] = compute(UInt32(value))
        }
        return UnsafePointer(table)
    }()

    @inline(__always)
    static func of(_ scalar: UInt32, table: UnsafePointer<UInt8>) -> UInt8 {
        scalar < 0x10000 ? table[Int(scalar)] : compute(scalar)
    }

    static func of(_ scalar: UInt32) -> UInt8 {
        of(scalar, table: bmpTable)
    }

    static func compute(_ value: UInt32) -> UInt8 {
        guard let scalar = Unicode.Scalar(value) else { return 0 }
        let properties = scalar.properties
        var classes: UInt8 = 0
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            classes |= letter
        case .decimalNumber:
            classes |= number | word
        case .letterNumber, .otherNumber:
            classes |= number
        case .nonspacingMark, .spacingMark, .enclosingMark:
            classes |= mark | word
        case .connectorPunctuation:
            classes |= punctuation | word
        case .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation, .finalPunctuation,
            .otherPunctuation:
            classes |= punctuation
        case .mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol:
            classes |= symbol
        default:
            break
        }
        if properties.isWhitespace { classes |= whitespace }
        if properties.isAlphabetic || properties.isJoinControl { classes |= word }
        return classes
    }

    /// Rust `char::is_ascii_punctuation`.
    @inline(__always)
    static func isASCIIPunctuation(_ scalar: UInt32) -> Bool {
        (0x21...0x2F).contains(scalar) || (0x3A...0x40).contains(scalar) || (0x5B...0x60).contains(scalar)
            || (0x7B...0x7E).contains(scalar)
    }

    @inline(__always)
    static func isASCIILetter(_ scalar: UInt32) -> Bool {
        (0x41...0x5A).contains(scalar) || (0x61...0x7A).contains(scalar)
    }

    @inline(__always)
    static func isLineBreak(_ scalar: UInt32) -> Bool {
        scalar == 0x0A || scalar == 0x0D
    }
}
