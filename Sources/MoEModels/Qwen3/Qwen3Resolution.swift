import Foundation
import MoEJSON

extension Qwen3Args {
    /// The qwen3 args the options name, or nil when they name another family: a `--model-args` file with
    /// `"family": "qwen3"`, a `--module qwen3` registry config, or an HF `config.json` (model_type `qwen3_moe`)
    /// beside the weights — in that order, as `ModelLoader.resolveArgs` ranks them.
    public static func resolve(_ spec: ModelSpec) throws -> (args: Qwen3Args, origin: String, config: TrainConfig?)? {
        let config = try spec.loadTrainConfig()
        if let file = spec.modelArgs {
            guard let bytes = try? Array(Data(contentsOf: file)), let value = try? JSONValue.parse(bytes),
                (value["model_args"] ?? value)["family"]?.stringValue == familyName
            else { return nil }
            var args = try load(jsonFile: file)
            if let seqLen = spec.seqLen { args.maxSeqLen = seqLen; try args.validate() }
            return (args, "model args file \(file.path)", config)
        }
        if let args = config?.familyArgs as? Qwen3Args {
            return (args, "config \(config!.path) (flavor \(config!.flavor), seq_len \(config!.seqLen))", config)
        }
        if config != nil { return nil }
        let hfConfig =
            ModelLoader.isDirectory(spec.checkpoint)
            ? spec.checkpoint.appendingPathComponent("config.json")
            : spec.checkpoint.deletingLastPathComponent().appendingPathComponent("config.json")
        guard let bytes = try? Array(Data(contentsOf: hfConfig)), let value = try? JSONValue.parse(bytes),
            value["model_type"]?.stringValue == hfModelType
        else { return nil }
        var args = try load(hfConfig: hfConfig)
        if let seqLen = spec.seqLen { args.maxSeqLen = seqLen; try args.validate() }
        return (args, "HF config \(hfConfig.path)", nil)
    }

    static let familyName = "qwen3"
}
