import ArgumentParser
import Foundation
import MoECore
import MoEEval
import MoEModels
import MoETensor
import MoETokenizer

struct AgreementCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agreement",
        abstract: "Route the same tokens through two or more checkpoints and report how often their routers agree.",
        discussion: """
            Per MoE layer and averaged over layers: top-1 agreement, mean top-k overlap |A∩B|/k and the gate mass on
            shared experts, each beside its value for independent uniform random routing (docs/METRICS.md,
            "Routing agreement"). Every checkpoint is compared with the previous one and with the last one.
            All checkpoints must have the same architecture (vocabulary, MoE layers, experts, top-k).

            Examples:
              moe-eval agreement --checkpoint outputs/checkpoint/step-500 --checkpoint outputs/checkpoint/step-1000 --config train.toml
              moe-eval agreement --checkpoint a/step-400 --checkpoint b/step-400 --model-args model_args.json --routing-input random
            """)

    @Option(name: .customLong("checkpoint"), help: "A checkpoint (DCP folder or safetensors); give two or more, oldest first.")
    var checkpoints: [String] = []

    @Option(help: "TorchTitan train config: a TOML file, or a 0.3 registry name (with --module).")
    var config: String?

    @Option(help: "TorchTitan 0.3 module of a registry --config.")
    var module: String?

    @Option(
        name: .customLong("model-args"),
        help: "Model args JSON with TorchTitan field names: one for all checkpoints, or one per --checkpoint in order.")
    var modelArgs: [String] = []

    @Option(help: "tokenizer.json file or folder (default: the config's hf_assets_path, else tokenizer.json beside the first checkpoint).")
    var tokenizer: String?

    @Option(
        help: "Routing text: a text file, .json/.jsonl with a \"text\" field, or a folder of them (default: the config's dataset_path).")
    var data: String?

    @Option(name: .customLong("routing-input"), help: "text (default) or random token ids (needs no tokenizer).")
    var routingInput: String = "text"

    @Option(help: "Sequences to route.")
    var samples: Int = 8

    @Option(name: .customLong("seq-len"), help: "Tokens per sequence (default: min(128, max_seq_len)).")
    var seqLen: Int?

    @Option(help: "Seed for the windows of the text (or the random ids).")
    var seed: UInt64 = 0

    @Option(help: "Compute threads.")
    var threads: Int?

    @Flag(help: "Print the agreement as JSON.")
    var json = false

    @Flag(help: "No progress on stderr.")
    var quiet = false

    func validate() throws {
        guard checkpoints.count >= 2 else { throw ValidationError("agreement needs at least two --checkpoint") }
        guard RoutingInput.Kind(rawValue: routingInput) != nil else {
            throw ValidationError("--routing-input must be text or random, not \"\(routingInput)\"")
        }
        guard (1...100_000).contains(samples) else { throw ValidationError("--samples must be in 1…100000") }
        if let seqLen, !(1...1_000_000).contains(seqLen) { throw ValidationError("--seq-len must be in 1…1000000") }
        if let threads, threads < 1 { throw ValidationError("--threads must be ≥ 1") }
        guard modelArgs.count <= 1 || modelArgs.count == checkpoints.count else {
            throw ValidationError(
                "give one --model-args for all checkpoints or one per --checkpoint (\(checkpoints.count)), not \(modelArgs.count)")
        }
    }

    func spec(_ index: Int) -> ModelSpec {
        let configFile = config.flatMap { ModelOptions.namesFile($0) ? URL(fileURLWithPath: $0) : nil }
        let args = modelArgs.count > 1 ? modelArgs[index] : modelArgs.first
        return ModelSpec(
            checkpoint: URL(fileURLWithPath: checkpoints[index]), config: configFile,
            modelArgs: args.map { URL(fileURLWithPath: $0) }, registryModule: module,
            registryConfig: configFile == nil ? config : nil)
    }

    /// What must match for two routings of the same token ids to be comparable.
    static func architecture(_ shape: ModelShape) -> String {
        "\(shape.family), vocab_size \(shape.vocabSize), n_layers \(shape.layers), MoE layers \(shape.moeLayers), \(shape.numExperts) experts top-\(shape.topK)"
    }

    func run() throws {
        try reportingErrors {
            if let threads { Compute.setThreads(threads) }
            let progress = Progress(quiet: quiet || json)
            let first = spec(0)
            let trainConfig = try first.loadTrainConfig()
            var input: RoutingInput?
            var reference: String?
            var routed: [RoutedExperts] = []
            for (index, path) in checkpoints.enumerated() {
                progress.update("loading \(path)")
                let loaded = try ModelLoader.load(spec(index))
                let shape = Self.architecture(loaded.model.shape)
                if let reference, reference != shape {
                    throw AgreementError(description: "\(path) is not the same architecture as \(checkpoints[0]): \(shape) vs \(reference)")
                }
                reference = shape
                if input == nil { input = try routingInput(shape: loaded.model.shape, config: trainConfig) }
                let insight = RoutingInsightCollector(recordedTokenLimit: Int.max)
                for (i, sequence) in input!.sequences.enumerated() {
                    progress.update("routing \(path) \(Progress.bar(i, input!.sequences.count))")
                    insight.beginForward(tokens: sequence)
                    _ = try loaded.model.forward(tokens: sequence, batch: 1, seqLen: sequence.count, logits: .last, observer: insight)
                }
                guard let experts = insight.routedExperts() else {
                    throw AgreementError(description: "\(path): the model has no MoE layer to compare")
                }
                routed.append(experts)
                progress.done("routed \(input!.sequences.count) × \(input!.sequences.first?.count ?? 0) tokens through \(path)")
            }
            var rows: [(from: Int, to: Int, agreement: RoutingAgreement)] = []
            var pairs = routed.indices.dropFirst().map { ($0 - 1, $0) }
            for earlier in routed.indices.dropLast(2) { pairs.append((earlier, routed.count - 1)) }
            for (a, b) in pairs {
                rows.append((a, b, try RoutingAgreement.between(routed[a], routed[b])))
            }
            if json {
                let output = AgreementOutput(
                    checkpoints: checkpoints, routingInput: input!.source, tokens: routed[0].tokenCount,
                    tokenSetHash: routed[0].tokenSetHash,
                    pairs: rows.map { .init(from: checkpoints[$0.from], to: checkpoints[$0.to], agreement: $0.agreement) })
                FileHandle.standardOutput.write(try ResultsJSON.encode(output))
                return
            }
            print("routing agreement on \(routed[0].tokenCount) tokens of \(input!.source) (chance = uniform random routing)")
            for (index, path) in checkpoints.enumerated() { print("  \(Comparison.label(index)): \(path)") }
            var table = [["pair", "layer", "top-1 agreement", "top-k overlap", "weighted overlap"]]
            func cell(_ value: Double, _ chance: Double) -> String {
                "\(Comparison.formatNumber(value)) (chance \(Comparison.formatNumber(chance)))"
            }
            for row in rows {
                let a = row.agreement
                table.append([
                    "\(Comparison.label(row.from)) → \(Comparison.label(row.to))", "mean",
                    cell(a.top1Agreement, a.top1AgreementChance), cell(a.topKOverlap, a.topKOverlapChance),
                    cell(a.weightedOverlap, a.weightedOverlapChance),
                ])
                for layer in a.layers {
                    table.append([
                        "", "layer_\(layer.layer)", cell(layer.top1Agreement, layer.top1AgreementChance),
                        cell(layer.topKOverlap, layer.topKOverlapChance), cell(layer.weightedOverlap, layer.weightedOverlapChance),
                    ])
                }
            }
            print(TerminalText.sanitized(Comparison.layout(table)), terminator: "")
        }
    }

    func routingInput(shape: ModelShape, config: TrainConfig?) throws -> RoutingInput {
        let length = seqLen ?? min(128, shape.maxSeqLen)
        if RoutingInput.Kind(rawValue: routingInput) == .random {
            return .random(vocabSize: shape.vocabSize, samples: samples, seqLen: length, seed: seed)
        }
        guard let source = data ?? config?.datasetPath else {
            throw AgreementError(
                description: "no routing text: pass --data FILE (or a --config whose dataset_path is local), or --routing-input random")
        }
        var candidates = tokenizer.map { [$0] } ?? config?.hfAssetsCandidates ?? []
        if tokenizer == nil {
            let checkpoint = URL(fileURLWithPath: checkpoints[0])
            let folder = ModelLoader.isDirectory(checkpoint) ? checkpoint : checkpoint.deletingLastPathComponent()
            candidates.append(folder.appendingPathComponent("tokenizer.json").path)
        }
        guard let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
            throw AgreementError(
                description:
                    "no tokenizer for the routing text (tried \(candidates.isEmpty ? "nothing" : candidates.joined(separator: ", "))): pass --tokenizer PATH, or --routing-input random"
            )
        }
        let loadedTokenizer = try Tokenizer.load(from: URL(fileURLWithPath: found))
        return try .text(
            documents: try RoutingInput.documents(in: URL(fileURLWithPath: source)), source: source,
            tokenizer: loadedTokenizer, samples: samples, seqLen: length, seed: seed)
    }
}

/// A problem found after the arguments parsed (printed as one line by `reportingErrors`).
struct AgreementError: Error, CustomStringConvertible { let description: String }

/// `agreement --json`: every pair's agreement, with what was routed.
struct AgreementOutput: Encodable {
    struct Pair: Encodable {
        var from: String
        var to: String
        var agreement: RoutingAgreement
    }
    var checkpoints: [String]
    var routingInput: String
    var tokens: Int
    var tokenSetHash: String
    var pairs: [Pair]

    enum CodingKeys: String, CodingKey {
        case checkpoints, routingInput = "routing_input", tokens, tokenSetHash = "token_set_hash", pairs
    }
}
