import Foundation
import FuzzSupport
import MoEEval
import MoEJSON

// The one JSON reader, strict and with Python's NaN/Infinity; what it reads is written back out. The same bytes
// as a results file, as compare/report read it, and its `routed_experts` (base64 ids checked against `tokens`).
runFuzzer { bytes in
    if let value = try? JSONValue.parse(bytes) {
        _ = value.serialized
        _ = value.prettyPrinted
    }
    if let file = try? ResultsFile.parse(Data(bytes), path: "fuzz-results.json"),
       let routed = file.root["routed_experts"]?.objectValue {
        _ = try? RoutedExperts.parse(routed, path: file.path)
    }
    let lenient = try JSONValue.parse(bytes, maxDepth: 64, allowNonFinite: true)
    _ = lenient.serialized
}
