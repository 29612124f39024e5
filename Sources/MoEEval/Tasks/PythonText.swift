/// Python `str` semantics that lm-eval's task code relies on, on Unicode scalars (Python code points).
///
/// Swift's `String` compares and splits by grapheme cluster and treats canonically equivalent strings as
/// equal; Python works on code points and compares them exactly. Everything here therefore works on
/// `[Unicode.Scalar]`, and `PythonText.same` compares strings the way Python's `==` does.
enum PythonText {
    /// `str.isspace()` for one code point: general category Zs, or bidirectional class WS, B or S.
    static func isSpace(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
            return true
        default:
            return false
        }
    }

    static func scalars(_ text: String) -> [Unicode.Scalar] { Array(text.unicodeScalars) }

    static func string<S: Sequence>(_ scalars: S) -> String where S.Element == Unicode.Scalar {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        return String(view)
    }

    /// Python `a == b`: the same code points (Swift's `==` would also accept canonical equivalents).
    static func same(_ a: String, _ b: String) -> Bool { a.utf8.elementsEqual(b.utf8) }

    /// `len(text)`: the number of code points.
    static func length(_ text: String) -> Int { text.unicodeScalars.count }

    static func strip(_ text: String) -> String { string(strip(scalars(text))) }

    static func strip(_ s: [Unicode.Scalar]) -> ArraySlice<Unicode.Scalar> {
        var lo = 0, hi = s.count
        while lo < hi, isSpace(s[lo]) { lo += 1 }
        while hi > lo, isSpace(s[hi - 1]) { hi -= 1 }
        return s[lo..<hi]
    }

    static func lstrip(_ text: String) -> String {
        let s = scalars(text)
        var lo = 0
        while lo < s.count, isSpace(s[lo]) { lo += 1 }
        return string(s[lo...])
    }

    /// The number of trailing whitespace code points (`len(s) - len(s.rstrip())`).
    static func trailingSpaceCount(_ s: [Unicode.Scalar]) -> Int {
        var n = 0
        while n < s.count, isSpace(s[s.count - 1 - n]) { n += 1 }
        return n
    }

    /// `text.replace(old, new)`: one left-to-right pass over non-overlapping occurrences.
    static func replace(_ s: [Unicode.Scalar], _ old: String, _ new: String) -> [Unicode.Scalar] {
        let needle = scalars(old), replacement = scalars(new)
        guard !needle.isEmpty, s.count >= needle.count else { return s }
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(s.count)
        var i = 0
        while i < s.count {
            if i + needle.count <= s.count, s[i] == needle[0], s[i..<(i + needle.count)].elementsEqual(needle) {
                out += replacement
                i += needle.count
            } else {
                out.append(s[i])
                i += 1
            }
        }
        return out
    }

    static func replace(_ text: String, _ old: String, _ new: String) -> String {
        string(replace(scalars(text), old, new))
    }

    /// `text.split(' ')`: split on every single space, keeping empty pieces.
    static func splitOnSpace(_ text: String) -> [String] {
        var pieces: [String] = []
        var current = String.UnicodeScalarView()
        for s in text.unicodeScalars {
            if s == " " {
                pieces.append(String(current))
                current = String.UnicodeScalarView()
            } else {
                current.append(s)
            }
        }
        pieces.append(String(current))
        return pieces
    }

    /// `len(re.split(r"\s+", text))`: whitespace runs + 1 (empty leading and trailing pieces count).
    static func whitespaceSplitCount(_ text: String) -> Int {
        var runs = 0, inRun = false
        for s in text.unicodeScalars {
            if isSpace(s) {
                if !inRun { runs += 1; inRun = true }
            } else {
                inRun = false
            }
        }
        return runs + 1
    }

    /// `text.capitalize()` (Python ≥ 3.8): the first code point title-cased, the rest lower-cased, with the
    /// final-sigma rule of `str.lower()`.
    static func capitalize(_ text: String) -> String {
        let s = scalars(text)
        guard let first = s.first else { return "" }
        var out = scalars(first.properties.titlecaseMapping)
        for i in s.indices.dropFirst() {
            if s[i] == "\u{03A3}" {
                out.append(isFinalSigma(s, at: i) ? "\u{03C2}" : "\u{03C3}")
            } else {
                out += s[i].properties.lowercaseMapping.unicodeScalars
            }
        }
        return string(out)
    }

    /// CPython's `handle_capital_sigma`: a cased letter before (skipping case-ignorables) and none after.
    private static func isFinalSigma(_ s: [Unicode.Scalar], at index: Int) -> Bool {
        var j = index - 1
        while j >= 0, s[j].properties.isCaseIgnorable { j -= 1 }
        let casedBefore = j >= 0 && s[j].properties.isCased
        j = index + 1
        while j < s.count, s[j].properties.isCaseIgnorable { j += 1 }
        let casedAfter = j < s.count && s[j].properties.isCased
        return casedBefore && !casedAfter
    }

    /// `re.sub(r"\[.*?\]", "", text)`: removes `[` … the nearest `]`, where `.` does not match a newline.
    static func removeBracketed(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(s.count)
        var i = 0
        outer: while i < s.count {
            if s[i] == "[" {
                var j = i + 1
                while j < s.count, s[j] != "\n" {
                    if s[j] == "]" {
                        i = j + 1
                        continue outer
                    }
                    j += 1
                }
            }
            out.append(s[i])
            i += 1
        }
        return out
    }

    /// `re.sub(r"<open>\s*([^<close>]*?)\s*<close>", r"<open>\1<close>", text)`: the text between an opening
    /// delimiter and the next closing one loses its surrounding whitespace (the closing may equal the opening).
    static func tightenDelimited(_ s: [Unicode.Scalar], open: Unicode.Scalar, close: Unicode.Scalar) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(s.count)
        var i = 0
        while i < s.count {
            if s[i] == open, let end = s[(i + 1)...].firstIndex(of: close) {
                out.append(open)
                out += strip(Array(s[(i + 1)..<end]))
                out.append(close)
                i = end + 1
            } else {
                out.append(s[i])
                i += 1
            }
        }
        return out
    }

    /// `re.sub(r"/' [0-9]/", r"/'[0-9]/", text)`: the replacement is the literal text `/'[0-9]/`.
    static func wikitextSlashQuoteDigit(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
        let replacement = scalars("/'[0-9]/")
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(s.count)
        var i = 0
        while i < s.count {
            if i + 4 < s.count, s[i] == "/", s[i + 1] == "'", s[i + 2] == " ",
                ("0"..."9").contains(s[i + 3]), s[i + 4] == "/"
            {
                out += replacement
                i += 5
            } else {
                out.append(s[i])
                i += 1
            }
        }
        return out
    }

    /// Python `str.isdigit()` for ASCII digit strings (what lm-eval's `text_string.isdigit()` meets here).
    static func isASCIIDigits(_ text: String) -> Bool {
        !text.isEmpty && text.unicodeScalars.allSatisfy { ("0"..."9").contains($0) }
    }
}
