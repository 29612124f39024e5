import Foundation
import FuzzSupport
import MoEJSON
import MoEModels

// A `--model-args` JSON file or an HF config.json of every family: decoding, validation, then the shapes and
// counts derived from valid arguments. Each family's reader sees the same bytes; most inputs are refused.
runFuzzer { bytes in
    if let args = try? ModelArgs.decode(json: Data(bytes), source: "fuzz-model-args.json"), (try? args.validate()) != nil {
        _ = args.expectedShapes()
        _ = args.parameterCounts()
    }
    if let args = try? Qwen3Args.decode(json: bytes, source: "fuzz-model-args.json"), (try? args.validate()) != nil {
        _ = args.parameterCounts()
    }
    if let object = (try? JSONValue.parse(bytes))?.objectValue {
        _ = try? Qwen3Args.parse(hfConfig: object, source: "fuzz-config.json")
        _ = try? GptOssArgs.fromHFConfig(object, source: "fuzz-config.json")
    }
    let args = try GptOssArgs.decode(json: Data(bytes), source: "fuzz-model-args.json")
    try args.validate()
    _ = try args.parameterCounts()
}
