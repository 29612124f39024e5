import Foundation
import Testing

@testable import MoECheckpoint

/// The JSON form the fixture generator's `tag()` gives a Python value.
private func tagged(_ value: PickleValue) -> Any {
    switch value {
    case .none: return ["none"]
    case .bool(let b): return ["bool", b] as [Any]
    case .int(let v): return ["int", String(v)]
    case .bigInt(let digits): return ["int", digits]
    case .float(let d):
        var bits = d.bitPattern
        var hex = ""
        for _ in 0..<8 {
            hex += String(format: "%02x", UInt8(truncatingIfNeeded: bits))
            bits >>= 8
        }
        return ["float", hex]
    case .string(let s): return ["str", s]
    case .bytes(let b): return ["bytes", b.map { String(format: "%02x", $0) }.joined()]
    case .tuple(let items): return ["tuple", items.map(tagged)] as [Any]
    case .list(let items): return ["list", items.map(tagged)] as [Any]
    case .dict(let items): return ["dict", items.map { [tagged($0.key), tagged($0.value)] }] as [Any]
    case .set(let items): return ["set", items.map(tagged)] as [Any]
    case .frozenset(let items): return ["frozenset", items.map(tagged)] as [Any]
    case .global, .object, .persistent: return ["unexpected", value.description]
    }
}

private func canonicalJSON(_ object: Any) -> String {
    guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .fragmentsAllowed]) else {
        return "<not JSON>"
    }
    return String(decoding: data, as: UTF8.self)
}

private func loadPickle(_ file: String) throws -> PickleValue {
    try Unpickler.load(try readBytes(Fixtures.url("pickles/" + file)), source: file)
}

@Suite struct PickleTests {
    @Test func pythonPicklesOfEveryProtocolDecodeToTheSameValues() throws {
        let cases = Fixtures.section("pickles")["cases"] as? [[String: Any]] ?? []
        #expect(cases.count >= 20)
        var protocols = Set<Int>()
        for record in cases {
            let file = try #require(record["file"] as? String)
            protocols.insert(record["protocol"] as? Int ?? -1)
            let value = try loadPickle(file)
            #expect(canonicalJSON(tagged(value)) == canonicalJSON(record["value"] ?? NSNull()), "\(file)")
        }
        #expect(protocols == Set(0...5))
    }

    @Test func multipleFramesAreRead() throws {
        let value = try loadPickle("frames_p4.pkl")
        let count = try #require(Fixtures.section("pickles", "frames")["range"] as? Int)
        guard case .list(let items) = value else {
            Issue.record("not a list: \(value.description.prefix(60))")
            return
        }
        #expect(items.count == count)
        #expect(items.enumerated().allSatisfy { $0.element == .int($0.offset) })
    }

    @Test func sharedReferencesAreSharedValues() throws {
        // The same list object appears under several keys; each occurrence holds all its items
        // (appended after it was memoized).
        let value = try loadPickle("shared_p4.pkl")
        let list = PickleValue.list([.int(1), .int(2)])
        #expect(value["x"] == list)
        #expect(value["y"] == list)
        #expect(value["z"] == .tuple([list, list]))
    }

    @Test func torchGlobalsBecomeData() throws {
        for file in Fixtures.section("pickles")["torch_objects"] as? [String] ?? [] {
            let value = try loadPickle(file)
            #expect(
                value["size"] == .object(PickleObject(type: "torch.Size", args: [.tuple([.int(2), .int(3)])], kwargs: [], state: nil)),
                "\(file)")
            #expect(value["size"]?.intArray == [2, 3])
            #expect(value["empty"]?.intArray == [])
            #expect(value["dtype"] == .global(module: "torch", name: "bfloat16"), "\(file)")
        }
    }

    @Test func disallowedGlobalsAreRefusedByName() throws {
        let refused = Fixtures.section("pickles", "refused")
        #expect(refused.count == 3)
        for (file, name) in refused {
            let qualified = try #require(name as? String)
            expectError([qualified, file, "not allowed"]) { _ = try loadPickle(file) }
        }
    }

    @Test func handWrittenOpcodes() throws {
        // PROTO 2, LONG1 of 9 bytes (2^64), BINFLOAT 1.5, SHORT_BINBYTES, TUPLE3, STOP
        let stream: [UInt8] = [
            0x80, 0x02, 0x8A, 0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
            0x47, 0x3F, 0xF8, 0, 0, 0, 0, 0, 0,
            0x43, 0x02, 0xAB, 0xCD, 0x87, 0x2E,
        ]
        #expect(try Unpickler.load(stream, source: "t") == .tuple([.bigInt("18446744073709551616"), .float(1.5), .bytes([0xAB, 0xCD])]))
        // LONG1 negative: -129 is 0x7F 0xFF; LONG4 with 0 bytes is 0.
        #expect(try Unpickler.load([0x80, 0x02, 0x8A, 0x02, 0x7F, 0xFF, 0x2E], source: "t") == .int(-129))
        #expect(try Unpickler.load([0x80, 0x02, 0x8B, 0, 0, 0, 0, 0x2E], source: "t") == .int(0))
        // MARK, items, POP_MARK leaves the stack as before; DUP, POP.
        #expect(try Unpickler.load([0x4B, 0x07, 0x28, 0x4B, 0x01, 0x4B, 0x02, 0x31, 0x32, 0x30, 0x2E], source: "t") == .int(7))
        // NEWOBJ_EX of an allowed class with kwargs, then BUILD.
        let newobjEx: [UInt8] =
            [0x80, 0x04, 0x8C, 0x0B] + Array("collections".utf8) + [0x8C, 0x0B] + Array("OrderedDict".utf8)
            + [0x93, 0x29, 0x7D, 0x92, 0x2E]
        #expect(try Unpickler.load(newobjEx, source: "t") == .dict([]))
        let pathlib: [UInt8] = Array("cpathlib\nPosixPath\n(V/tmp\ntR}Vk\nI01\nsb.".utf8)
        #expect(
            try Unpickler.load(pathlib, source: "t")
                == .object(
                    PickleObject(
                        type: "pathlib.PosixPath", args: [.string("/tmp")], kwargs: [],
                        state: .dict([PickleDictItem(key: .string("k"), value: .bool(true))]))))
    }

    @Test func malformedStreamsAreErrors() {
        let cases: [(String, [UInt8], String)] = [
            ("empty", [], "ends without STOP"),
            ("underflow", [0x80, 0x02, 0x85, 0x2E], "stack underflow"),
            ("bad memo", [0x80, 0x02, 0x68, 0x05, 0x2E], "memo entry 5"),
            ("bad long memo", [0x80, 0x04, 0x6A, 0xFF, 0xFF, 0xFF, 0x7F, 0x2E], "memo entry"),
            ("no mark", [0x80, 0x02, 0x74, 0x2E], "MARK"),
            ("huge length", [0x80, 0x04, 0x8D, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, 0x2E], "exceeds"),
            ("truncated frame", [0x80, 0x04, 0x95, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x2E], "exceeds"),
            ("unknown opcode", [0x80, 0x02, 0xFF, 0x2E], "unknown opcode 0xff"),
            ("protocol 6", [0x80, 0x06, 0x4E, 0x2E], "protocol 6"),
            ("append to tuple", [0x80, 0x02, 0x29, 0x4B, 0x01, 0x61, 0x2E], "APPEND"),
            ("setitems on list", [0x80, 0x02, 0x5D, 0x28, 0x4B, 0x01, 0x4B, 0x02, 0x75, 0x2E], "SETITEMS"),
            ("build on int", [0x80, 0x02, 0x4B, 0x01, 0x7D, 0x62, 0x2E], "BUILD"),
            ("reduce on non-global", [0x80, 0x02, 0x4B, 0x01, 0x29, 0x52, 0x2E], "not an allowed global"),
            ("invalid utf8", [0x80, 0x04, 0x8C, 0x02, 0xC3, 0x28, 0x2E], "UTF-8"),
            ("external buffer", [0x80, 0x05, 0x97, 0x2E], "out-of-band"),
            ("extension", [0x80, 0x02, 0x82, 0x01, 0x2E], "extension"),
        ]
        for (name, stream, fragment) in cases {
            expectError([fragment, "source.pkl"]) { _ = try Unpickler.load(stream, source: "source.pkl") }
            _ = name
        }
    }

    @Test func selfReferenceAndDeepNestingAreBounded() {
        // A list appended to itself: L = []; L.append(L).
        let cyclic: [UInt8] = [0x80, 0x02, 0x5D, 0x71, 0x00, 0x68, 0x00, 0x61, 0x2E]
        expectError(["nests deeper"]) { _ = try Unpickler.load(cyclic, source: "cycle.pkl") }
        // 100 000 nested one-element tuples.
        var deep: [UInt8] = [0x80, 0x02, 0x4E]
        deep += [UInt8](repeating: 0x85, count: 100_000)
        deep.append(0x2E)
        expectError(["nests deeper"]) { _ = try Unpickler.load(deep, source: "deep.pkl") }
        // A DAG whose expansion doubles with every level: L0 = [], Ln = [Ln-1, Ln-1].
        var doubling: [UInt8] = [0x80, 0x02, 0x5D]
        for _ in 0..<60 { doubling += [0x32, 0x86] } // DUP, TUPLE2
        doubling.append(0x2E)
        expectError(["too many values"]) { _ = try Unpickler.load(doubling, source: "bomb.pkl") }
    }

    @Test func everyPrefixOfARealMetadataFileFails() throws {
        let bytes = try readBytes(Fixtures.url("dcp_sharded/.metadata"))
        #expect(try Unpickler.load(bytes, source: "m").object?.type == "torch.distributed.checkpoint.metadata.Metadata")
        for length in 0..<bytes.count {
            #expect(throws: CheckpointError.self) { try Unpickler.load(Array(bytes[..<length]), source: "m") }
        }
    }

    @Test func randomlyDamagedMetadataNeverCrashes() throws {
        let original = try readBytes(Fixtures.url("dcp_dtypes/.metadata"))
        var random = SplitMix64(state: 42)
        var parsed = 0
        for _ in 0..<3000 {
            var bytes = original
            for _ in 0...Int.random(in: 0...3, using: &random) {
                let i = Int.random(in: 0..<bytes.count, using: &random)
                bytes[i] = UInt8.random(in: 0...255, using: &random)
            }
            if let value = try? Unpickler.load(bytes, source: "m") {
                parsed += 1
                _ = try? DCPMetadataParser(source: "m").parse(value)
            }
        }
        // Most single-byte changes land in strings or numbers and still parse.
        #expect(parsed > 0)
    }
}
