import Foundation
import MoEJSON
import MoETokenizer

/// Token sequences fed to the model for routing analysis.
public struct RoutingInput: Sendable {
    public enum Kind: String, Sendable { case text, random }
    public let kind: Kind
    /// `samples` rows of `seqLen` ids.
    public let sequences: [[Int32]]
    /// Where the text came from ("random token ids" for `.random`).
    public let source: String
    /// Tokens in the whole text (0 for random input).
    public let availableTokens: Int
    /// True when the text was too short for disjoint windows, so windows overlap.
    public let windowsOverlap: Bool

    public struct InputError: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    /// File kinds a routing-text folder may hold, as the `datasets` library's folder loader picks them up.
    public static let folderExtensions = ["json", "jsonl", "txt"]

    /// The documents of a data file or folder: plain text is one document; `.json`/`.jsonl` give one per record's
    /// `text` field (TorchTitan's c4 layout: JSON Lines, or one JSON array of objects). A folder (TorchTitan's
    /// `dataset_path`, e.g. c4_test) contributes its `.json`, `.jsonl` and `.txt` files in name order.
    public static func documents(in url: URL) throws -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw InputError(description: "routing data \(url.path): no such file or folder")
        }
        guard isDirectory.boolValue else { return try fileDocuments(in: url) }
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: url.path) } catch {
            throw InputError(description: "cannot list routing data folder \(url.path): \(error.localizedDescription)")
        }
        let visible = names.filter { !$0.hasPrefix(".") }.sorted()
        if let compressed = visible.first(where: {
            $0.hasSuffix(".gz") || $0.hasSuffix(".zst") || $0.hasSuffix(".bz2") || $0.hasSuffix(".xz")
        }) {
            throw InputError(
                description:
                    "\(url.appendingPathComponent(compressed).path): compressed routing data is not read; decompress it (e.g. gunzip) first"
            )
        }
        let files = visible.filter { folderExtensions.contains(($0 as NSString).pathExtension) }
        guard !files.isEmpty else {
            throw InputError(
                description: "\(url.path): no routing data files in the folder (looked for .\(folderExtensions.joined(separator: ", .")))")
        }
        let documents = try files.flatMap { try fileDocuments(in: url.appendingPathComponent($0)) }
        return documents
    }

    static func fileDocuments(in url: URL) throws -> [String] {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw InputError(description: "cannot read routing data \(url.path): \(error.localizedDescription)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw InputError(description: "\(url.path): routing data is not valid UTF-8")
        }
        var documents: [String] = []
        if url.pathExtension == "jsonl" || url.pathExtension == "json" {
            if url.pathExtension == "json", text.drop(while: { $0.isWhitespace }).first == "[" {
                let records: [JSONValue]
                do {
                    // The text starts with "[", so a document that parses is an array.
                    records = try JSONValue.parse(Array(data)).arrayValue ?? []
                } catch let error as JSONParseError {
                    throw InputError(description: "\(url.path): \(error)")
                }
                for (n, record) in records.enumerated() {
                    guard let field = record["text"]?.stringValue else {
                        throw InputError(description: "\(url.path): record \(n) has no \"text\" string field")
                    }
                    documents.append(field)
                }
            } else {
                for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
                where !line.allSatisfy(\.isWhitespace) {
                    let object: JSONObject
                    do {
                        guard let parsed = try JSONValue.parse(String(line)).objectValue else {
                            throw InputError(description: "\(url.path): line \(n + 1) is not a JSON object")
                        }
                        object = parsed
                    } catch let error as JSONParseError {
                        throw InputError(description: "\(url.path): line \(n + 1): \(error)")
                    }
                    guard let field = object["text"]?.stringValue else {
                        throw InputError(description: "\(url.path): line \(n + 1) has no \"text\" string field")
                    }
                    documents.append(field)
                }
            }
        } else {
            documents = [text]
        }
        guard documents.contains(where: { !$0.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty }) else {
            throw InputError(description: "\(url.path): routing data is empty")
        }
        return documents
    }

    /// Windows of `seqLen` tokens from the documents, encoded as TorchTitan's text datasets do (BOS and EOS
    /// around each document, concatenated). Windows are disjoint when the text is long enough, else overlap;
    /// their positions come from `seed`.
    public static func text(
        documents: [String], source: String, tokenizer: Tokenizer, samples: Int, seqLen: Int,
        seed: UInt64
    ) throws -> RoutingInput {
        var stream: [Int32] = []
        for document in documents {
            var ids = tokenizer.encode(document, addSpecialTokens: false)
            if let bos = tokenizer.bosTokenId { ids.insert(bos, at: 0) }
            if let eos = tokenizer.eosTokenId { ids.append(eos) }
            stream.append(contentsOf: ids.map { Int32($0) })
        }
        guard stream.count >= seqLen else {
            throw InputError(description: "\(source): \(stream.count) tokens, fewer than one sequence of \(seqLen)")
        }
        var rng = SplitMix64(seed: seed)
        let disjoint = stream.count / seqLen
        var starts: [Int]
        if disjoint >= samples {
            var slots = Array(0..<disjoint)
            for i in 0..<samples { slots.swapAt(i, i + Int(rng.next() % UInt64(disjoint - i))) }
            starts = slots[..<samples].map { $0 * seqLen }.sorted()
        } else {
            starts = (0..<samples).map { _ in Int(rng.next() % UInt64(stream.count - seqLen + 1)) }
        }
        return RoutingInput(
            kind: .text, sequences: starts.map { Array(stream[$0..<($0 + seqLen)]) }, source: source,
            availableTokens: stream.count, windowsOverlap: disjoint < samples)
    }

    /// Uniform random ids, as the original scripts routed (`torch.randint(0, vocab, (1, seq_len))` per sample).
    public static func random(vocabSize: Int, samples: Int, seqLen: Int, seed: UInt64) -> RoutingInput {
        var rng = SplitMix64(seed: seed)
        let sequences = (0..<samples).map { _ in (0..<seqLen).map { _ in Int32(rng.next() % UInt64(vocabSize)) } }
        return RoutingInput(
            kind: .random, sequences: sequences, source: "random token ids", availableTokens: 0,
            windowsOverlap: false)
    }
}

/// A small, fast, seedable generator (Steele et al.'s SplitMix64), so results do not depend on the platform RNG.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
