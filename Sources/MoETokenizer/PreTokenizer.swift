/// Where Metaspace puts its replacement character in front of a piece.
enum PrependScheme: String, Sendable {
    case always, first, never
}

/// tokenizers' pre-tokenizers: each one splits (and for some, rewrites) the pieces of text that
/// are not already added tokens.
indirect enum PreTokenizer: Sendable {
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case split(matcher: any SplitMatcher, behavior: SplitBehavior, invert: Bool)
    case digits(individual: Bool)
    case metaspace(replacement: UInt32, prependScheme: PrependScheme, split: Bool)
    case whitespace
    case whitespaceSplit
    case punctuation(behavior: SplitBehavior)
    case charDelimiter(UInt32)
    case bert
    case sequence([PreTokenizer])

    private static let gpt2 = GPT2Matcher()
    private static let numeric = ScalarPredicateMatcher { CharacterClass.of($0) & CharacterClass.number != 0 }
    private static let space = ScalarPredicateMatcher { CharacterClass.of($0) & CharacterClass.whitespace != 0 }
    private static let punctuationScalar = ScalarPredicateMatcher {
        CharacterClass.isASCIIPunctuation($0) || CharacterClass.of($0) & CharacterClass.punctuation != 0
    }

    func apply(to buffer: inout PieceBuffer) {
        switch self {
        case .byteLevel(let addPrefixSpace, let useRegex):
            if addPrefixSpace {
                buffer.transformPieces { arena, range, _ in
                    if range.isEmpty || arena[range.lowerBound] != 0x20 { arena.append(0x20) }
                    for index in range { arena.append(arena[index]) }
                }
            }
            if useRegex {
                buffer.split(by: Self.gpt2, behavior: .isolated)
            }
            ByteLevel.byteToScalar.withUnsafeBufferPointer { table in
                buffer.transformPieces { arena, range, _ in
                    for index in range { ByteLevel.appendEncoded(arena[index], to: &arena, table: table) }
                }
            }
        case .split(let matcher, let behavior, let invert):
            buffer.split(by: matcher, behavior: behavior, invert: invert)
        case .digits(let individual):
            buffer.split(by: Self.numeric, behavior: individual ? .isolated : .contiguous)
        case .metaspace(let replacement, let prependScheme, let split):
            buffer.transformPieces { arena, range, piece in
                let first = range.isEmpty ? nil : (arena[range.lowerBound] == 0x20 ? replacement : arena[range.lowerBound])
                let prepend: Bool
                switch prependScheme {
                case .always: prepend = first != replacement
                case .first: prepend = first != replacement && piece.atOrigin
                case .never: prepend = false
                }
                if prepend { arena.append(replacement) }
                for index in range {
                    let value = arena[index]
                    arena.append(value == 0x20 ? replacement : value)
                }
            }
            if split {
                buffer.split(by: ScalarPredicateMatcher { $0 == replacement }, behavior: .mergedWithNext)
            }
        case .whitespace:
            buffer.split(by: WordOrSymbolRunMatcher(), behavior: .removed, invert: true)
        case .whitespaceSplit:
            buffer.split(by: Self.space, behavior: .removed)
        case .punctuation(let behavior):
            buffer.split(by: Self.punctuationScalar, behavior: behavior)
        case .charDelimiter(let delimiter):
            buffer.split(by: ScalarPredicateMatcher { $0 == delimiter }, behavior: .removed)
        case .bert:
            buffer.split(by: Self.space, behavior: .removed)
            buffer.split(by: Self.punctuationScalar, behavior: .isolated)
        case .sequence(let steps):
            for step in steps { step.apply(to: &buffer) }
        }
    }

    /// The pieces `text` splits into on its own (tokenizers' `pre_tokenize_str`).
    func preTokenize(_ text: String) -> [String] {
        var buffer = PieceBuffer()
        buffer.reset(with: text)
        apply(to: &buffer)
        return buffer.pieces.filter { !$0.isEmpty }.map { buffer.text(of: $0) }
    }
}
