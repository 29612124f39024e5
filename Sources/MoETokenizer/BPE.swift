import Foundation
import MoEJSON

/// The BPE model of tokenizer.json (`"type": "BPE"`), with tokenizers' merge order: a min-heap of
/// (rank, position) over a linked list of symbols, stale entries skipped when popped.
final class BPEModel: @unchecked Sendable {
    // @unchecked: every stored property is immutable after init; the cache locks internally.
    let vocabulary: [String: Int]
    /// Token text by id (ids not in the vocabulary are nil).
    let tokens: [String?]
    let unknownToken: String?
    private let unknownId: Int32
    private let byteFallback: Bool
    private let fuseUnknown: Bool
    private let ignoreMerges: Bool
    private let continuingSubwordPrefix: String
    private let endOfWordSuffix: String
    private let merges: MergeTable
    /// Ids of single-scalar tokens for scalars below `directLimit`, else -1.
    private let directIds: [Int32]
    private let otherScalarIds: [UInt32: Int32]
    private let byteFallbackIds: [Int32]
    private let cache = WordCache()
    private static let directLimit = 0x3000

    var vocabularyCount: Int { vocabulary.count }

    init(_ json: JSONObject, file: String, component: String) throws {
        func failure(_ message: String) -> TokenizerError {
            TokenizerError(file: file, component: component, message)
        }
        func optionalString(_ key: String) throws -> String? {
            guard let value = json[key], !value.isNull else { return nil }
            guard let text = value.stringValue else { throw failure("'\(key)' must be a string, found \(value.typeName)") }
            return text
        }
        func flag(_ key: String) throws -> Bool {
            guard let value = json[key], !value.isNull else { return false }
            guard let bool = value.boolValue else { throw failure("'\(key)' must be a boolean, found \(value.typeName)") }
            return bool
        }

        if let dropout = json["dropout"], !dropout.isNull {
            guard let probability = dropout.doubleValue, (0...1).contains(probability) else {
                throw failure("'dropout' must be a number between 0 and 1")
            }
            if probability > 0 {
                throw failure("BPE dropout \(probability) is random; only a null or 0 dropout gives reproducible ids")
            }
        }
        unknownToken = try optionalString("unk_token")
        continuingSubwordPrefix = try optionalString("continuing_subword_prefix") ?? ""
        endOfWordSuffix = try optionalString("end_of_word_suffix") ?? ""
        byteFallback = try flag("byte_fallback")
        fuseUnknown = try flag("fuse_unk")
        ignoreMerges = try flag("ignore_merges")

        guard let vocabValue = json["vocab"] else { throw failure("missing 'vocab'") }
        guard let vocabObject = vocabValue.objectValue else {
            throw failure("'vocab' must be an object of token to id, found \(vocabValue.typeName)")
        }
        var vocabulary: [String: Int] = [:]
        vocabulary.reserveCapacity(vocabObject.entries.count)
        var maximumId = -1
        for (token, idValue) in vocabObject.entries {
            guard let id = idValue.intValue, (0..<Int(Int32.max)).contains(id) else {
                throw failure("vocab entry '\(token)' has id \(idValue), not a non-negative integer")
            }
            vocabulary[token] = id
            maximumId = max(maximumId, id)
        }
        // Ids index a dense table; real vocabularies stay far below this.
        guard maximumId < 4_000_000 else { throw failure("vocab id \(maximumId) is implausibly large") }
        var tokens = [String?](repeating: nil, count: maximumId + 1)
        for (token, id) in vocabulary { tokens[id] = token }
        self.vocabulary = vocabulary
        self.tokens = tokens

        var directIds = [Int32](repeating: -1, count: Self.directLimit)
        var otherScalarIds: [UInt32: Int32] = [:]
        for (token, id) in vocabulary {
            var scalars = token.unicodeScalars.makeIterator()
            guard let only = scalars.next(), scalars.next() == nil else { continue }
            if only.value < Self.directLimit {
                directIds[Int(only.value)] = Int32(id)
            } else {
                otherScalarIds[only.value] = Int32(id)
            }
        }
        self.directIds = directIds
        self.otherScalarIds = otherScalarIds
        byteFallbackIds = (0..<256).map { byte in
            vocabulary[String(format: "<0x%02X>", byte)].map(Int32.init) ?? -1
        }
        if let unknownToken {
            guard let id = vocabulary[unknownToken] else {
                throw failure("unk_token '\(unknownToken)' is not in the vocabulary")
            }
            unknownId = Int32(id)
        } else {
            unknownId = -1
        }

        guard let mergesValue = json["merges"] else { throw failure("missing 'merges'") }
        guard let mergeList = mergesValue.arrayValue else {
            throw failure("'merges' must be an array, found \(mergesValue.typeName)")
        }
        var pairs: [(String, String)] = []
        pairs.reserveCapacity(mergeList.count)
        for (index, entry) in mergeList.enumerated() {
            switch entry {
            case .string(let line):
                if line.hasPrefix("#version") { continue }
                let parts = line.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else {
                    throw failure("merges[\(index)] '\(line)' is not two tokens separated by one space")
                }
                pairs.append((String(parts[0]), String(parts[1])))
            case .array(let pair):
                guard pair.count == 2, let left = pair[0].stringValue, let right = pair[1].stringValue else {
                    throw failure("merges[\(index)] must be a pair of strings")
                }
                pairs.append((left, right))
            default:
                throw failure("merges[\(index)] must be a string \"a b\" or a pair [\"a\", \"b\"], found \(entry.typeName)")
            }
        }
        let prefixLength = continuingSubwordPrefix.utf8.count
        var table = MergeTable(capacity: pairs.count)
        for (rank, (left, right)) in pairs.enumerated() {
            guard let leftId = vocabulary[left] else { throw failure("merge token '\(left)' is not in the vocabulary") }
            guard let rightId = vocabulary[right] else { throw failure("merge token '\(right)' is not in the vocabulary") }
            guard right.utf8.count >= prefixLength else {
                throw failure("merge token '\(right)' is shorter than continuing_subword_prefix")
            }
            let merged = left + String(decoding: right.utf8.dropFirst(prefixLength), as: UTF8.self)
            guard let mergedId = vocabulary[merged] else {
                throw failure("merged token '\(merged)' is not in the vocabulary")
            }
            table.insert(left: UInt32(leftId), right: UInt32(rightId), rank: UInt32(rank), merged: UInt32(mergedId))
        }
        merges = table
    }

    func id(of token: String) -> Int? { vocabulary[token] }

    func token(for id: Int) -> String? {
        id >= 0 && id < tokens.count ? tokens[id] : nil
    }

    /// Appends the ids of one pre-tokenized piece.
    func tokenize(_ piece: UnsafeBufferPointer<UInt32>, into output: inout [Int32], scratch: inout BPEScratch) {
        if piece.isEmpty { return }
        let hash = WordCache.hash(piece)
        let cacheable = piece.count <= WordCache.maximumKeyLength
        if cacheable, cache.lookup(piece, hash: hash, into: &output) { return }
        let start = output.count
        if ignoreMerges, let id = vocabulary[String(scalarValues: piece)] {
            output.append(Int32(id))
        } else {
            mergeWord(piece, scratch: &scratch)
            output.append(contentsOf: scratch.result)
        }
        if cacheable { cache.insert(piece, hash: hash, ids: output[start...]) }
    }

    @inline(__always)
    private func singleScalarId(_ scalar: UInt32) -> Int32 {
        if scalar < Self.directLimit { return directIds[Int(scalar)] }
        return otherScalarIds[scalar] ?? -1
    }

    /// tokenizers' `merge_word`: one symbol per scalar (with byte fallback / unknown handling),
    /// then every applicable merge in rank order.
    private func mergeWord(_ piece: UnsafeBufferPointer<UInt32>, scratch: inout BPEScratch) {
        scratch.resetWord()
        var pendingUnknown: (id: Int32, length: Int32)?
        let affixes = !continuingSubwordPrefix.isEmpty || !endOfWordSuffix.isEmpty
        let wordLength = piece.count
        for index in 0..<wordLength {
            let scalar = piece[index]
            let byteLength = Int32(Unicode.Scalar.utf8Length(scalar))
            var id: Int32 = -1
            var text: String?
            if affixes {
                var symbolText = String(scalarValues: CollectionOfOne(scalar))
                if index > 0 { symbolText = continuingSubwordPrefix + symbolText }
                if index == wordLength - 1 { symbolText += endOfWordSuffix }
                text = symbolText
                id = vocabulary[symbolText].map(Int32.init) ?? -1
            } else {
                id = singleScalarId(scalar)
            }
            if id >= 0 {
                if let unknown = pendingUnknown {
                    scratch.addSymbol(unknown.id, length: unknown.length)
                    pendingUnknown = nil
                }
                scratch.addSymbol(id, length: byteLength)
                continue
            }
            if byteFallback {
                let bytes = Array((text ?? String(scalarValues: CollectionOfOne(scalar))).utf8)
                if bytes.allSatisfy({ byteFallbackIds[Int($0)] >= 0 }) {
                    for byte in bytes { scratch.addSymbol(byteFallbackIds[Int(byte)], length: 1) }
                    continue
                }
            }
            if unknownId >= 0 {
                if let unknown = pendingUnknown {
                    if fuseUnknown {
                        pendingUnknown = (unknown.id, unknown.length + byteLength)
                    } else {
                        scratch.addSymbol(unknown.id, length: unknown.length)
                        pendingUnknown = (unknownId, byteLength)
                    }
                } else {
                    pendingUnknown = (unknownId, byteLength)
                }
            }
        }
        if let unknown = pendingUnknown { scratch.addSymbol(unknown.id, length: unknown.length) }
        scratch.mergeAll(merges)
    }
}

/// Pair of ids → (rank, merged id), open addressing with linear probing.
struct MergeTable: Sendable {
    private var keys: [UInt64]
    private var values: [UInt64]
    private let mask: Int
    private static let empty = UInt64.max

    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        keys = [UInt64](repeating: Self.empty, count: size)
        values = [UInt64](repeating: 0, count: size)
        mask = size - 1
    }

    @inline(__always)
    private static func slot(_ key: UInt64, mask: Int) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
    }

    /// A later duplicate pair replaces the earlier one, as tokenizers' HashMap collect does.
    mutating func insert(left: UInt32, right: UInt32, rank: UInt32, merged: UInt32) {
        let key = UInt64(left) << 32 | UInt64(right)
        var slot = Self.slot(key, mask: mask)
        while keys[slot] != Self.empty && keys[slot] != key { slot = (slot + 1) & mask }
        keys[slot] = key
        values[slot] = UInt64(rank) << 32 | UInt64(merged)
    }

    /// (rank, merged id) packed as rank << 32 | merged, or nil.
    @inline(__always)
    func lookup(_ left: Int32, _ right: Int32) -> UInt64? {
        let key = UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
        return keys.withUnsafeBufferPointer { keys in
            var slot = Self.slot(key, mask: mask)
            while true {
                let stored = keys[slot]
                if stored == key { return values[slot] }
                if stored == Self.empty { return nil }
                slot = (slot + 1) & mask
            }
        }
    }
}

/// Reusable working memory for merging one word.
struct BPEScratch {
    private var symbols: [Int32] = []
    private var lengths: [Int32] = []
    private var previous: [Int32] = []
    private var next: [Int32] = []
    /// Heap entries: rank << 32 | position, and the merged id.
    private var heapKeys: [UInt64] = []
    private var heapMerged: [Int32] = []
    private(set) var result: [Int32] = []

    mutating func resetWord() {
        symbols.removeAll(keepingCapacity: true)
        lengths.removeAll(keepingCapacity: true)
        previous.removeAll(keepingCapacity: true)
        next.removeAll(keepingCapacity: true)
        result.removeAll(keepingCapacity: true)
    }

    mutating func addSymbol(_ id: Int32, length: Int32) {
        let index = Int32(symbols.count)
        if index > 0 { next[Int(index) - 1] = index }
        symbols.append(id)
        lengths.append(length)
        previous.append(index - 1)
        next.append(-1)
    }

    private mutating func push(_ key: UInt64, _ merged: Int32) {
        heapKeys.append(key)
        heapMerged.append(merged)
        var child = heapKeys.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            if heapKeys[parent] <= heapKeys[child] { break }
            heapKeys.swapAt(parent, child)
            heapMerged.swapAt(parent, child)
            child = parent
        }
    }

    private mutating func pop() -> (key: UInt64, merged: Int32)? {
        guard let top = heapKeys.first else { return nil }
        let merged = heapMerged[0]
        let last = heapKeys.count - 1
        heapKeys.swapAt(0, last)
        heapMerged.swapAt(0, last)
        heapKeys.removeLast()
        heapMerged.removeLast()
        var parent = 0
        let count = heapKeys.count
        while true {
            let left = 2 * parent + 1
            if left >= count { break }
            let right = left + 1
            let smallest = right < count && heapKeys[right] < heapKeys[left] ? right : left
            if heapKeys[parent] <= heapKeys[smallest] { break }
            heapKeys.swapAt(parent, smallest)
            heapMerged.swapAt(parent, smallest)
            parent = smallest
        }
        return (top, merged)
    }

    mutating func mergeAll(_ merges: MergeTable) {
        let count = symbols.count
        if count > 1 {
            heapKeys.removeAll(keepingCapacity: true)
            heapMerged.removeAll(keepingCapacity: true)
            for position in 0..<(count - 1) {
                if let merge = merges.lookup(symbols[position], symbols[position + 1]) {
                    push((merge >> 32) << 32 | UInt64(position), Int32(truncatingIfNeeded: merge & 0xFFFF_FFFF))
                }
            }
            while let top = pop() {
                let position = Int(top.key & 0xFFFF_FFFF)
                if lengths[position] == 0 { continue }
                let right = Int(next[position])
                if right < 0 { continue }
                // Skip entries made stale by earlier merges: the pair there must still merge into the same id.
                guard let current = merges.lookup(symbols[position], symbols[right]),
                    Int32(truncatingIfNeeded: current & 0xFFFF_FFFF) == top.merged
                else { continue }
                symbols[position] = top.merged
                lengths[position] += lengths[right]
                lengths[right] = 0
                let afterRight = next[right]
                next[position] = afterRight
                if afterRight >= 0 { previous[Int(afterRight)] = Int32(position) }
                let before = Int(previous[position])
                if before >= 0, let merge = merges.lookup(symbols[before], symbols[position]) {
                    push((merge >> 32) << 32 | UInt64(before), Int32(truncatingIfNeeded: merge & 0xFFFF_FFFF))
                }
                if afterRight >= 0, let merge = merges.lookup(symbols[position], symbols[Int(afterRight)]) {
                    push((merge >> 32) << 32 | UInt64(position), Int32(truncatingIfNeeded: merge & 0xFFFF_FFFF))
                }
            }
        }
        for index in 0..<count where lengths[index] != 0 { result.append(symbols[index]) }
    }
}

/// Piece scalars → ids, shared by all threads. Bounded: when full it starts over, so memory stays
/// flat however much text goes through.
final class WordCache: @unchecked Sendable {
    // @unchecked: `storage` is only touched with `lock` held.
    private let lock = NSLock()
    private var storage = Storage()
    static let maximumKeyLength = 256

    private struct Entry {
        var hash: UInt64
        var keyStart: Int32
        var keyLength: Int32
        var valueStart: Int32
        var valueLength: Int32
    }

    private struct Storage {
        static let slotCount = 1 << 16
        static let maximumEntries = 1 << 15
        static let maximumStored = 1 << 22
        var slots = [Int32](repeating: -1, count: slotCount)
        var entries: [Entry] = []
        var keys: [UInt32] = []
        var values: [Int32] = []

        func find(_ key: UnsafeBufferPointer<UInt32>, hash: UInt64) -> (slot: Int, entry: Int?) {
            var slot = Int(truncatingIfNeeded: hash >> 20) & (Self.slotCount - 1)
            while true {
                let index = Int(slots[slot])
                if index < 0 { return (slot, nil) }
                let entry = entries[index]
                if entry.hash == hash, Int(entry.keyLength) == key.count {
                    let start = Int(entry.keyStart)
                    var equal = true
                    for offset in 0..<key.count where keys[start + offset] != key[offset] {
                        equal = false
                        break
                    }
                    if equal { return (slot, index) }
                }
                slot = (slot + 1) & (Self.slotCount - 1)
            }
        }

        mutating func insert(_ key: UnsafeBufferPointer<UInt32>, hash: UInt64, ids: ArraySlice<Int32>) {
            if entries.count >= Self.maximumEntries || keys.count + key.count > Self.maximumStored
                || values.count + ids.count > Self.maximumStored
            {
                slots = [Int32](repeating: -1, count: Self.slotCount)
                entries.removeAll(keepingCapacity: true)
                keys.removeAll(keepingCapacity: true)
                values.removeAll(keepingCapacity: true)
            }
            let (slot, existing) = find(key, hash: hash)
            if existing != nil { return }
            slots[slot] = Int32(entries.count)
            entries.append(
                Entry(
                    hash: hash, keyStart: Int32(keys.count), keyLength: Int32(key.count),
                    valueStart: Int32(values.count), valueLength: Int32(ids.count)))
            keys.append(contentsOf: key)
            values.append(contentsOf: ids)
        }
    }

    static func hash(_ key: UnsafeBufferPointer<UInt32>) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for value in key {
            hash = (hash ^ UInt64(value)) &* 0x0000_0100_0000_01B3
        }
        return hash ^ (hash >> 29)
    }

    func lookup(_ key: UnsafeBufferPointer<UInt32>, hash: UInt64, into output: inout [Int32]) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard let index = storage.find(key, hash: hash).entry else { return false }
        let entry = storage.entries[index]
        let start = Int(entry.valueStart)
        output.append(contentsOf: storage.values[start..<(start + Int(entry.valueLength))])
        return true
    }

    func insert(_ key: UnsafeBufferPointer<UInt32>, hash: UInt64, ids: ArraySlice<Int32>) {
        lock.lock()
        defer { lock.unlock() }
        storage.insert(key, hash: hash, ids: ids)
    }
}
