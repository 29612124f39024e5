import Foundation

/// Bounds a TOML text must keep before TOMLKit (toml++) sees it: toml++ and the conversion to tables recurse
/// once per dotted-key part and per nesting level, so a key with thousands of parts overflows the stack.
/// TorchTitan train configs are a few KB with keys of two or three parts; the bounds leave ample room.
public enum TOMLLimits {
    public static let maximumBytes = 4 << 20
    public static let maximumKeyParts = 32
    public static let maximumNesting = 32

    /// Refuses a config file larger than `maximumBytes` before reading it.
    public static func checkFileSize(_ url: URL) throws {
        guard let size = (try? FileManager.default.attributesOfItem(atPath: url.path))?[.size] as? NSNumber else { return }
        if size.int64Value > Int64(maximumBytes) {
            throw ModelArgsError(message: "\(url.path): \(size.int64Value) bytes; a train config may have at most \(maximumBytes) bytes")
        }
    }

    /// Scans the text without recursion: strings and comments are skipped, dotted keys (in `key = value` lines,
    /// inline tables and `[table]` headers) are counted per key, and arrays/inline tables per nesting level.
    public static func check(_ text: String, path: String) throws {
        let bytes = Array(text.utf8)
        guard bytes.count <= maximumBytes else {
            throw ModelArgsError(message: "\(path): \(bytes.count) bytes; a train config may have at most \(maximumBytes) bytes")
        }
        var scanner = Scanner(bytes: bytes, path: path)
        try scanner.run()
    }

    private struct Scanner {
        let bytes: [UInt8]
        let path: String
        var index = 0
        var line = 1
        /// Open `[` (arrays) and `{` (inline tables) of the current value.
        var open: [UInt8] = []
        var readingKey = true
        var keyParts = 1

        init(bytes: [UInt8], path: String) {
            self.bytes = bytes
            self.path = path
        }

        func failure(_ what: String) -> ModelArgsError {
            ModelArgsError(message: "\(path): line \(line): \(what)")
        }

        mutating func run() throws {
            var atLineStart = true
            while index < bytes.count {
                let byte = bytes[index]
                if atLineStart && open.isEmpty {
                    if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r") { index += 1; continue }
                    atLineStart = false
                    readingKey = byte != UInt8(ascii: "[")
                    keyParts = 1
                    if byte == UInt8(ascii: "[") {
                        try readHeader()
                        continue
                    }
                }
                switch byte {
                case UInt8(ascii: "\n"):
                    line += 1
                    index += 1
                    if open.isEmpty { atLineStart = true }
                case UInt8(ascii: "#"):
                    while index < bytes.count && bytes[index] != UInt8(ascii: "\n") { index += 1 }
                case UInt8(ascii: "\""), UInt8(ascii: "'"):
                    try skipString()
                case UInt8(ascii: "."):
                    if readingKey { try countKeyPart() }
                    index += 1
                case UInt8(ascii: "="):
                    readingKey = false
                    index += 1
                case UInt8(ascii: "["), UInt8(ascii: "{"):
                    open.append(byte)
                    if open.count > maximumNesting {
                        throw failure("arrays or inline tables nested more than \(maximumNesting) deep")
                    }
                    if byte == UInt8(ascii: "{") { readingKey = true; keyParts = 1 }
                    index += 1
                case UInt8(ascii: "]"), UInt8(ascii: "}"):
                    if !open.isEmpty { open.removeLast() }
                    readingKey = false
                    index += 1
                case UInt8(ascii: ","):
                    if open.last == UInt8(ascii: "{") { readingKey = true; keyParts = 1 }
                    index += 1
                default:
                    try refuseNonASCII()
                    index += 1
                }
            }
        }

        /// toml++ asserts (fuzz finding: `[` alone on a line, `[=]`, `[.a]`, `[#]`) unless the first thing after a
        /// header's brackets and blanks is a bare-key character, a quote or the closing bracket.
        func checkHeaderStart() throws {
            var next = index
            while next < bytes.count && bytes[next] == UInt8(ascii: "[") && next - index < 2 { next += 1 }
            while next < bytes.count && (bytes[next] == UInt8(ascii: " ") || bytes[next] == UInt8(ascii: "\t")) { next += 1 }
            // The end of the text is TOMLKit's to report; a non-ASCII byte is refused by `refuseNonASCII`.
            guard next < bytes.count, bytes[next] < 0x80 else { return }
            let byte = bytes[next]
            let isBare =
                (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z")) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z"))
                || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
            guard isBare || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "'") || byte == UInt8(ascii: "]") else {
                throw failure("a table header without a name (expected a key after '[')")
            }
        }

        /// TOML allows non-ASCII text only inside strings and comments; toml++ asserts (and without its checks
        /// misreads) on a non-ASCII byte in a bare key, so it never gets one.
        func refuseNonASCII() throws {
            if bytes[index] >= 0x80 {
                throw failure("a non-ASCII character outside a string (bare keys and values are ASCII in TOML; quote the key or value)")
            }
        }

        mutating func countKeyPart() throws {
            keyParts += 1
            if keyParts > maximumKeyParts {
                throw failure("a dotted key or table name with more than \(maximumKeyParts) parts")
            }
        }

        /// `[a.b]` or `[[a.b]]`, up to the end of the line.
        mutating func readHeader() throws {
            try checkHeaderStart()
            while index < bytes.count && bytes[index] != UInt8(ascii: "\n") {
                switch bytes[index] {
                case UInt8(ascii: "\""), UInt8(ascii: "'"):
                    try skipString()
                case UInt8(ascii: "."):
                    try countKeyPart()
                    index += 1
                case UInt8(ascii: "#"):
                    while index < bytes.count && bytes[index] != UInt8(ascii: "\n") { index += 1 }
                default:
                    try refuseNonASCII()
                    index += 1
                }
            }
        }

        /// Basic and literal strings, single- or multi-line; an unterminated one is left for TOMLKit to report.
        mutating func skipString() throws {
            let quote = bytes[index]
            let triple = index + 2 < bytes.count && bytes[index + 1] == quote && bytes[index + 2] == quote
            index += triple ? 3 : 1
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\\") && quote == UInt8(ascii: "\"") {
                    if index + 1 < bytes.count && bytes[index + 1] == UInt8(ascii: "\n") { line += 1 }
                    index += 2
                    continue
                }
                if byte == UInt8(ascii: "\n") {
                    if !triple { return }
                    line += 1
                }
                if byte == quote {
                    if !triple { index += 1; return }
                    if index + 2 < bytes.count && bytes[index + 1] == quote && bytes[index + 2] == quote {
                        index += 3
                        // Up to two more quotes may close a multi-line string (`""""` ends with a quote in it).
                        while index < bytes.count && bytes[index] == quote { index += 1 }
                        return
                    }
                }
                index += 1
            }
        }
    }
}
