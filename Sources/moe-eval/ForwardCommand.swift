import ArgumentParser
import Foundation
import MoEJSON
import MoEModels

struct ForwardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forward",
        abstract: "Run the model on token ids and write logits and routed experts as JSON.",
        discussion: """
            Input:  {"tokens": [[ids…], …]}   (rows of equal length)
            Output: {"logits": [batch][seq][vocab],
                     "routing": {"<layer>": {"experts": [[ids…] per token, batch-major], "weights": [[…]]}}}

            Example:
              moe-eval forward --checkpoint outputs/checkpoint/step-1000 --config train.toml \\
                               --tokens-file tokens.json --output out.json
            """)

    @OptionGroup var model: ModelOptions
    @OptionGroup var device: DeviceOptions
    @OptionGroup var distributed: DistributedOptions
    @OptionGroup var computeOptions: ComputeOptions

    @Option(name: .customLong("tokens-file"), help: "JSON file {\"tokens\": [[ids…], …]}.")
    var tokensFile: String

    @Option(help: "Where to write the JSON result (written whole via a temporary file).")
    var output: String

    @Flag(help: "Replace --output if it exists.")
    var overwrite = false

    func run() throws {
        try DistributedRun.run { ranks in
            let outputURL = URL(fileURLWithPath: output)
            if ranks.isRoot && !overwrite && FileManager.default.fileExists(atPath: outputURL.path) {
                throw OutputFile.WriteError(description: OutputFile.existsMessage(outputURL, overwriteFlag: "--overwrite"))
            }
            let (tokens, batch, seqLen) = try TokensFile.read(URL(fileURLWithPath: tokensFile))
            var spec = try device.placing(model.spec())
            spec.compute = computeOptions.choice(default: .fp32)
            _ = try ranks.makeGroup(options: distributed, spec: spec, configDegree: nil)
            let loaded = try ranks.load(spec)
            try TokensFile.check(seqLen: seqLen, path: tokensFile, maxSeqLen: loaded.model.shape.maxSeqLen)
            let recorder = RoutingRecorder()
            let logits = try loaded.model.forward(tokens: tokens, batch: batch, seqLen: seqLen, observer: recorder)
            if let report = try ranks.report(model: loaded.model, routingPhase: nil, predictedLoads: nil), ranks.isRoot {
                report.lines.forEach { printError("expert parallel: " + $0) }
            }
            guard ranks.isRoot else { return }

            let vocab = loaded.model.shape.vocabSize
            var json = JSONText()
            json.raw("{\"logits\":")
            json.array(0..<batch) { j, b in
                j.array(0..<seqLen) { j, t in
                    let row = logits.row(b * seqLen + t)
                    j.array(0..<vocab) { j, v in j.number(row[v]) }
                }
            }
            json.raw(",\"routing\":{")
            for (n, layer) in recorder.experts.keys.sorted().enumerated() {
                if n > 0 { json.raw(",") }
                let k = recorder.topK[layer]!, experts = recorder.experts[layer]!, weights = recorder.weights[layer]!
                json.string(String(layer))
                json.raw(":{\"experts\":")
                json.array(0..<(experts.count / k)) { j, t in j.array(experts[(t * k)..<((t + 1) * k)]) { $0.number(Int($1)) } }
                json.raw(",\"weights\":")
                json.array(0..<(weights.count / k)) { j, t in j.array(weights[(t * k)..<((t + 1) * k)]) { $0.number($1) } }
                json.raw("}")
            }
            json.raw("}}\n")
            try OutputFile.write(Data(json.text.utf8), to: outputURL, overwrite: overwrite)
        }
    }
}

/// `{"tokens": [[ids…], …]}` with rows of equal length.
enum TokensFile {
    struct FormatError: Error, CustomStringConvertible { let description: String }

    static func read(_ url: URL) throws -> (tokens: [Int32], batch: Int, seqLen: Int) {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw FormatError(description: "cannot read tokens file \(url.path): \(error.localizedDescription)")
        }
        let root: JSONValue
        do { root = try JSONValue.parse([UInt8](data), maxDepth: 8) } catch {
            throw FormatError(description: "\(url.path): \(error) (expected {\"tokens\": [[ids…], …]})")
        }
        guard let rows = root["tokens"]?.arrayValue else {
            throw FormatError(description: "\(url.path): expected an object with a \"tokens\" array of rows")
        }
        guard !rows.isEmpty else { throw FormatError(description: "\(url.path): \"tokens\" has no rows") }
        var tokens: [Int32] = []
        var seqLen = -1
        for (r, row) in rows.enumerated() {
            guard let ids = row.arrayValue else {
                throw FormatError(description: "\(url.path): tokens[\(r)] is \(row.typeName), not an array of ids")
            }
            if seqLen < 0 { seqLen = ids.count }
            guard ids.count == seqLen, seqLen > 0 else {
                throw FormatError(
                    description:
                        "\(url.path): tokens[\(r)] has \(ids.count) ids but rows must be equal-length and non-empty (row 0 has \(seqLen))")
            }
            for (i, id) in ids.enumerated() {
                // JSON integers only: a boolean, a string or 3.5 is a mistake in the file, not an id.
                guard case .int(let number) = id, let value = Int32(exactly: number), value >= 0 else {
                    throw FormatError(description: "\(url.path): tokens[\(r)][\(i)] is \(describe(id)), not a non-negative integer id")
                }
                tokens.append(value)
            }
        }
        return (tokens, rows.count, seqLen)
    }

    /// Checks the rows against the model they are fed to (ids against the vocabulary: the model does that).
    static func check(seqLen: Int, path: String, maxSeqLen: Int) throws {
        if seqLen > maxSeqLen {
            throw FormatError(description: "\(path): rows have \(seqLen) ids, more than the model's max_seq_len \(maxSeqLen)")
        }
    }

    static func describe(_ value: JSONValue) -> String {
        switch value {
        case .bool(let b): return "the boolean \(b)"
        case .int(let n): return "\(n)"
        case .double(let d): return "\(d)"
        case .string(let s): return "the string \(JSONValue.quoted(s))"
        default: return value.typeName
        }
    }
}
