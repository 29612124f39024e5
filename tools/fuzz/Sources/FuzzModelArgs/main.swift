import Foundation
import FuzzSupport
import MoEModels

// A `--model-args` JSON file: decoding, validation, then the shapes and counts derived from valid arguments.
runFuzzer { bytes in
    let args = try ModelArgs.decode(json: Data(bytes), source: "fuzz-model-args.json")
    try args.validate()
    _ = args.expectedShapes()
    _ = args.parameterCounts()
}
