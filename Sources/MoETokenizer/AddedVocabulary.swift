/// One entry of tokenizer.json's `added_tokens` (or of tokenizer_config.json).
struct AddedToken: Equatable, Sendable {
    var content: String
    var singleWord = false
    var lstrip = false
    var rstrip = false
    var normalized = true
    var special = false
}

/// tokenizers' AddedVocabulary: added and special tokens, found in the text before
/// pre-tokenization. Tokens with `normalized: false` are matched on the raw text; the others on
/// each normalized piece in between.
struct AddedVocabulary: Sendable {
    private(set) var idsByContent: [String: Int] = [:]
    private(set) var tokensById: [Int: AddedToken] = [:]
    /// The normalized form of normalized tokens, where it differs from the content.
    private(set) var normalizedContent: [Int: String] = [:]
    private(set) var specialContents: Set<String> = []
    private var rawMatcher = AddedTokenMatcher(patterns: [])
    private var normalizedMatcher = AddedTokenMatcher(patterns: [])

    var hasNormalizedTokens: Bool { !normalizedMatcher.isEmpty }

    /// tokenizers' `add_tokens`: a token already in the vocabulary keeps its id, others get ids
    /// after the current ones.
    mutating func add(_ tokens: [AddedToken], model: BPEModel, normalizer: Normalizer?) {
        let modelCount = model.vocabularyCount
        var nextId = modelCount
        if let largest = tokensById.keys.max() {
            nextId = largest >= modelCount || modelCount == 0 ? largest + 1 : modelCount
        }
        for token in tokens where !token.content.isEmpty {
            if let id = idsByContent[token.content], tokensById[id] == token { continue }
            let id: Int
            if let existing = idsByContent[token.content] ?? model.id(of: token.content) {
                id = existing
            } else {
                id = nextId
                nextId += 1
            }
            if token.normalized, let normalizer {
                let normalized = normalizer.normalize(token.content)
                if normalized != token.content { normalizedContent[id] = normalized }
            }
            idsByContent[token.content] = id
            if token.special { specialContents.insert(token.content) }
            tokensById[id] = token
        }
        var raw: [(pattern: [UInt32], id: Int)] = []
        var normalized: [(pattern: [UInt32], id: Int)] = []
        for (id, token) in tokensById.sorted(by: { $0.key < $1.key }) {
            if token.normalized {
                normalized.append(((normalizedContent[id] ?? token.content).unicodeScalars.map(\.value), id))
            } else {
                raw.append((token.content.unicodeScalars.map(\.value), id))
            }
        }
        rawMatcher = AddedTokenMatcher(patterns: raw)
        normalizedMatcher = AddedTokenMatcher(patterns: normalized)
    }

    /// The text `decode` uses for an added token: its normalized form when it has one.
    func decodedText(of id: Int) -> String? {
        guard let token = tokensById[id] else { return nil }
        return normalizedContent[id] ?? token.content
    }

    func isSpecial(_ text: String) -> Bool { specialContents.contains(text) }

    /// Splits the pieces without a token around the matches of the raw (`normalized == false`) tokens.
    func splitRaw(_ buffer: inout PieceBuffer) {
        split(&buffer, with: rawMatcher)
    }

    /// Normalizes each piece without a token, then splits it around the normalized tokens.
    func normalizeAndSplit(_ buffer: inout PieceBuffer, normalizer: Normalizer?) {
        if let normalizer, !normalizer.isIdentity {
            var text: [UInt32] = []
            var arena = buffer.scalars
            buffer.scalars = []
            for index in buffer.pieces.indices where buffer.pieces[index].token < 0 {
                let piece = buffer.pieces[index]
                text.removeAll(keepingCapacity: true)
                text.append(contentsOf: arena[piece.start..<piece.end])
                let movedOffOrigin = normalizer.normalize(&text)
                buffer.pieces[index].start = arena.count
                arena.append(contentsOf: text)
                buffer.pieces[index].end = arena.count
                if movedOffOrigin { buffer.pieces[index].atOrigin = false }
            }
            buffer.scalars = arena
        }
        split(&buffer, with: normalizedMatcher)
    }

    /// tokenizers' `find_matches` + `split_with_indices` for every piece without a token.
    private func split(_ buffer: inout PieceBuffer, with matcher: AddedTokenMatcher) {
        var result: [Piece] = []
        result.reserveCapacity(buffer.pieces.count + 2)
        let classes = CharacterClass.bmpTable
        buffer.scalars.withUnsafeBufferPointer { all in
            for piece in buffer.pieces {
                if piece.token >= 0 {
                    result.append(piece)
                    continue
                }
                if piece.isEmpty || matcher.isEmpty {
                    if !piece.isEmpty { result.append(piece) }
                    continue
                }
                let text = UnsafeBufferPointer(rebasing: all[piece.start..<piece.end])
                let count = text.count
                func isWord(_ index: Int) -> Bool {
                    CharacterClass.of(text[index], table: classes) & CharacterClass.word != 0
                }
                func isSpace(_ index: Int) -> Bool {
                    CharacterClass.of(text[index], table: classes) & CharacterClass.whitespace != 0
                }
                func emit(_ start: Int, _ end: Int, token: Int32) {
                    guard start < end else { return }
                    result.append(
                        Piece(
                            start: piece.start + start, end: piece.start + end, token: token,
                            atOrigin: piece.atOrigin && start == 0))
                }
                var consumed = 0
                matcher.forEachMatch(in: text) { matchStart, matchEnd, id in
                    guard let token = tokensById[id] else { return }
                    var start = matchStart
                    var stop = matchEnd
                    if token.singleWord {
                        let spaceBefore = start == 0 || !isWord(start - 1)
                        let spaceAfter = stop == count || !isWord(stop)
                        if !spaceBefore || !spaceAfter { return }
                    }
                    if token.lstrip {
                        var newStart = start
                        while newStart > 0, isSpace(newStart - 1) { newStart -= 1 }
                        start = max(newStart, consumed)
                    }
                    if token.rstrip {
                        while stop < count, isSpace(stop) { stop += 1 }
                    }
                    if consumed < start { emit(consumed, start, token: -1) }
                    emit(start, stop, token: Int32(id))
                    consumed = stop
                }
                if consumed < count { emit(consumed, count, token: -1) }
            }
        }
        buffer.pieces = result
    }
}

/// Leftmost-longest search for a set of literal patterns (tokenizers builds an Aho-Corasick
/// automaton with `MatchKind::LeftmostLongest`).
struct AddedTokenMatcher: Sendable {
    private let patterns: [[UInt32]]
    private let ids: [Int]
    /// Pattern indices by first scalar, longest first.
    private let byFirstScalar: [UInt32: [Int]]
    /// One bit per BMP scalar that starts some pattern, so most scalars skip the dictionary.
    private let firstScalarBits: [UInt64]

    var isEmpty: Bool { patterns.isEmpty }

    init(patterns list: [(pattern: [UInt32], id: Int)]) {
        let kept = list.filter { !$0.pattern.isEmpty }
        patterns = kept.map(\.pattern)
        ids = kept.map(\.id)
        var index: [UInt32: [Int]] = [:]
        for (position, pattern) in patterns.enumerated() {
            index[pattern[0], default: []].append(position)
        }
        let patterns = self.patterns
        byFirstScalar = index.mapValues { positions in
            positions.sorted { patterns[$0].count > patterns[$1].count }
        }
        var bits = [UInt64](repeating: 0, count: 0x10000 / 64)
        for first in index.keys where first < 0x10000 {
            bits[Int(first) >> 6] |= 1 << UInt64(first & 63)
        }
        firstScalarBits = bits
    }

    @inline(__always)
    private func mayStartPattern(_ scalar: UInt32) -> Bool {
        scalar >= 0x10000 || firstScalarBits[Int(scalar) >> 6] & (1 << UInt64(scalar & 63)) != 0
    }

    /// Calls `body(start, end, id)` for each leftmost-longest non-overlapping match.
    func forEachMatch(in text: UnsafeBufferPointer<UInt32>, _ body: (Int, Int, Int) -> Void) {
        var start = 0
        while start < text.count {
            var matched = false
            if mayStartPattern(text[start]), let candidates = byFirstScalar[text[start]] {
                for candidate in candidates {
                    let pattern = patterns[candidate]
                    guard start + pattern.count <= text.count else { continue }
                    var equal = true
                    for offset in 1..<max(pattern.count, 1) where text[start + offset] != pattern[offset] {
                        equal = false
                        break
                    }
                    if equal {
                        body(start, start + pattern.count, ids[candidate])
                        start += pattern.count
                        matched = true
                        break
                    }
                }
            }
            if !matched { start += 1 }
        }
    }
}
