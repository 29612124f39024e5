import Foundation
import FuzzSupport
import MoETokenizer

// The run of "a" ending in "!" is bait for nested quantifiers in Split patterns (`(a+)+$` backtracks forever).
let sample =
    "Hello, world! It's 2026: naïve café 東京 🙂 <|endoftext|>\n\t  spaces   and\r\nnumbers 12345 "
    + String(repeating: "a", count: 40) + "!"

// A tokenizer.json (plain or gzip) loaded from the input, then used on a fixed text.
runFuzzer { bytes in
    let tokenizer = try Tokenizer(tokenizerData: Data(bytes), source: "fuzz-tokenizer.json")
    let ids = tokenizer.encode(sample)
    _ = tokenizer.decode(ids)
    _ = tokenizer.decode(ids, skipSpecialTokens: true)
}
