/// Finds the matches of one pattern inside one piece of text, as tokenizers' `find_iter` does:
/// leftmost-first, non-overlapping, scanning left to right. Matches are appended to `matches` as
/// flat (start, end) pairs of scalar offsets relative to the piece.
protocol SplitMatcher: Sendable {
    func findMatches(_ text: UnsafeBufferPointer<UInt32>, into matches: inout [Int])
}

/// Builds the matcher for a `Split`/`Replace` pattern. The regexes that real byte-level tokenizers
/// use (GPT-2, Llama-3/cl100k, Qwen2, DeepSeek-V3) have hand-written matchers that reproduce
/// Oniguruma's backtracking exactly and run much faster than a regex engine; any other regex
/// goes to Swift `Regex` with Unicode-scalar semantics.
enum SplitPatterns {
    static let gpt2 = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3 =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let cl100k = #"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"#
    static let qwen2 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let deepSeekMain =
        ##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##
    static let deepSeekCJK = "[一-龥぀-ゟ゠-ヿ]+"
    static let numbers1to3 = #"\p{N}{1,3}"#
    static let singleNumber = #"\p{N}"#

    /// A matcher for a regex pattern as written in tokenizer.json.
    static func regex(_ pattern: String) throws -> any SplitMatcher {
        // tokenizer.json files write CR/LF inside these patterns either raw or as \r \n escapes.
        // (Scalar by scalar: as Characters, "\r\n" is one grapheme that contains neither.)
        var canonical = ""
        for scalar in pattern.unicodeScalars {
            switch scalar {
            case "\r": canonical += #"\r"#
            case "\n": canonical += #"\n"#
            default: canonical.unicodeScalars.append(scalar)
            }
        }
        switch canonical {
        case gpt2: return GPT2Matcher()
        case llama3, cl100k: return Llama3Matcher(maximumDigits: 3)
        case qwen2: return Llama3Matcher(maximumDigits: 1)
        case deepSeekMain: return DeepSeekMatcher()
        case deepSeekCJK: return ScalarRangeRunMatcher(ranges: [0x4E00...0x9FA5, 0x3040...0x309F, 0x30A0...0x30FF])
        case numbers1to3: return NumberRunMatcher(maximumLength: 3)
        case singleNumber: return NumberRunMatcher(maximumLength: 1)
        default: return try RegexMatcher(pattern: pattern)
        }
    }
}

@inline(__always)
private func runEnd(
    _ text: UnsafeBufferPointer<UInt32>, from start: Int, table: UnsafePointer<UInt8>,
    anyOf classes: UInt8
) -> Int {
    var index = start
    while index < text.count, CharacterClass.of(text[index], table: table) & classes != 0 { index += 1 }
    return index
}

@inline(__always)
private func runEnd(
    _ text: UnsafeBufferPointer<UInt32>, from start: Int, table: UnsafePointer<UInt8>,
    noneOf classes: UInt8
) -> Int {
    var index = start
    while index < text.count, CharacterClass.of(text[index], table: table) & classes == 0 { index += 1 }
    return index
}

@inline(__always)
private func lineBreakRunEnd(_ text: UnsafeBufferPointer<UInt32>, from start: Int) -> Int {
    var index = start
    while index < text.count, CharacterClass.isLineBreak(text[index]) { index += 1 }
    return index
}

/// The whitespace alternatives shared by all these patterns, tried in order at a whitespace scalar:
/// `\s*[\r\n]+` (when `lineBreaks`), `\s+(?!\S)`, `\s+`.
@inline(__always)
private func whitespaceMatchEnd(
    _ text: UnsafeBufferPointer<UInt32>, at start: Int, table: UnsafePointer<UInt8>,
    lineBreaks: Bool
) -> Int {
    let runEnd = runEnd(text, from: start, table: table, anyOf: CharacterClass.whitespace)
    if lineBreaks {
        // Backtracking `\s*` from the longest run stops at the last CR/LF of the run.
        var index = runEnd - 1
        while index >= start {
            if CharacterClass.isLineBreak(text[index]) { return index + 1 }
            index -= 1
        }
    }
    if runEnd == text.count { return runEnd }
    // Followed by a non-space: the lookahead holds one scalar earlier, if that leaves any.
    return runEnd - start >= 2 ? runEnd - 1 : runEnd
}

/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+` (GPT-2, ByteLevel).
struct GPT2Matcher: SplitMatcher {
    func findMatches(_ text: UnsafeBufferPointer<UInt32>, into matches: inout [Int]) {
        let table = CharacterClass.bmpTable
        let letter = CharacterClass.letter, number = CharacterClass.number
        let other = CharacterClass.letter | CharacterClass.number | CharacterClass.whitespace
        let count = text.count
        var start = 0
        while start < count {
            let scalar = text[start]
            var end = -1
            if scalar == 0x27, start + 1 < count {
                let next = text[start + 1]
                if next == 0x73 || next == 0x74 || next == 0x6D || next == 0x64 { // s t m d
                    end = start + 2
                } else if start + 2 < count {
                    let third = text[start + 2]
                    if (next == 0x72 && third == 0x65) || (next == 0x76 && third == 0x65) || (next == 0x6C && third == 0x6C) {
                        end = start + 3 // re ve ll
                    }
                }
            }
            if end < 0, scalar == 0x20, start + 1 < count {
                let classes = CharacterClass.of(text[start + 1], table: table)
                if classes & letter != 0 {
                    end = runEnd(text, from: start + 1, table: table, anyOf: letter)
                } else if classes & number != 0 {
                    end = runEnd(text, from: start + 1, table: table, anyOf: number)
                } else if classes & other == 0 {
                    end = runEnd(text, from: start + 1, table: table, noneOf: other)
                }
            }
            if end < 0 {
                let classes = CharacterClass.of(scalar, table: table)
                if classes & letter != 0 {
                    end = runEnd(text, from: start, table: table, anyOf: letter)
                } else if classes & number != 0 {
                    end = runEnd(text, from: start, table: table, anyOf: number)
                } else if classes & other == 0 {
                    end = runEnd(text, from: start, table: table, noneOf: other)
                } else {
                    end = whitespaceMatchEnd(text, at: start, table: table, lineBreaks: false)
                }
            }
            matches.append(start)
            matches.append(end)
            start = end
        }
    }
}

/// The Llama-3 / cl100k family: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,N}|
/// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+` with N = 3 (Llama-3, OLMo-2 dolma2) or 1 (Qwen2).
struct Llama3Matcher: SplitMatcher {
    let maximumDigits: Int

    /// One scalar of a case-insensitive contraction; U+017F LATIN SMALL LETTER LONG S case-folds to "s".
    @inline(__always)
    private static func folds(_ scalar: UInt32, to lower: UInt32) -> Bool {
        scalar == lower || scalar == lower - 0x20 || (lower == 0x73 && scalar == 0x17F)
    }

    func findMatches(_ text: UnsafeBufferPointer<UInt32>, into matches: inout [Int]) {
        let table = CharacterClass.bmpTable
        let letter = CharacterClass.letter, number = CharacterClass.number
        let other = CharacterClass.letter | CharacterClass.number | CharacterClass.whitespace
        let count = text.count
        var start = 0
        while start < count {
            let scalar = text[start]
            var end = -1
            if scalar == 0x27, start + 1 < count {
                let next = text[start + 1]
                if Self.folds(next, to: 0x73) || Self.folds(next, to: 0x74) || Self.folds(next, to: 0x6D)
                    || Self.folds(next, to: 0x64)
                {
                    end = start + 2
                } else if start + 2 < count {
                    let third = text[start + 2]
                    if (Self.folds(next, to: 0x72) && Self.folds(third, to: 0x65))
                        || (Self.folds(next, to: 0x76) && Self.folds(third, to: 0x65))
                        || (Self.folds(next, to: 0x6C) && Self.folds(third, to: 0x6C))
                    {
                        end = start + 3
                    }
                }
            }
            let classes = CharacterClass.of(scalar, table: table)
            if end < 0 {
                if classes & letter != 0 {
                    end = runEnd(text, from: start, table: table, anyOf: letter)
                } else if classes & number == 0, !CharacterClass.isLineBreak(scalar), start + 1 < count,
                    CharacterClass.of(text[start + 1], table: table) & letter != 0
                {
                    end = runEnd(text, from: start + 1, table: table, anyOf: letter)
                }
            }
            if end < 0, classes & number != 0 {
                end = min(runEnd(text, from: start, table: table, anyOf: number), start + maximumDigits)
            }
            if end < 0 {
                var otherStart = -1
                if scalar == 0x20, start + 1 < count, CharacterClass.of(text[start + 1], table: table) & other == 0 {
                    otherStart = start + 1
                } else if classes & other == 0 {
                    otherStart = start
                }
                if otherStart >= 0 {
                    end = lineBreakRunEnd(text, from: runEnd(text, from: otherStart, table: table, noneOf: other))
                }
            }
            if end < 0 {
                end = whitespaceMatchEnd(text, at: start, table: table, lineBreaks: true)
            }
            matches.append(start)
            matches.append(end)
            start = end
        }
    }
}

/// DeepSeek-V3's third split: ``[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|
/// [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+``.
/// Scalars no alternative matches (digits, controls, format characters) are left between matches.
struct DeepSeekMatcher: SplitMatcher {
    func findMatches(_ text: UnsafeBufferPointer<UInt32>, into matches: inout [Int]) {
        let table = CharacterClass.bmpTable
        let letterOrMark = CharacterClass.letter | CharacterClass.mark
        let punctuationOrSymbol = CharacterClass.punctuation | CharacterClass.symbol
        let notOptional = CharacterClass.letter | CharacterClass.punctuation | CharacterClass.symbol
        let count = text.count
        var start = 0
        while start < count {
            let scalar = text[start]
            let classes = CharacterClass.of(scalar, table: table)
            var end = -1
            if CharacterClass.isASCIIPunctuation(scalar), start + 1 < count, CharacterClass.isASCIILetter(text[start + 1]) {
                end = start + 2
                while end < count, CharacterClass.isASCIILetter(text[end]) { end += 1 }
            }
            if end < 0 {
                if classes & notOptional == 0, !CharacterClass.isLineBreak(scalar), start + 1 < count,
                    CharacterClass.of(text[start + 1], table: table) & letterOrMark != 0
                {
                    end = runEnd(text, from: start + 1, table: table, anyOf: letterOrMark)
                } else if classes & letterOrMark != 0 {
                    end = runEnd(text, from: start, table: table, anyOf: letterOrMark)
                }
            }
            if end < 0 {
                var symbolStart = -1
                if scalar == 0x20, start + 1 < count,
                    CharacterClass.of(text[start + 1], table: table) & punctuationOrSymbol != 0
                {
                    symbolStart = start + 1
                } else if classes & punctuationOrSymbol != 0 {
                    symbolStart = start
                }
                if symbolStart >= 0 {
                    end = lineBreakRunEnd(
                        text,
                        from: runEnd(
                            text, from: symbolStart, table: table,
                            anyOf: punctuationOrSymbol))
                }
            }
            if end < 0, classes & CharacterClass.whitespace != 0 {
                end = whitespaceMatchEnd(text, at: start, table: table, lineBreaks: true)
            }
            if end < 0 {
                start += 1
                continue
            }
            matches.append(start)
            matches.append(end)
            start = end
        }
    }
}

/// `\p{N}{1,n}`: runs of numbers cut into chunks of at most n from the left.
struct NumberRunMatcher: SplitMatcher {
    let maximumLength: Int

    func findMatches(_ text: UnsafeBufferPointer<UInt32>, into matches: inout [Int]) {
        let table = CharacterClass.bmpTable
        var start = 0
        while start < text.count {
            if CharacterClass.of(text[start], table: table) & CharacterClass.number == 0 {
                start += 1
                continue
            }
            let end = min(runEnd(text, from: start, table: table, anyOf: CharacterClass.number), start + maximumLength)
            matches.append(start)
            matches.append(end)
            start = end
        }
    }
}

/// `[a-bc-d...]+` over scalar ranges.
struct ScalarRangeRunMatcher: SplitMatcher {
    let ranges: [ClosedRange<UInt32>]
    private let smallest: UInt32

    init(ranges: [ClosedRange<UInt32>]) {
        self.ranges = ranges
        smallest = ranges.map(\.lowerBound).min() ?? 0
    }

    @inline(__always)
    private func inRanges(_ scalar: UInt32) -> Bool {
        scalar >= smallest && ranges.contains { $0.contains(scalar) }
    }

    func findMatches(_ text: UnsafeBufferPointer<UInt32>, into matches: inout [Int]) {
        var start = 0
        while start < text.count {
            var end = start
            while end < text.count, inRanges(text[end]) { end += 1 }
            if end == start {
                start += 1
                continue
            }
            matches.append(start)
            matches.append(end)
            start = end
        }
    }
}

/// A literal string (tokenizers escapes `Split`'s and `Replace`'s `String` patterns into a regex).
struct LiteralMatcher: SplitMatcher {
    let literal: [UInt32]

    func findMatches(_ text: UnsafeBufferPointer<UInt32>, into matches: inout [Int]) {
        guard !literal.isEmpty else {
            // An empty pattern matches the empty string at every position.
            for index in 0...text.count {
                matches.append(index)
                matches.append(index)
            }
            return
        }
        var start = 0
        while start + literal.count <= text.count {
            var matched = true
            for offset in 0..<literal.count where text[start + offset] != literal[offset] {
                matched = false
                break
            }
            if matched {
                matches.append(start)
                matches.append(start + literal.count)
                start += literal.count
            } else {
                start += 1
            }
        }
    }
}

/// Every scalar for which the predicate holds is its own match (tokenizers' `Fn(char) -> bool` pattern).
struct ScalarPredicateMatcher: SplitMatcher {
    let predicate: @Sendable (UInt32) -> Bool

    func findMatches(_ text: UnsafeBufferPointer<UInt32>, into matches: inout [Int]) {
        for index in 0..<text.count where predicate(text[index]) {
            matches.append(index)
            matches.append(index + 1)
        }
    }
}

/// `\w+|[^\w\s]+` of the `Whitespace` pre-tokenizer (Rust regex crate, Unicode classes).
struct WordOrSymbolRunMatcher: SplitMatcher {
    func findMatches(_ text: UnsafeBufferPointer<UInt32>, into matches: inout [Int]) {
        let table = CharacterClass.bmpTable
        let word = CharacterClass.word, space = CharacterClass.whitespace
        var start = 0
        while start < text.count {
            let classes = CharacterClass.of(text[start], table: table)
            let end: Int
            if classes & word != 0 {
                end = runEnd(text, from: start, table: table, anyOf: word)
            } else if classes & space == 0 {
                end = runEnd(text, from: start, table: table, noneOf: word | space)
            } else {
                start += 1
                continue
            }
            matches.append(start)
            matches.append(end)
            start = end
        }
    }
}

/// Any other regex, through Swift `Regex` with Unicode-scalar semantics (grapheme semantics would
/// treat "\r\n" and combining sequences as single characters).
struct RegexMatcher: SplitMatcher, @unchecked Sendable {
    // Regex<AnyRegexOutput> is immutable once built; matching does not mutate it.
    private let regex: Regex<AnyRegexOutput>

    init(pattern: String) throws {
        if let group = BacktrackingCheck.exponentialGroup(in: pattern) {
            throw RegexError(
                pattern: pattern,
                reason: "the repeated group \(group) can match the same text in more than one way, "
                    + "so matching may backtrack exponentially (Swift Regex has no retry limit); "
                    + "make the group atomic (?>…) or the quantifier possessive (++, *+)")
        }
        do {
            regex = try Regex(Self.oniguruma(pattern)).matchingSemantics(.unicodeScalar)
        } catch {
            throw RegexError(pattern: pattern, reason: "\(error)")
        }
    }

    /// Rewrites the escapes whose meaning differs between Oniguruma (what tokenizers compiles)
    /// and Swift `Regex`: Oniguruma's `\w` is Alphabetic, M, Nd or Pc (outside brackets its
    /// Latin-1 table also counts ¹ ² ³ ¼ ½ ¾), `\d` is Nd and `\h` a hex digit.
    static func oniguruma(_ pattern: String) -> String {
        let wordInClass = #"\p{Alphabetic}\p{M}\p{Nd}\p{Pc}"#
        let word = wordInClass + "¹²³¼½¾"
        var output = ""
        var classDepth = 0
        var scalars = pattern.unicodeScalars.makeIterator()
        while let scalar = scalars.next() {
            switch scalar {
            case "\\":
                guard let escaped = scalars.next() else {
                    output.unicodeScalars.append(scalar)
                    continue
                }
                let inClass = classDepth > 0
                switch escaped {
                case "w": output += inClass ? wordInClass : "[\(word)]"
                case "W" where !inClass: output += "[^\(word)]"
                case "d": output += #"\p{Nd}"#
                case "D": output += #"\P{Nd}"#
                case "h": output += inClass ? "0-9a-fA-F" : "[0-9a-fA-F]"
                case "H" where !inClass: output += "[^0-9a-fA-F]"
                default:
                    output.unicodeScalars.append(scalar)
                    output.unicodeScalars.append(escaped)
                }
            case "[":
                classDepth += 1
                output.unicodeScalars.append(scalar)
            case "]" where classDepth > 0:
                classDepth -= 1
                output.unicodeScalars.append(scalar)
            default:
                output.unicodeScalars.append(scalar)
            }
        }
        return output
    }

    struct RegexError: Error {
        let pattern: String
        let reason: String
    }

    func findMatches(_ text: UnsafeBufferPointer<UInt32>, into matches: inout [Int]) {
        var scalars = String.UnicodeScalarView()
        for value in text {
            scalars.append(Unicode.Scalar(value) ?? "\u{FFFD}")
        }
        let string = String(scalars)
        var lastIndex = string.startIndex
        var lastOffset = 0
        var previousEnd = -1
        func offset(of index: String.Index) -> Int {
            lastOffset += string.unicodeScalars.distance(from: lastIndex, to: index)
            lastIndex = index
            return lastOffset
        }
        for match in string.matches(of: regex) {
            let start = offset(of: match.range.lowerBound)
            let end = offset(of: match.range.upperBound)
            // Oniguruma's iterator never reports an empty match right where the previous one ended.
            if start == end, start == previousEnd { continue }
            matches.append(start)
            matches.append(end)
            previousEnd = end
        }
    }
}
