import FuzzSupport
import MoEJSON

// The one JSON reader, strict and with Python's NaN/Infinity; what it reads is written back out.
runFuzzer { bytes in
    if let value = try? JSONValue.parse(bytes) {
        _ = value.serialized
        _ = value.prettyPrinted
    }
    let lenient = try JSONValue.parse(bytes, maxDepth: 64, allowNonFinite: true)
    _ = lenient.serialized
}
