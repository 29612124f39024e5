import ArgumentParser
import Foundation
import MoECheckpoint
import MoEEval
import MoEModels
import MoETokenizer

#if canImport(Glibc)
import Glibc
#endif

struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert a TorchTitan checkpoint to the HuggingFace folder of its model family that transformers loads.",
        discussion: """
            The family is the one the model options select (--module, the model-args file's "family", the HF \
            config.json beside the weights): deepseek_v3 and kimi_k2_7 become DeepseekV3ForCausalLM \
            (DeepseekV2ForCausalLM for a softmax router without a selection bias, which it reproduces), qwen3 \
            becomes Qwen3MoeForCausalLM, gpt_oss becomes GptOssForCausalLM. Writes safetensors shards and \
            model.safetensors.index.json (names and per-expert splitting as the family's TorchTitan \
            StateDictAdapter.to_hf), a config.json, and the tokenizer files of the config's hf_assets_path. \
            Tensors are streamed one at a time; the folder is written beside --output and renamed into place \
            when complete. See docs/CONVERT.md for what transformers computes differently.

            Examples:
              moe-eval convert --checkpoint outputs/checkpoint/step-1000 \\
                               --config train.toml --output hf/step-1000 \\
                               --dtype bf16 --max-shard-size 5GB
              moe-eval convert --checkpoint outputs/checkpoint/step-1000 \\
                               --module qwen3 --config qwen3_30b_a3b --output hf/qwen3
            """)

    @OptionGroup var model: ModelOptions

    @Option(
        name: [.customLong("output"), .customLong("output-dir"), .customLong("output_dir")],
        help: "Folder to create (must not exist or be empty, unless --overwrite).")
    var output: String

    @Option(help: "dtype of floating-point tensors: keep (as stored), bf16 or fp32. DeepSeek-V3's routing bias stays fp32 under bf16.")
    var dtype: String = "keep"

    @Option(
        name: [.customLong("max-shard-size"), .customLong("max_shard_size")],
        help: "Largest safetensors file, e.g. 5GB, 500MB, 2KB (decimal), 4GiB (binary) or a byte count.")
    var maxShardSize: String = "5GB"

    @Option(help: "Tokenizer folder (or tokenizer.json) to copy instead of the config's [model] hf_assets_path.")
    var tokenizer: String?

    @Flag(name: .customLong("no-tokenizer"), help: "Copy no tokenizer files.")
    var noTokenizer = false

    @Flag(help: "Replace --output if it exists and is not empty (only once the new folder is complete).")
    var overwrite = false

    @Flag(help: "No progress on stderr.")
    var quiet = false

    @Flag(
        name: .customLong("random-weights"),
        help: "Export bench's deterministic random weights with the shapes of --flavor/--model-args instead of a checkpoint.")
    var randomWeights = false

    @Option(help: "With --random-weights: override the number of layers (e.g. 16B shapes on 2 layers).")
    var layers: Int?

    /// Files of an HF tokenizer (transformers' fast and slow tokenizers), copied when present.
    static let tokenizerFiles = [
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
        "vocab.json", "merges.txt", "added_tokens.json",
    ]

    func validate() throws {
        guard HFExportDType(rawValue: dtype) != nil else {
            throw ValidationError("--dtype must be keep, bf16 or fp32, not \"\(dtype)\"")
        }
        guard parseByteSize(maxShardSize) != nil else {
            throw ValidationError("--max-shard-size must be a positive size such as 5GB, 500MB, 2KB or 4GiB, not \"\(maxShardSize)\"")
        }
        if tokenizer != nil && noTokenizer { throw ValidationError("--tokenizer and --no-tokenizer exclude each other") }
        if randomWeights && model.checkpoint != nil { throw ValidationError("--random-weights and --checkpoint exclude each other") }
        if !randomWeights && model.checkpoint == nil { throw ValidationError("--checkpoint is required (or --random-weights)") }
        if let layers, !randomWeights || layers < 1 { throw ValidationError("--layers needs --random-weights and must be ≥ 1") }
    }

    func run() throws {
        try reportingErrors {
            // A write past a file-size limit reports EFBIG instead of killing the process, so it ends in a clear error.
            signal(SIGXFSZ, SIG_IGN)
            // Random weights have no checkpoint; the path is only compared with --output.
            let spec = try randomWeights ? model.spec(defaultCheckpoint: "/dev/null") : model.spec()
            let outputURL = URL(fileURLWithPath: output).standardizedFileURL
            let checkpointURL = spec.checkpoint.standardizedFileURL
            if Self.isSameOrInside(checkpointURL, outputURL) {
                throw ConvertError("\(outputURL.path): --output would contain the checkpoint \(checkpointURL.path); choose another folder")
            }
            let request = HFConversionRequest(
                spec: spec, dtype: HFExportDType(rawValue: dtype)!, maxShardSize: parseByteSize(maxShardSize)!,
                randomWeights: randomWeights ? .init(layers: layers) : nil)
            let conversion = try ModelRegistry.hfConversion(request).conversion

            let tokenizerFolder = try resolveTokenizerFolder(config: conversion.trainConfig)
            if let tokenizerFolder, Self.isSameOrInside(tokenizerFolder, outputURL) {
                throw ConvertError(
                    "\(outputURL.path): --output would contain the tokenizer folder \(tokenizerFolder.path); choose another folder")
            }
            let tokenizerCopies = try tokenizerFolder.map { try Self.tokenizerFilesToCopy(in: $0) } ?? []
            let loadedTokenizer = try tokenizerFolder.flatMap { folder -> Tokenizer? in
                guard tokenizerCopies.contains(where: { $0.lastPathComponent == "tokenizer.json" }) else { return nil }
                return try Tokenizer.load(from: folder)
            }
            let specialTokens = HFSpecialTokens(bos: loadedTokenizer?.bosTokenId, eos: loadedTokenizer?.eosTokenId)

            let progress = Progress(quiet: quiet)
            let stage = try StagedOutputFolder(destination: outputURL, overwrite: overwrite)
            let summary: HFConversionSummary
            do {
                summary = try conversion.write(stage.staging, specialTokens) { done, total in
                    if done == total || done % 64 == 0 { progress.update("writing tensors \(Progress.bar(done, total))") }
                }
                for file in tokenizerCopies {
                    let data: Data
                    do { data = try Data(contentsOf: file) } catch {
                        throw ConvertError("\(file.path): cannot read (\(error.localizedDescription))")
                    }
                    try stage.write(data, to: file.lastPathComponent)
                }
                try stage.commit()
            } catch {
                stage.discard()
                throw ConvertError("\(outputURL.path): not written, nothing left behind: \(error)")
            }
            progress.done("wrote \(summary.tensors) tensors")

            print("converted \(conversion.sourceDescription) → \(outputURL.path)")
            print(
                "  weights: \(summary.tensors) tensors (\(summary.dtypes.joined(separator: ", "))), \(InspectCommand.formatBytes(summary.bytes)) in \(summary.files) file\(summary.files == 1 ? "" : "s") (max \(maxShardSize))"
            )
            print("  config.json: \(summary.config)")
            if let tokenizerFolder {
                print("  tokenizer: \(tokenizerCopies.map(\.lastPathComponent).joined(separator: ", ")) from \(tokenizerFolder.path)")
            } else {
                print("  tokenizer: none copied")
            }
            for note in summary.notes { printError("note: \(note)") }
        }
    }

    /// `--tokenizer`, else the config's `[model] hf_assets_path`; nil with `--no-tokenizer`.
    func resolveTokenizerFolder(config: TrainConfig?) throws -> URL? {
        noTokenizer ? nil : try ModelInputs.tokenizerFolder(explicit: tokenizer, config: config)
    }

    static func tokenizerFilesToCopy(in folder: URL) throws -> [URL] {
        let files = tokenizerFiles.map { folder.appendingPathComponent($0) }
            .filter { FileManager.default.fileExists(atPath: $0.path) }
        guard !files.isEmpty else {
            throw ConvertError(
                "\(folder.path): no tokenizer files (\(tokenizerFiles.joined(separator: ", "))); pass --tokenizer PATH or --no-tokenizer")
        }
        return files
    }

    static func isSameOrInside(_ inner: URL, _ outer: URL) -> Bool {
        let a = inner.resolvingSymlinksInPath().path, b = outer.resolvingSymlinksInPath().path
        return a == b || a.hasPrefix(b.hasSuffix("/") ? b : b + "/")
    }
}

struct ConvertError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
