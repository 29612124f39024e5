/// How a split keeps the pattern's matches (tokenizers' `SplitDelimiterBehavior`).
enum SplitBehavior: String, Sendable {
    case removed = "Removed"
    case isolated = "Isolated"
    case mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext"
    case contiguous = "Contiguous"
}

/// One piece of the text being encoded: a range of `PieceBuffer.scalars`, or an added token
/// already recognised (then the range is the token's text and `token` its id).
struct Piece {
    var start: Int
    var end: Int
    var token: Int32
    /// The piece begins at offset 0 of the original input (Metaspace's `prepend_scheme: first`).
    var atOrigin: Bool

    var isEmpty: Bool { start == end }
}

/// The text of one encode call as pieces over a shared scalar arena (tokenizers'
/// PreTokenizedString). Transformations append their output to the arena instead of allocating
/// per piece; splits only narrow ranges.
struct PieceBuffer {
    var scalars: [UInt32] = []
    var pieces: [Piece] = []
    private var spare: [Piece] = []
    private var matches: [Int] = []
    private var segments: [Segment] = []
    private var allSegments: [Segment] = []

    private struct Segment {
        var start: Int
        var end: Int
        var isMatch: Bool
    }

    mutating func reset(with text: String) {
        scalars.removeAll(keepingCapacity: true)
        pieces.removeAll(keepingCapacity: true)
        for scalar in text.unicodeScalars {
            scalars.append(scalar.value)
        }
        // tokenizers drops empty splits, so an empty text has no piece at all.
        if !scalars.isEmpty { pieces.append(Piece(start: 0, end: scalars.count, token: -1, atOrigin: true)) }
    }

    func text(of piece: Piece) -> String {
        var view = String.UnicodeScalarView()
        for value in scalars[piece.start..<piece.end] {
            view.append(Unicode.Scalar(value) ?? "\u{FFFD}")
        }
        return String(view)
    }

    /// Replaces each piece without a token by the parts of `pattern`'s matches that `behavior`
    /// keeps (tokenizers' `NormalizedString::split`); empty parts disappear.
    mutating func split(by matcher: any SplitMatcher, behavior: SplitBehavior, invert: Bool = false) {
        spare.removeAll(keepingCapacity: true)
        var matches = self.matches
        var segments = self.segments
        var all = self.allSegments
        for piece in pieces {
            if piece.token >= 0 {
                spare.append(piece)
                continue
            }
            if piece.isEmpty { continue }
            matches.removeAll(keepingCapacity: true)
            scalars.withUnsafeBufferPointer { all in
                matcher.findMatches(UnsafeBufferPointer(rebasing: all[piece.start..<piece.end]), into: &matches)
            }
            segments.removeAll(keepingCapacity: true)
            Self.combine(
                matches: matches, length: piece.end - piece.start, behavior: behavior, invert: invert,
                scratch: &all, into: &segments)
            for segment in segments where segment.start < segment.end && !segment.isMatch {
                spare.append(
                    Piece(
                        start: piece.start + segment.start, end: piece.start + segment.end, token: -1,
                        atOrigin: piece.atOrigin && segment.start == 0))
            }
        }
        self.matches = matches
        self.segments = segments
        self.allSegments = all
        swap(&pieces, &spare)
    }

    /// Turns match ranges into the segments `behavior` keeps; a segment marked `isMatch` is dropped.
    private static func combine(
        matches: [Int], length: Int, behavior: SplitBehavior, invert: Bool,
        scratch all: inout [Segment], into segments: inout [Segment]
    ) {
        all.removeAll(keepingCapacity: true)
        var previous = 0
        var index = 0
        while index < matches.count {
            let start = matches[index], end = matches[index + 1]
            if previous != start { all.append(Segment(start: previous, end: start, isMatch: invert)) }
            all.append(Segment(start: start, end: end, isMatch: !invert))
            previous = end
            index += 2
        }
        if previous != length { all.append(Segment(start: previous, end: length, isMatch: invert)) }

        switch behavior {
        case .isolated:
            for segment in all { segments.append(Segment(start: segment.start, end: segment.end, isMatch: false)) }
        case .removed:
            segments.append(contentsOf: all)
        case .contiguous:
            var previousMatch = false
            for segment in all {
                if segment.isMatch == previousMatch, !segments.isEmpty {
                    segments[segments.count - 1].end = segment.end
                } else {
                    segments.append(Segment(start: segment.start, end: segment.end, isMatch: false))
                }
                previousMatch = segment.isMatch
            }
        case .mergedWithPrevious:
            var previousMatch = false
            for segment in all {
                if segment.isMatch, !previousMatch, !segments.isEmpty {
                    segments[segments.count - 1].end = segment.end
                } else {
                    segments.append(Segment(start: segment.start, end: segment.end, isMatch: false))
                }
                previousMatch = segment.isMatch
            }
        case .mergedWithNext:
            var previousMatch = false
            var reversed: [Segment] = []
            for segment in all.reversed() {
                if segment.isMatch, !previousMatch, !reversed.isEmpty {
                    reversed[reversed.count - 1].start = segment.start
                } else {
                    reversed.append(Segment(start: segment.start, end: segment.end, isMatch: false))
                }
                previousMatch = segment.isMatch
            }
            segments.append(contentsOf: reversed.reversed())
        }
    }

    /// Points each piece without a token at what `transform` appends to the arena for it.
    /// `transform` reads the piece's old scalars from the arena by index (`range`) while appending.
    mutating func transformPieces(_ transform: (inout [UInt32], _ range: Range<Int>, _ piece: Piece) -> Void) {
        var arena = scalars
        scalars = []
        for index in pieces.indices where pieces[index].token < 0 {
            let piece = pieces[index]
            let newStart = arena.count
            transform(&arena, piece.start..<piece.end, piece)
            pieces[index].start = newStart
            pieces[index].end = arena.count
        }
        scalars = arena
    }
}
