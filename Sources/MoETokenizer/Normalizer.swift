import Foundation

/// tokenizers' normalizers, applied to each piece of text between added tokens.
indirect enum Normalizer: Sendable {
    case nfc, nfd, nfkc, nfkd
    case lowercase
    case prepend([UInt32])
    case replace(matcher: any SplitMatcher, content: [UInt32])
    case strip(left: Bool, right: Bool)
    case stripAccents
    case byteLevel
    case sequence([Normalizer])

    /// An empty `Sequence` changes nothing (DeepSeek-V3 ships one), so encoding can skip it.
    var isIdentity: Bool {
        if case .sequence(let steps) = self { return steps.allSatisfy(\.isIdentity) }
        return false
    }

    /// Normalizes `text` in place. Returns true when the result no longer starts at the input's
    /// first scalar (leading scalars were removed), which moves the piece off the original offset 0.
    @discardableResult
    func normalize(_ text: inout [UInt32]) -> Bool {
        switch self {
        case .nfc: text = Self.foundationForm(text) { $0.precomposedStringWithCanonicalMapping }
        case .nfd: text = Self.foundationForm(text) { $0.decomposedStringWithCanonicalMapping }
        case .nfkc: text = Self.foundationForm(text) { $0.precomposedStringWithCompatibilityMapping }
        case .nfkd: text = Self.foundationForm(text) { $0.decomposedStringWithCompatibilityMapping }
        case .lowercase:
            // Rust's char::to_lowercase: the full, context-free lowercase mapping of each scalar.
            if text.allSatisfy({ $0 < 0x80 }) {
                for index in text.indices where (0x41...0x5A).contains(text[index]) { text[index] += 0x20 }
            } else {
                var lowered: [UInt32] = []
                lowered.reserveCapacity(text.count)
                for value in text {
                    if value < 0x80 {
                        lowered.append((0x41...0x5A).contains(value) ? value + 0x20 : value)
                    } else if let scalar = Unicode.Scalar(value) {
                        lowered.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars.map(\.value))
                    }
                }
                text = lowered
            }
        case .prepend(let prefix):
            if !text.isEmpty { text.insert(contentsOf: prefix, at: 0) }
        case .replace(let matcher, let content):
            var matches: [Int] = []
            text.withUnsafeBufferPointer { matcher.findMatches($0, into: &matches) }
            guard !matches.isEmpty else { return false }
            let leadingRemoved = matches[0] == 0 && matches[1] > 0 && content.isEmpty
            var replaced: [UInt32] = []
            replaced.reserveCapacity(text.count)
            var previous = 0
            var index = 0
            while index < matches.count {
                replaced.append(contentsOf: text[previous..<matches[index]])
                replaced.append(contentsOf: content)
                previous = matches[index + 1]
                index += 2
            }
            replaced.append(contentsOf: text[previous...])
            text = replaced
            return leadingRemoved && !text.isEmpty
        case .strip(let left, let right):
            let isSpace = { (value: UInt32) in CharacterClass.of(value) & CharacterClass.whitespace != 0 }
            var start = 0
            var end = text.count
            if left { while start < end, isSpace(text[start]) { start += 1 } }
            if right { while end > start, isSpace(text[end - 1]) { end -= 1 } }
            if start == 0, end == text.count { return false }
            text = Array(text[start..<end])
            return start > 0 && !text.isEmpty
        case .stripAccents:
            let leadingMark = text.first.map { CharacterClass.of($0) & CharacterClass.mark != 0 } ?? false
            text.removeAll { CharacterClass.of($0) & CharacterClass.mark != 0 }
            return leadingMark && !text.isEmpty
        case .byteLevel:
            var mapped: [UInt32] = []
            mapped.reserveCapacity(text.count)
            ByteLevel.byteToScalar.withUnsafeBufferPointer { table in
                for value in text { ByteLevel.appendEncoded(value, to: &mapped, table: table) }
            }
            text = mapped
        case .sequence(let steps):
            var moved = false
            for step in steps where step.normalize(&text) { moved = true }
            return moved
        }
        return false
    }

    func normalize(_ string: String) -> String {
        var scalars = string.unicodeScalars.map(\.value)
        normalize(&scalars)
        return String(scalarValues: scalars)
    }

    private static func foundationForm(_ text: [UInt32], _ form: (String) -> String) -> [UInt32] {
        if text.allSatisfy({ $0 < 0x80 }) { return text }
        return form(String(scalarValues: text)).unicodeScalars.map(\.value)
    }
}

extension String {
    init(scalarValues: some Sequence<UInt32>) {
        var view = String.UnicodeScalarView()
        for value in scalarValues {
            view.append(Unicode.Scalar(value) ?? "\u{FFFD}")
        }
        self = String(view)
    }
}
