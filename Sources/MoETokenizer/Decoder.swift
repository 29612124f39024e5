/// tokenizers' decoders: each maps the list of token strings to a new list; `decode` joins the
/// final list.
indirect enum Decoder: Sendable {
    case byteLevel
    case metaspace(replacement: UInt32, prependScheme: PrependScheme)
    case replace(matcher: any SplitMatcher, content: String)
    case byteFallback
    case fuse
    case strip(content: UInt32, start: Int, stop: Int)
    case bpe(suffix: String)
    case sequence([Decoder])

    func decode(_ tokens: [String]) -> String {
        decodeChain(tokens).joined()
    }

    func decodeChain(_ tokens: [String]) -> [String] {
        switch self {
        case .byteLevel:
            var bytes: [UInt8] = []
            for token in tokens {
                let start = bytes.count
                var allInAlphabet = true
                for scalar in token.unicodeScalars {
                    guard let byte = ByteLevel.byte(for: scalar.value) else {
                        allInAlphabet = false
                        break
                    }
                    bytes.append(byte)
                }
                if !allInAlphabet {
                    // A token outside the byte alphabet (an added token, say) stands for its own UTF-8.
                    bytes.removeSubrange(start...)
                    bytes.append(contentsOf: token.utf8)
                }
            }
            return [decodeUTF8Lossy(bytes)]
        case .metaspace(let replacement, let prependScheme):
            return tokens.enumerated().map { index, token in
                var view = String.UnicodeScalarView()
                for scalar in token.unicodeScalars {
                    if scalar.value == replacement {
                        if index == 0, prependScheme != .never { continue }
                        view.append(" ")
                    } else {
                        view.append(scalar)
                    }
                }
                return String(view)
            }
        case .replace(let matcher, let content):
            return tokens.map { token in
                let scalars = token.unicodeScalars.map(\.value)
                var matches: [Int] = []
                scalars.withUnsafeBufferPointer { matcher.findMatches($0, into: &matches) }
                if matches.isEmpty { return token }
                var result = ""
                var previous = 0
                var index = 0
                while index < matches.count {
                    result += String(scalarValues: scalars[previous..<matches[index]])
                    result += content
                    previous = matches[index + 1]
                    index += 2
                }
                result += String(scalarValues: scalars[previous...])
                return result
            }
        case .byteFallback:
            var output: [String] = []
            var pendingBytes: [UInt8] = []
            func flush() {
                guard !pendingBytes.isEmpty else { return }
                let text = String(decoding: pendingBytes, as: UTF8.self)
                if text.utf8.elementsEqual(pendingBytes) {
                    output.append(text)
                } else {
                    output.append(contentsOf: repeatElement("\u{FFFD}", count: pendingBytes.count))
                }
                pendingBytes.removeAll()
            }
            for token in tokens {
                if let byte = Self.fallbackByte(token) {
                    pendingBytes.append(byte)
                } else {
                    flush()
                    output.append(token)
                }
            }
            flush()
            return output
        case .fuse:
            return [tokens.joined()]
        case .strip(let content, let start, let stop):
            return tokens.map { token in
                let scalars = Array(token.unicodeScalars)
                var startCut = 0
                for (index, scalar) in scalars.prefix(start).enumerated() {
                    guard scalar.value == content else { break }
                    startCut = index + 1
                }
                var stopCut = scalars.count
                for offset in 0..<min(stop, scalars.count) {
                    let index = scalars.count - offset - 1
                    guard scalars[index].value == content else { break }
                    stopCut = index
                }
                guard startCut < stopCut else { return "" }
                var view = String.UnicodeScalarView()
                view.append(contentsOf: scalars[startCut..<stopCut])
                return String(view)
            }
        case .bpe(let suffix):
            guard !suffix.isEmpty else { return tokens }
            return tokens.enumerated().map { index, token in
                token.replacing(suffix, with: index == tokens.count - 1 ? "" : " ")
            }
        case .sequence(let steps):
            var current = tokens
            for step in steps { current = step.decodeChain(current) }
            return current
        }
    }

    /// The byte of a `<0xXX>` token (six bytes; the two hex digits parsed as Rust's
    /// `u8::from_str_radix` does, which also accepts a leading '+').
    private static func fallbackByte(_ token: String) -> UInt8? {
        let utf8 = Array(token.utf8)
        guard utf8.count == 6, utf8[0] == UInt8(ascii: "<"), utf8[1] == UInt8(ascii: "0"),
            utf8[2] == UInt8(ascii: "x"), utf8[5] == UInt8(ascii: ">")
        else { return nil }
        func hexDigit(_ byte: UInt8) -> UInt8? {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        if utf8[3] == UInt8(ascii: "+") { return hexDigit(utf8[4]) }
        guard let high = hexDigit(utf8[3]), let low = hexDigit(utf8[4]) else { return nil }
        return high << 4 | low
    }
}
