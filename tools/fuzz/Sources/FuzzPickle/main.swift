import FuzzSupport
import MoECheckpoint

// The allowlist unpickler on arbitrary bytes; printing the result walks every value it built.
runFuzzer { bytes in
    let value = try Unpickler.load(bytes, source: "fuzz.pkl")
    _ = value.description
}
