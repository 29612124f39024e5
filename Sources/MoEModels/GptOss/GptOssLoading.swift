import Foundation
import MoEJSON

/// Whether a model spec (the CLI's options) names a gpt-oss model, and its args: `--module gpt_oss --config NAME`,
/// a `--model-args` file tagged `"family": "gpt_oss"` (or with gpt-oss's fields), or an HF `config.json` of
/// model_type gpt_oss beside the checkpoint.
public enum GptOssLoading {
    public static func args(for spec: ModelSpec) throws -> (args: GptOssArgs, origin: String)? {
        if let name = spec.registryConfig, spec.config == nil,
            spec.registryModule == GptOssConfigs.module || (spec.registryModule == nil && GptOssConfigs.entry(name) != nil)
        {
            return (try GptOssConfigs.args(config: name, seqLen: spec.seqLen).args, "--module gpt_oss --config \(name)")
        }
        if let file = spec.modelArgs {
            guard let data = try? Data(contentsOf: file), let object = (try? JSONValue.parse([UInt8](data)))?.objectValue,
                GptOssArgs.describesGptOss(object["model_args"]?.objectValue ?? object)
            else { return nil }
            var args = try GptOssArgs.load(jsonFile: file)
            if let seqLen = spec.seqLen { args.maxSeqLen = seqLen; try args.validate() }
            return (args, "model args file \(file.path)")
        }
        if spec.registryConfig != nil || spec.config != nil || spec.flavor != nil { return nil }
        let folder = ModelLoader.isDirectory(spec.checkpoint) ? spec.checkpoint : spec.checkpoint.deletingLastPathComponent()
        let hf = folder.appendingPathComponent("config.json")
        guard let data = try? Data(contentsOf: hf), let object = (try? JSONValue.parse([UInt8](data)))?.objectValue,
            object["model_type"]?.stringValue == GptOssArgs.family
        else { return nil }
        var args = try GptOssArgs.fromHFConfig(object, source: hf.path)
        if let seqLen = spec.seqLen { args.maxSeqLen = seqLen; try args.validate() }
        return (args, "HF config \(hf.path)")
    }
}
