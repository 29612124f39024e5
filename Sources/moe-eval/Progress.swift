import Foundation

/// Progress on stderr: a rewritten line on a terminal, plain lines otherwise; nothing with `--quiet`.
final class Progress {
    let quiet: Bool
    let isTerminal = isatty(2) != 0
    private var lastLength = 0

    init(quiet: Bool) { self.quiet = quiet }

    func update(_ message: String) {
        guard !quiet else { return }
        if isTerminal {
            let padded = message.padding(toLength: max(lastLength, message.count), withPad: " ", startingAt: 0)
            FileHandle.standardError.write(Data(("\r" + padded).utf8))
            lastLength = message.count
        } else {
            FileHandle.standardError.write(Data((message + "\n").utf8))
        }
    }

    /// A finished phase: always its own line.
    func done(_ message: String) {
        guard !quiet else { return }
        if isTerminal && lastLength > 0 {
            FileHandle.standardError.write(Data(("\r" + String(repeating: " ", count: lastLength) + "\r").utf8))
            lastLength = 0
        }
        FileHandle.standardError.write(Data((message + "\n").utf8))
    }

    static func bar(_ done: Int, _ total: Int, width: Int = 24) -> String {
        let filled = total > 0 ? width * done / total : width
        return "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "] \(done)/\(total)"
    }
}
