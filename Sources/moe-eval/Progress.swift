import Foundation
import MoEEval

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

    static func bar(_ done: Int, _ total: Int) -> String { EvaluationPipeline.bar(done, total) }
}

extension Progress: EvaluationProgress {
    /// Shown even with `--quiet`.
    func note(_ message: String) { printError(message) }
}
