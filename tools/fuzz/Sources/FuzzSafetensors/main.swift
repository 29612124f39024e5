import FuzzSupport
import MoECheckpoint

// One `.safetensors` file: the header, the data offsets, then every tensor view read end to end.
runFuzzer { bytes in
    let file = try SafetensorsFile(url: ScratchFolder.write(bytes, as: "fuzz.safetensors"))
    for name in file.names {
        _ = touchAll(try file.load(name).bytes)
    }
}
