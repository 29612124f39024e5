import ArgumentParser
import Foundation
import MoEJSON
import MoETokenizer

/// `moe-eval tokenize`: text lines → JSON arrays of token ids, or back with `--decode`.
/// One output line per input line; other tools check against this format.
struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Encode text lines to token ids (one JSON array per line), or decode ids back to text.",
        discussion: """
            Each input line is encoded alone, without its "\\n" or "\\r\\n".
            Ids print as JSON arrays like [0, 42, 3934] (Python json.dumps style).
            With --decode each line must be a JSON array of ids; its text is printed
            (a text holding line breaks prints over several lines).

            Examples:
              moe-eval tokenize --tokenizer assets/tokenizers/demo-dsv3 --input a.txt
              echo "Hello" | moe-eval tokenize --tokenizer tokenizer.json --no-special
              echo "[0, 42]" | moe-eval tokenize --tokenizer DIR --decode
            """
    )

    @Option(help: "A tokenizer.json (or .json.gz) file, or a folder holding tokenizer.json and tokenizer_config.json.")
    var tokenizer: String

    @Option(help: "Read the lines from this file instead of standard input.")
    var input: String?

    @Flag(
        name: .customLong("no-special"),
        help: "Encoding: do not add BOS/EOS or other special tokens. Decoding: leave special tokens out of the text.")
    var noSpecial = false

    @Flag(help: "Read JSON arrays of ids and print their text.")
    var decode = false

    @Flag(help: "Print the number of lines and tokens and the encode/decode throughput to standard error.")
    var stats = false

    func run() throws {
        let loaded = try Tokenizer.load(from: URL(fileURLWithPath: tokenizer))
        let source = input ?? "standard input"
        let data: Data
        if let input {
            do {
                data = try Data(contentsOf: URL(fileURLWithPath: input))
            } catch {
                throw TokenizeCommandError("\(input): cannot read: \(error.localizedDescription)")
            }
        } else {
            data = FileHandle.standardInput.readDataToEndOfFile()
        }
        var output = OutputBuffer()
        var seconds = 0.0
        var lineCount = 0
        var tokenCount = 0
        var byteCount = 0
        for (index, lineBytes) in Self.lines(of: data).enumerated() {
            let text = String(decoding: lineBytes, as: UTF8.self)
            guard text.utf8.elementsEqual(lineBytes) else {
                throw TokenizeCommandError("\(source): line \(index + 1) is not valid UTF-8")
            }
            lineCount += 1
            if decode {
                let ids = try Self.parseIds(text, source: source, line: index + 1)
                let start = DispatchTime.now().uptimeNanoseconds
                let decoded = loaded.decode(ids, skipSpecialTokens: noSpecial)
                seconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                tokenCount += ids.count
                byteCount += decoded.utf8.count
                output.append(decoded)
            } else {
                let start = DispatchTime.now().uptimeNanoseconds
                let ids = loaded.encode(text, addSpecialTokens: !noSpecial)
                seconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                tokenCount += ids.count
                byteCount += lineBytes.count
                output.appendJSONArray(ids)
            }
            output.appendNewline()
        }
        output.flush()
        if stats {
            let megabytes = Double(byteCount) / 1e6
            let rate = seconds > 0 ? megabytes / seconds : 0
            let verb = decode ? "decoded" : "encoded"
            FileHandle.standardError.write(
                Data(
                    String(
                        format: "%@ %ld lines, %ld tokens, %.3f MB of text in %.3f s (%.2f MB/s, %.0f tokens/s)\n",
                        verb, lineCount, tokenCount, megabytes, seconds, rate, seconds > 0 ? Double(tokenCount) / seconds : 0
                    ).utf8))
        }
    }

    /// The lines of `data` without their "\n" or "\r\n"; a final line break ends the last line
    /// rather than starting an empty one.
    static func lines(of data: Data) -> [ArraySlice<UInt8>] {
        let bytes = [UInt8](data)
        var lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
        if bytes.last == 0x0A || bytes.isEmpty { lines.removeLast() }
        return lines.map { $0.last == 0x0D ? $0.dropLast() : $0 }
    }

    static func parseIds(_ line: String, source: String, line number: Int) throws -> [Int] {
        guard let ids = try? JSONValueDecoder().decode([Int].self, from: Array(line.utf8)) else {
            throw TokenizeCommandError("\(source): line \(number) is not a JSON array of integer ids")
        }
        return ids
    }
}

struct TokenizeCommandError: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) {
        self.description = description
    }
}

/// Standard output written in large blocks.
private struct OutputBuffer {
    private var bytes: [UInt8] = []

    init() {
        bytes.reserveCapacity(1 << 16)
    }

    mutating func append(_ text: String) {
        bytes.append(contentsOf: text.utf8)
        flushIfLarge()
    }

    mutating func appendJSONArray(_ ids: [Int]) {
        bytes.append(UInt8(ascii: "["))
        for (index, id) in ids.enumerated() {
            if index > 0 {
                bytes.append(UInt8(ascii: ","))
                bytes.append(UInt8(ascii: " "))
            }
            appendDecimal(id)
        }
        bytes.append(UInt8(ascii: "]"))
        flushIfLarge()
    }

    mutating func appendNewline() {
        bytes.append(0x0A)
    }

    private mutating func appendDecimal(_ value: Int) {
        if value < 0 {
            bytes.append(UInt8(ascii: "-"))
            appendDecimal(-value)
            return
        }
        if value >= 10 { appendDecimal(value / 10) }
        bytes.append(UInt8(ascii: "0") + UInt8(value % 10))
    }

    private mutating func flushIfLarge() {
        if bytes.count >= 1 << 16 { flush() }
    }

    mutating func flush() {
        guard !bytes.isEmpty else { return }
        FileHandle.standardOutput.write(Data(bytes))
        bytes.removeAll(keepingCapacity: true)
    }
}
