import Foundation
import MoEJSON

/// A HuggingFace `tokenizer.json` BPE tokenizer that gives the ids the Rust `tokenizers` library
/// gives, plus the BOS/EOS handling of TorchTitan's `HuggingFaceTokenizer` wrapper when a
/// `tokenizer_config.json` sits beside it.
///
/// ```swift
/// let tokenizer = try Tokenizer.load(from: URL(fileURLWithPath: "assets/tokenizers/demo-dsv3"))
/// let ids = tokenizer.encode("Hello world")          // [bos, ...]
/// let text = tokenizer.decode(ids, skipSpecialTokens: true)
/// ```
///
/// Safe to use from many threads at once.
public final class Tokenizer: Sendable {
    let model: BPEModel
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let postProcessor: PostProcessor?
    let decoder: Decoder?
    let addedVocabulary: AddedVocabulary
    private let truncation: Truncation?
    /// From tokenizer_config.json's `add_bos_token` / `add_eos_token` (TorchTitan applies them
    /// only when the post-processor did not already add the token).
    private let addsBosAfterProcessing: Bool
    private let addsEosAfterProcessing: Bool
    private let scratchPool = ScratchPool()

    /// The beginning-of-sequence id: tokenizer_config.json's `bos_token`, else the special token
    /// the post-processor's template puts before the text.
    public let bosTokenId: Int?
    /// The end-of-sequence id: tokenizer_config.json's `eos_token`, else the special token the
    /// post-processor's template puts after the text.
    public let eosTokenId: Int?
    /// tokenizer_config.json's `pad_token`, if any.
    public let padTokenId: Int?
    /// One more than the largest id of the vocabulary and added tokens.
    public let vocabSize: Int

    struct Truncation: Sendable {
        var maximumLength: Int
        var fromLeft: Bool
    }

    // MARK: loading

    /// Loads `tokenizer.json` (or `tokenizer.json.gz`) from a folder, or a given tokenizer file;
    /// a `tokenizer_config.json` in the same folder is used for BOS/EOS and extra special tokens.
    public static func load(from url: URL) throws -> Tokenizer {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw TokenizerError(file: url.path, "no such file or folder")
        }
        let tokenizerURL: URL
        let folder: URL
        if isDirectory.boolValue {
            folder = url
            let plain = url.appendingPathComponent("tokenizer.json")
            let compressed = url.appendingPathComponent("tokenizer.json.gz")
            if FileManager.default.fileExists(atPath: plain.path) {
                tokenizerURL = plain
            } else if FileManager.default.fileExists(atPath: compressed.path) {
                tokenizerURL = compressed
            } else {
                throw TokenizerError(file: url.path, "the folder has no tokenizer.json")
            }
        } else {
            tokenizerURL = url
            folder = url.deletingLastPathComponent()
        }
        let tokenizerData = try read(tokenizerURL)
        let configURL = folder.appendingPathComponent("tokenizer_config.json")
        let configData = FileManager.default.fileExists(atPath: configURL.path) ? try read(configURL) : nil
        return try Tokenizer(
            tokenizerData: tokenizerData, configData: configData,
            source: tokenizerURL.path, configSource: configURL.path)
    }

    private static func read(_ url: URL) throws -> Data {
        do {
            return try Data(contentsOf: url)
        } catch {
            throw TokenizerError(file: url.path, "cannot read: \(error.localizedDescription)")
        }
    }

    /// Builds a tokenizer from the bytes of a tokenizer.json (gzip-compressed or not) and,
    /// optionally, of its tokenizer_config.json. `source` names the file in errors.
    public convenience init(
        tokenizerData: Data, configData: Data? = nil, source: String = "tokenizer.json",
        configSource: String = "tokenizer_config.json"
    ) throws {
        var bytes = [UInt8](tokenizerData)
        if Gzip.isGzip(bytes) { bytes = try Gzip.decompress(bytes, file: source) }
        let root = try JSONParser.parse(bytes, file: source)
        var config: JSONObject?
        if let configData {
            let configRoot = try JSONParser.parse([UInt8](configData), file: configSource)
            guard let object = configRoot.objectValue else {
                throw TokenizerError(file: configSource, "expected a JSON object, found \(configRoot.typeName)")
            }
            config = object
        }
        try self.init(json: root, config: config, source: source, configSource: configSource)
    }

    init(json root: JSONValue, config: JSONObject?, source: String, configSource: String) throws {
        let reader = ComponentReader(file: source)
        guard let json = root.objectValue else {
            throw TokenizerError(file: source, "expected a JSON object, found \(root.typeName)")
        }
        if let version = json["version"], !version.isNull, version.stringValue != "1.0" {
            throw TokenizerError(
                file: source, component: "version",
                "unknown tokenizer version '\(version.stringValue ?? version.typeName)'")
        }

        guard let modelValue = json["model"] else { throw TokenizerError(file: source, "missing 'model'") }
        let modelJSON = try reader.object(modelValue, "model")
        let modelType = modelJSON["type"]?.stringValue ?? (modelJSON["merges"] != nil ? "BPE" : "unknown")
        guard modelType == "BPE" else {
            throw TokenizerError(file: source, component: "model", "unsupported model type '\(modelType)' (only BPE is implemented)")
        }
        let model = try BPEModel(modelJSON, file: source, component: "model")
        let normalizer = try reader.normalizer(json["normalizer"] ?? .null, "normalizer")
        let postProcessor = try reader.postProcessor(json["post_processor"] ?? .null, "post_processor")
        self.model = model
        self.normalizer = normalizer
        self.postProcessor = postProcessor
        preTokenizer = try reader.preTokenizer(json["pre_tokenizer"] ?? .null, "pre_tokenizer")
        decoder = try reader.decoder(json["decoder"] ?? .null, "decoder")
        truncation = try Self.truncation(json["truncation"] ?? .null, reader)
        try Self.checkPadding(json["padding"] ?? .null, reader)

        var added = AddedVocabulary()
        if let list = json["added_tokens"], !list.isNull {
            guard let items = list.arrayValue else {
                throw reader.failure("added_tokens", "expected an array, found \(list.typeName)")
            }
            added.add(
                try items.enumerated().map { index, item in
                    try reader.addedToken(item, "added_tokens[\(index)]", specialByDefault: false)
                }, model: model, normalizer: normalizer)
        }

        var bosText: String?
        var eosText: String?
        var padText: String?
        var configAddsBos = false
        var configAddsEos = false
        if let config {
            let settings = try ConfigSpecialTokens(config, file: configSource)
            added.add(settings.tokens, model: model, normalizer: normalizer)
            bosText = settings.bos
            eosText = settings.eos
            padText = settings.pad
            configAddsBos = settings.addBos
            configAddsEos = settings.addEos
        }
        addedVocabulary = added

        let vocabulary = added
        func id(of text: String?) -> Int? {
            text.flatMap { vocabulary.idsByContent[$0] ?? model.id(of: $0) }
        }
        let template = postProcessor?.templateBoundaryIds
        let bos = bosText != nil ? id(of: bosText) : template?.first
        let eos = eosText != nil ? id(of: eosText) : template?.last
        bosTokenId = bos
        eosTokenId = eos
        padTokenId = id(of: padText)
        vocabSize = max(model.tokens.count, (added.tokensById.keys.max() ?? -1) + 1)
        addsBosAfterProcessing = configAddsBos
        addsEosAfterProcessing = configAddsEos
        // Whether the post-processor already adds them is decided as TorchTitan does: by encoding "".
        let processedEmpty = postProcessor?.process([], addSpecialTokens: true) ?? []
        postProcessorAddsBos = bos.map(processedEmpty.contains) ?? false
        postProcessorAddsEos = eos.map(processedEmpty.contains) ?? false
    }

    private let postProcessorAddsBos: Bool
    private let postProcessorAddsEos: Bool

    private static func truncation(_ value: JSONValue, _ reader: ComponentReader) throws -> Truncation? {
        if value.isNull { return nil }
        let json = try reader.object(value, "truncation")
        let direction = try reader.string(json, "direction", "truncation", default: "Right")
        guard direction == "Right" || direction == "Left" else {
            throw reader.failure("truncation", "unknown direction '\(direction)'")
        }
        return Truncation(maximumLength: try reader.int(json, "max_length", "truncation"), fromLeft: direction == "Left")
    }

    private static func checkPadding(_ value: JSONValue, _ reader: ComponentReader) throws {
        if value.isNull { return }
        let json = try reader.object(value, "padding")
        let padsToMultiple = !(json["pad_to_multiple_of"]?.isNull ?? true)
        guard json["strategy"]?.stringValue == "BatchLongest", !padsToMultiple else {
            throw reader.failure(
                "padding", "unsupported padding (only BatchLongest without pad_to_multiple_of, which leaves single sequences unpadded)")
        }
    }

    // MARK: encoding

    /// The token ids of `text`. With `addSpecialTokens` the post-processor's special tokens are
    /// added, and BOS/EOS as tokenizer_config.json's `add_bos_token`/`add_eos_token` ask.
    /// Added and special tokens written in the text are recognised either way.
    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int] {
        let scratch = scratchPool.take()
        defer { scratchPool.give(scratch) }
        // Moved out (not copied) so that growing them does not copy the pooled storage.
        var buffer = scratch.buffer
        var bpe = scratch.bpe
        var ids = scratch.ids
        scratch.buffer = PieceBuffer()
        scratch.bpe = BPEScratch()
        scratch.ids = []
        ids.removeAll(keepingCapacity: true)

        buffer.reset(with: text)
        addedVocabulary.splitRaw(&buffer)
        if addedVocabulary.hasNormalizedTokens || (normalizer.map { !$0.isIdentity } ?? false) {
            addedVocabulary.normalizeAndSplit(&buffer, normalizer: normalizer)
        }
        preTokenizer?.apply(to: &buffer)
        buffer.scalars.withUnsafeBufferPointer { scalars in
            for piece in buffer.pieces {
                if piece.token >= 0 {
                    ids.append(piece.token)
                } else if !piece.isEmpty {
                    model.tokenize(
                        UnsafeBufferPointer(rebasing: scalars[piece.start..<piece.end]), into: &ids,
                        scratch: &bpe)
                }
            }
        }
        var result = ids.map(Int.init)
        scratch.buffer = buffer
        scratch.bpe = bpe
        scratch.ids = ids

        if let truncation {
            let reserved = addSpecialTokens ? (postProcessor?.addedTokenCount ?? 0) : 0
            let limit = max(truncation.maximumLength - reserved, 0)
            if result.count > limit {
                result = truncation.fromLeft ? Array(result.suffix(limit)) : Array(result.prefix(limit))
            }
        }
        guard addSpecialTokens else { return result }
        if let postProcessor { result = postProcessor.process(result, addSpecialTokens: true) }
        if addsBosAfterProcessing, !postProcessorAddsBos, let bosTokenId { result.insert(bosTokenId, at: 0) }
        if addsEosAfterProcessing, !postProcessorAddsEos, let eosTokenId { result.append(eosTokenId) }
        return result
    }

    // MARK: decoding

    /// The text of `ids` through the tokenizer's decoder. Unknown ids are skipped; with
    /// `skipSpecialTokens`, so are special tokens.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        var tokens: [String] = []
        tokens.reserveCapacity(ids.count)
        for id in ids {
            guard let token = idToToken(id) else { continue }
            if skipSpecialTokens, addedVocabulary.isSpecial(token) { continue }
            tokens.append(token)
        }
        guard let decoder else { return tokens.joined(separator: " ") }
        return decoder.decode(tokens)
    }

    /// The token text of an id (an added token's normalized form, as tokenizers returns it).
    public func idToToken(_ id: Int) -> String? {
        addedVocabulary.decodedText(of: id) ?? model.token(for: id)
    }

    public func tokenToId(_ token: String) -> Int? {
        addedVocabulary.idsByContent[token] ?? model.id(of: token)
    }

}

/// The special tokens TorchTitan's `HuggingFaceTokenizer` takes from tokenizer_config.json: the
/// standard `*_token` keys, then `added_tokens_decoder`, all registered as special tokens.
struct ConfigSpecialTokens {
    var tokens: [AddedToken] = []
    var bos: String?
    var eos: String?
    var pad: String?
    var addBos = false
    var addEos = false
    private static let standardKeys = [
        "bos_token", "eos_token", "pad_token", "unk_token", "sep_token", "cls_token",
        "mask_token",
    ]

    init(_ config: JSONObject, file: String) throws {
        func failure(_ key: String, _ message: String) -> TokenizerError {
            TokenizerError(file: file, component: key, message)
        }
        func token(_ value: JSONValue, content: String) -> AddedToken {
            guard let json = value.objectValue else {
                return AddedToken(content: content, normalized: false, special: true)
            }
            return AddedToken(
                content: content, singleWord: json["single_word"]?.boolValue ?? false,
                lstrip: json["lstrip"]?.boolValue ?? false, rstrip: json["rstrip"]?.boolValue ?? false,
                normalized: json["normalized"]?.boolValue ?? true, special: true)
        }
        func text(_ key: String) throws -> String? {
            guard let value = config[key], !value.isNull else { return nil }
            if let text = value.stringValue { return text }
            if let object = value.objectValue {
                guard let content = object["content"]?.stringValue else { throw failure(key, "has no 'content'") }
                return content
            }
            throw failure(key, "expected a string or an object with 'content', found \(value.typeName)")
        }
        for key in Self.standardKeys {
            if let content = try text(key), let value = config[key] {
                tokens.append(token(value, content: content))
            }
        }
        if let decoderValue = config["added_tokens_decoder"], !decoderValue.isNull {
            guard let entries = decoderValue.objectValue else {
                throw failure("added_tokens_decoder", "expected an object, found \(decoderValue.typeName)")
            }
            for (_, value) in entries.entries {
                if let content = value.objectValue?["content"]?.stringValue {
                    tokens.append(token(value, content: content))
                }
            }
        }
        bos = try text("bos_token")
        eos = try text("eos_token")
        pad = try text("pad_token")
        addBos = config["add_bos_token"]?.boolValue ?? false
        addEos = config["add_eos_token"]?.boolValue ?? false
    }
}

/// Working buffers for encode calls, reused so that encoding does not allocate per call.
final class EncodeScratch: @unchecked Sendable {
    // @unchecked: a scratch object is used by one encode call at a time (the pool hands it out).
    var buffer = PieceBuffer()
    var bpe = BPEScratch()
    var ids: [Int32] = []
}

final class ScratchPool: @unchecked Sendable {
    // @unchecked: `free` is only touched with `lock` held.
    private let lock = NSLock()
    private var free: [EncodeScratch] = []
    private static let keptObjects = 16
    private static let keptScalars = 1 << 20

    func take() -> EncodeScratch {
        lock.lock()
        defer { lock.unlock() }
        return free.popLast() ?? EncodeScratch()
    }

    func give(_ scratch: EncodeScratch) {
        // Buffers grown by a huge input are dropped rather than kept forever.
        guard scratch.buffer.scalars.capacity <= Self.keptScalars else { return }
        lock.lock()
        defer { lock.unlock() }
        if free.count < Self.keptObjects { free.append(scratch) }
    }
}
