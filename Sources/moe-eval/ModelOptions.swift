import ArgumentParser
import Foundation
import MoECore
import MoEModels
import MoETensor

/// Options every command that loads a model shares (the seed's snake_case spellings are aliases).
struct ModelOptions: ParsableArguments {
    @Option(
        name: [.customLong("checkpoint"), .customLong("checkpoint_dir"), .customLong("checkpoint-dir")],
        help: "TorchTitan DCP folder (.metadata + *.distcp), or HF safetensors file/folder.")
    var checkpoint: String?

    @Option(
        name: [.customLong("config"), .customLong("config_file"), .customLong("config-file")],
        help: ArgumentHelp(
            "TorchTitan train config: a TOML file (0.2.x), or a 0.3 registry name such as deepseek_v3_debugmodel.",
            discussion:
                "A path that names an existing file is read as TOML; anything else is a TorchTitan 0.3.0 config_registry function (with --module), resolved to the same model args, seq_len, hf_assets_path and dump folder."
        ))
    var config: String?

    @Option(
        help:
            "TorchTitan 0.3 module of a registry --config: \(ConfigRegistry.modules.joined(separator: ", ")) (optional when the name is unique)."
    )
    var module: String?

    @Option(
        name: [.customLong("training.seq_len"), .customLong("training-seq-len")],
        help: "Override the training seq_len (and so max_seq_len) of --config or --model-args, as TorchTitan's --training.seq_len does.")
    var trainingSeqLen: Int?

    @Option(
        name: [.customLong("model-args"), .customLong("model_args")],
        help: "Model args JSON with TorchTitan field names (dim, n_layers, moe_args{…}, max_seq_len, …).")
    var modelArgs: String?

    @Option(help: "Built-in deepseek_v3 flavor: debugmodel, 16B, 236B, 671B, 10B.")
    var flavor: String?

    @Option(help: "TorchTitan code era whose numerics to follow: 0.2 or 0.3 (default: from the checkpoint's key names).")
    var era: String?

    @Option(help: "Force YaRN rope scaling on or off (default: the era's rule).")
    var yarn: String?

    @Option(name: .customLong("final-norm-eps"), help: "Override the final RMSNorm eps (default: the era's value).")
    var finalNormEps: Float?

    @Option(help: "Compute threads (BLAS and our own loops). Default: all cores, divided among the processes mpirun started on this host.")
    var threads: Int?

    func validate() throws {
        if let era, CodeEra(rawValue: era) == nil { throw ValidationError("--era must be 0.2 or 0.3, not \"\(era)\"") }
        if let yarn, !["on", "off"].contains(yarn) { throw ValidationError("--yarn must be on or off, not \"\(yarn)\"") }
        if let threads, threads < 1 { throw ValidationError("--threads must be ≥ 1") }
        if let trainingSeqLen, trainingSeqLen < 1 { throw ValidationError("--training.seq_len must be ≥ 1") }
        if let module {
            guard let config else {
                throw ValidationError("--module \(module) needs --config NAME (a TorchTitan 0.3 config of that module)")
            }
            if Self.namesFile(config) {
                throw ValidationError(
                    "--module \(module) goes with a registry config name, but --config \(config) is a file (read as TOML); drop --module")
            }
        }
    }

    /// `--config` is a TOML path when it names an existing file, else a registry name.
    static func namesFile(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && !isDirectory.boolValue
    }

    func spec(defaultCheckpoint: String? = nil) throws -> ModelSpec {
        guard let path = checkpoint ?? defaultCheckpoint else {
            throw ValidationError("--checkpoint is required")
        }
        if let threads { Compute.setThreads(threads) }
        let configFile = config.flatMap { Self.namesFile($0) ? URL(fileURLWithPath: $0) : nil }
        return ModelSpec(
            checkpoint: URL(fileURLWithPath: path),
            config: configFile,
            modelArgs: modelArgs.map { URL(fileURLWithPath: $0) },
            flavor: flavor,
            era: era.flatMap(CodeEra.init(rawValue:)),
            yarn: yarn.map { $0 == "on" },
            finalNormEps: finalNormEps,
            registryModule: module,
            registryConfig: configFile == nil ? config : nil,
            seqLen: trainingSeqLen)
    }
}

/// Prints an error as one line on stderr and exits 1, instead of a crash or a stack of messages.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as ExitCode {
        throw error
    } catch let error as ValidationError {
        throw error
    } catch {
        printError("error: \(String(describing: error))")
        throw ExitCode(1)
    }
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data((TerminalText.sanitized(message) + "\n").utf8))
}
