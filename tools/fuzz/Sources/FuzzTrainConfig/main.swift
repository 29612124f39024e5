import FuzzSupport
import MoEModels

// A TorchTitan TOML train config (TOMLKit), then the model arguments it names and their validation.
runFuzzer { bytes in
    let config = try TrainConfig.parse(String(decoding: bytes, as: UTF8.self), path: "fuzz.toml")
    _ = config.json.count
    let args = try config.modelArgs()
    try args.validate()
}
