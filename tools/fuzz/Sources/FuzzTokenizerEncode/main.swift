import Foundation
import FuzzSupport
import MoETokenizer

// A real tokenizer (FUZZ_TOKENIZER, set by run.sh) encoding and decoding the input as text.
let tokenizerPath = ProcessInfo.processInfo.environment["FUZZ_TOKENIZER"] ?? "assets/tokenizers/demo-dsv3/tokenizer.json"
let tokenizer: Tokenizer
do {
    tokenizer = try withoutLeakChecking { try Tokenizer.load(from: URL(fileURLWithPath: tokenizerPath)) }
} catch {
    FileHandle.standardError.write(Data("FuzzTokenizerEncode: cannot load \(tokenizerPath): \(error)\n".utf8))
    exit(2)
}

runFuzzer { bytes in
    let text = String(decoding: bytes, as: UTF8.self)
    let ids = tokenizer.encode(text)
    _ = tokenizer.decode(ids)
    _ = tokenizer.encode(text, addSpecialTokens: false)
}
