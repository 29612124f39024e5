/// Text from files (results files, configs, tokenizers) that is printed to a terminal: control characters would be
/// interpreted by it (escape sequences move the cursor, recolour or retitle the window), so they are shown as
/// `\x1b`-style escapes instead. Newlines and tabs are kept where the caller lays out lines.
public enum TerminalText {
    public static func sanitized(_ text: String, keepingLineBreaks: Bool = true) -> String {
        guard text.unicodeScalars.contains(where: { needsEscape($0, keepingLineBreaks: keepingLineBreaks) }) else { return text }
        var output = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            if needsEscape(scalar, keepingLineBreaks: keepingLineBreaks) {
                let hex = String(scalar.value, radix: 16)
                output.append(contentsOf: (scalar.value < 0x100 ? "\\x" + (hex.count < 2 ? "0" : "") + hex : "\\u{\(hex)}").unicodeScalars)
            } else {
                output.append(scalar)
            }
        }
        return String(output)
    }

    /// C0 and C1 controls, DEL, and the bidirectional overrides that reorder what the terminal shows.
    static func needsEscape(_ scalar: Unicode.Scalar, keepingLineBreaks: Bool) -> Bool {
        switch scalar.value {
        case 0x0A, 0x09: return !keepingLineBreaks
        case 0x00..<0x20, 0x7F..<0xA0: return true
        case 0x202A...0x202E, 0x2066...0x2069: return true
        default: return false
        }
    }
}
