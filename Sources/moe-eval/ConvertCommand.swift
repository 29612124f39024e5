import ArgumentParser
import Foundation
import MoECheckpoint
import MoEEval
import MoEModels
import MoETensor
import MoETokenizer

#if canImport(Glibc)
import Glibc
#endif

struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Convert a TorchTitan checkpoint to a HuggingFace DeepSeek-V3 (or V2) folder that transformers loads.",
        discussion: """
            Writes model-0000N-of-0000M.safetensors and model.safetensors.index.json (names and per-expert \
            splitting as TorchTitan's DeepSeekV3StateDictAdapter.to_hf), a config.json for transformers' \
            DeepseekV3ForCausalLM (DeepseekV2ForCausalLM for a softmax router without a selection bias, which it \
            reproduces) and the tokenizer files of the config's hf_assets_path. Tensors are streamed \
            one at a time; the folder is written beside --output and renamed into place when complete. \
            See docs/CONVERT.md for what transformers computes differently.

            Example:
              moe-eval convert --checkpoint outputs/checkpoint/step-1000 \\
                               --config train.toml --output hf/step-1000 \\
                               --dtype bf16 --max-shard-size 5GB
            """)

    @OptionGroup var model: ModelOptions

    @Option(
        name: [.customLong("output"), .customLong("output-dir"), .customLong("output_dir")],
        help: "Folder to create (must not exist or be empty, unless --overwrite).")
    var output: String

    @Option(help: "dtype of floating-point tensors: keep (as stored), bf16 or fp32. The routing bias stays fp32 under bf16.")
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
            let format = HFExportDType(rawValue: dtype)!
            let shardLimit = parseByteSize(maxShardSize)!
            let outputURL = URL(fileURLWithPath: output).standardizedFileURL
            let checkpointURL = spec.checkpoint.standardizedFileURL
            if Self.isSameOrInside(checkpointURL, outputURL) {
                throw ConvertError("\(outputURL.path): --output would contain the checkpoint \(checkpointURL.path); choose another folder")
            }

            if !randomWeights, let qwen3 = try Qwen3Args.resolve(spec) {
                try convertQwen3(qwen3, checkpoint: spec.checkpoint, format: format, shardLimit: shardLimit, outputURL: outputURL)
                return
            }
            if !randomWeights, let gptOss = try GptOssLoading.args(for: spec) {
                try convertGptOss(gptOss.args, origin: gptOss.origin, checkpoint: spec.checkpoint, output: outputURL)
                return
            }
            let opened: (any WeightSource)? = try randomWeights ? nil : openWeightSource(at: spec.checkpoint)
            var resolved = try ModelLoader.resolveArgs(spec, source: opened)
            if let layers {
                resolved.args.nLayers = layers
                resolved.args.nDenseLayers = min(resolved.args.nDenseLayers, layers)
            }
            let source: any WeightSource =
                opened ?? RandomWeightSource(args: resolved.args, dtype: format == .float32 ? .float32 : .bfloat16)
            if let config = resolved.config, config.modelName != "deepseek_v3" {
                throw ConvertError(
                    "\(config.path): [model] name \"\(config.modelName)\" is not supported (moe-eval converts \"deepseek_v3\")")
            }
            let args = resolved.args
            let problems = InspectCommand.mismatches(
                expected: args.expectedShapes(),
                actual: source.tensorInfos.filter { $0.value.elementCount > 0 }.mapValues(\.shape))
            if let first = problems.first {
                throw ConvertError(
                    "\(source.description): does not match the model args from \(resolved.origin): \(first)"
                        + (problems.count > 1 ? " (and \(problems.count - 1) more; see moe-eval inspect)" : ""))
            }
            var numerics = Numerics.resolve(
                args: args, namingEra: source.namingEra, era: spec.era,
                yarn: spec.yarn, finalNormEps: spec.finalNormEps)
            if let hf = resolved.hf, spec.yarn == nil, spec.era == nil {
                numerics.yarn = hf.yarn
                numerics.finalNormEps = spec.finalNormEps ?? hf.finalNormEps
                numerics.origin = "HF config (rope_scaling, rms_norm_eps)"
            }

            let tokenizerFolder = try resolveTokenizerFolder(config: resolved.config)
            if let tokenizerFolder, Self.isSameOrInside(tokenizerFolder, outputURL) {
                throw ConvertError(
                    "\(outputURL.path): --output would contain the tokenizer folder \(tokenizerFolder.path); choose another folder")
            }
            let tokenizerCopies = try tokenizerFolder.map { try Self.tokenizerFilesToCopy(in: $0) } ?? []
            let loadedTokenizer = try tokenizerFolder.flatMap { folder -> Tokenizer? in
                guard tokenizerCopies.contains(where: { $0.lastPathComponent == "tokenizer.json" }) else { return nil }
                return try Tokenizer.load(from: folder)
            }

            let routingBiasIsZero = try HFExport.routingBiasIsZero(in: source)
            let architecture = HFConfigExport.architecture(args: args, routingBiasIsZero: routingBiasIsZero).architecture
            let plan = try HFExportPlan(
                source: source, dtype: format, maxShardSize: shardLimit,
                routingBias: architecture.hasRoutingBias)
            let configText = try HFConfigExport.configJSON(
                args: args, numerics: numerics, torchDType: Self.torchDType(of: plan),
                bosTokenId: loadedTokenizer?.bosTokenId, eosTokenId: loadedTokenizer?.eosTokenId, architecture: architecture)

            let progress = Progress(quiet: quiet)
            let stage = try StagedOutputFolder(destination: outputURL, overwrite: overwrite)
            do {
                try HFExport.write(plan, from: source, into: stage.staging) { done, total in
                    if done == total || done % 64 == 0 { progress.update("writing tensors \(Progress.bar(done, total))") }
                }
                try stage.write(Data(configText.utf8), to: "config.json")
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
            progress.done("wrote \(plan.tensors.count) tensors")

            let dtypes = Set(plan.tensors.map(\.dtype.torchName)).sorted().joined(separator: ", ")
            print("converted \(source.description) → \(outputURL.path)")
            print(
                "  weights: \(plan.tensors.count) tensors (\(dtypes)), \(InspectCommand.formatBytes(plan.totalSize)) in \(plan.shards.count) file\(plan.shards.count == 1 ? "" : "s") (max \(maxShardSize))"
            )
            print(
                "  config.json: \(architecture.rawValue) (\(architecture.modelType)), model args from \(resolved.origin); \(numerics.yarn ? "YaRN" : "no rope scaling"), final norm eps \(numerics.finalNormEps) (\(numerics.origin))"
            )
            if let tokenizerFolder {
                print("  tokenizer: \(tokenizerCopies.map(\.lastPathComponent).joined(separator: ", ")) from \(tokenizerFolder.path)")
            } else {
                print("  tokenizer: none copied")
            }
            let differences = HFConfigExport.transformersDifferences(args: args, numerics: numerics, routingBiasIsZero: routingBiasIsZero)
            for note in differences { printError("note: \(note)") }
        }
    }

    /// gpt-oss → `GptOssForCausalLM` (GptOssHFExport): weights, index and config.json; tokenizer files from `--tokenizer`.
    func convertGptOss(_ args: GptOssArgs, origin: String, checkpoint: URL, output outputURL: URL) throws {
        let weights = try GptOssWeightSet(store: GptOssWeights.openStore(at: checkpoint), args: args)
        let format = HFExportDType(rawValue: dtype)!
        let target: DType? = format == .bfloat16 ? .bfloat16 : format == .float32 ? .float32 : nil
        let tokenizerFolder = try resolveTokenizerFolder(config: nil)
        let tokenizerCopies = try tokenizerFolder.map { try Self.tokenizerFilesToCopy(in: $0) } ?? []
        let stage = try StagedOutputFolder(destination: outputURL, overwrite: overwrite)
        let summary: GptOssHFExport.Summary
        do {
            summary = try GptOssHFExport.write(weights, dtype: target, maxShardSize: parseByteSize(maxShardSize)!, into: stage.staging)
            for file in tokenizerCopies { try stage.write(try Data(contentsOf: file), to: file.lastPathComponent) }
            try stage.commit()
        } catch {
            stage.discard()
            throw ConvertError("\(outputURL.path): not written, nothing left behind: \(error)")
        }
        print("converted \(weights.description) → \(outputURL.path)")
        print(
            "  weights: \(summary.tensors) tensors (\(summary.dtypes.sorted().joined(separator: ", "))), \(InspectCommand.formatBytes(summary.bytes)) in \(summary.files.count) file\(summary.files.count == 1 ? "" : "s")"
        )
        print("  config.json: gpt_oss (GptOssForCausalLM), model args from \(origin)")
        for note in summary.notes { printError("note: \(note)") }
    }

    /// Qwen3-MoE to `Qwen3MoeForCausalLM` (Qwen3HFExport): the same staging, shards and tokenizer copy.
    func convertQwen3(
        _ resolved: (args: Qwen3Args, origin: String, config: TrainConfig?), checkpoint: URL,
        format: HFExportDType, shardLimit: Int, outputURL: URL
    ) throws {
        let source = try Qwen3WeightSource.open(at: checkpoint, args: resolved.args)
        let tokenizerFolder = try resolveTokenizerFolder(config: resolved.config)
        if let tokenizerFolder, Self.isSameOrInside(tokenizerFolder, outputURL) {
            throw ConvertError(
                "\(outputURL.path): --output would contain the tokenizer folder \(tokenizerFolder.path); choose another folder")
        }
        let tokenizerCopies = try tokenizerFolder.map { try Self.tokenizerFilesToCopy(in: $0) } ?? []
        let progress = Progress(quiet: quiet)
        let stage = try StagedOutputFolder(destination: outputURL, overwrite: overwrite)
        let written: (plan: HFExportPlan, notes: [String])
        do {
            written = try Qwen3HFExport.write(
                source: source, args: resolved.args, dtype: format, maxShardSize: shardLimit,
                into: stage.staging
            ) { done, total in
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
        let plan = written.plan
        progress.done("wrote \(plan.tensors.count) tensors")
        let dtypes = Set(plan.tensors.map(\.dtype.torchName)).sorted().joined(separator: ", ")
        print("converted \(source.description) → \(outputURL.path)")
        print(
            "  weights: \(plan.tensors.count) tensors (\(dtypes)), \(InspectCommand.formatBytes(plan.totalSize)) in \(plan.shards.count) file\(plan.shards.count == 1 ? "" : "s") (max \(maxShardSize))"
        )
        print("  config.json: qwen3_moe (Qwen3MoeForCausalLM), model args from \(resolved.origin)")
        print(
            "  tokenizer: "
                + (tokenizerFolder.map { "\(tokenizerCopies.map(\.lastPathComponent).joined(separator: ", ")) from \($0.path)" }
                    ?? "none copied"))
        for note in written.notes { printError("note: \(note)") }
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

    /// The dtype most of the weight bytes are in, as transformers names it.
    static func torchDType(of plan: HFExportPlan) -> String {
        var bytes: [String: Int] = [:]
        for t in plan.tensors where t.dtype.isFloatingPoint { bytes[t.dtype.torchName, default: 0] += t.byteCount }
        return bytes.max { $0.value < $1.value }?.key ?? "float32"
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
