import Foundation
import MoEJSON
import Testing

private struct Layer: Codable, Equatable {
    var layer: Int
    var cv: Double
    var weight: Float
    var name: String
    var note: String?
}

private struct Record: Codable, Equatable {
    var zeta: Int
    var alpha: [Layer]
    var scores: [String: Double]
    var flags: [Bool]
    var raw: JSONValue
    var count: UInt8
}

/// Writes its keys in an order of its own choosing, with a nested container filled after its parent's keys.
private struct Handwritten: Encodable {
    enum Keys: String, CodingKey { case outer, later, first }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        var nested = container.nestedContainer(keyedBy: Keys.self, forKey: .outer)
        try container.encode(1, forKey: .later)
        try nested.encode("filled after", forKey: .first)
        try container.encodeNil(forKey: .first)
    }
}

@Suite struct JSONCodingTests {
    fileprivate let sample = Record(
        zeta: 3,
        alpha: [
            Layer(layer: 0, cv: 0.25, weight: 0.1, name: "é\"\n", note: nil), Layer(layer: 1, cv: -1e-7, weight: 3, name: "", note: "x"),
        ],
        scores: ["only": 0.5],
        flags: [true, false],
        raw: .object(["b": .int(1), "a": .array([.double(2.5), .null])]),
        count: 200
    )

    @Test func roundTripsAndKeepsEncodedKeyOrder() throws {
        let value = try JSONValueEncoder().encode(sample)
        #expect(value.objectValue?.keys == ["zeta", "alpha", "scores", "flags", "raw", "count"])
        #expect(value["alpha"]?.arrayValue?.first?.objectValue?.keys == ["layer", "cv", "weight", "name"])
        // A Float is written as its shortest decimal, not the double it widens to (0.10000000149011612).
        #expect(value.serialized.contains(#""weight":0.1,"#))
        #expect(value["zeta"] == .int(3) && value["raw"] == sample.raw)
        let back = try JSONValueDecoder().decode(Record.self, from: Array(value.prettyPrinted.utf8))
        #expect(back == sample)
    }

    @Test func handwrittenContainersLandWhereTheyWereOpened() throws {
        let value = try JSONValueEncoder().encode(Handwritten())
        #expect(value.serialized == #"{"outer":{"first":"filled after"},"later":1,"first":null}"#)
    }

    /// Results files store non-finite doubles as Python's `str(float)` spells them.
    @Test func nonFiniteDoublesAsResultsFilesStoreThem() throws {
        let values: [Double] = [.nan, .infinity, -.infinity, 1]
        let encoded = try JSONValueEncoder().encode(values)
        #expect(encoded.serialized == #"["nan","inf","-inf",1.0]"#)
        let back = try JSONValueDecoder().decode([Double].self, from: encoded)
        #expect(back[0].isNaN && back[1] == .infinity && back[2] == -.infinity && back[3] == 1)
        // Python's json.dumps writes bare NaN/Infinity; seed results files hold them.
        let python = try JSONValueDecoder().decode([Double].self, from: Array("[NaN, -Infinity, 2]".utf8))
        #expect(python[0].isNaN && python[1] == -.infinity && python[2] == 2)

        #expect(try JSONValueEncoder(nonFiniteDoubles: .null).encode(values).serialized == "[null,null,null,1.0]")
        #expect(try JSONValueDecoder(nonFiniteDoubles: .null).decode([Double].self, from: .array([.null]))[0].isNaN)
        let refused = #expect(throws: JSONCodingError.self) {
            try JSONValueEncoder(nonFiniteDoubles: .error).encode(["cv": [1, Double.nan]])
        }
        #expect(refused?.description == "at cv[1]: nan is not a JSON number")
        #expect(throws: JSONCodingError.self) {
            try JSONValueDecoder(nonFiniteDoubles: .error).decode([Double].self, from: .array([.string("nan")]))
        }
        #expect(throws: JSONParseError.self) {
            try JSONValueDecoder(nonFiniteDoubles: .error).decode([Double].self, from: Array("[NaN]".utf8))
        }
    }

    @Test func decodingErrorsNameTheKeyPath() throws {
        let valid = try JSONValueEncoder().encode(sample).serialized
        #expect(message(valid) == "decoded")
        #expect(
            message(valid.replacingFirst(#""cv":0.25"#, with: #""cv":"x""#)) == #"at alpha[0].cv: expected a number, found the string "x""#)
        #expect(message(valid.replacingFirst(#""layer":1"#, with: #""layer":1.5"#)) == "at alpha[1].layer: expected an integer, found 1.5")
        #expect(
            message(valid.replacingFirst(#""count":200"#, with: #""count":300"#))
                == "at count: expected an integer that fits UInt8, found 300")
        #expect(message(valid.replacingFirst(#""zeta":3,"#, with: "")) == "at zeta: missing required key")
        #expect(message(valid.replacingFirst(#""name":"","#, with: #""name":null,"#)) == "at alpha[1].name: expected a string, found null")
        #expect(
            message(valid.replacingFirst(#""flags":[true,false]"#, with: #""flags":{}"#)) == "at flags: expected an array, found an object")
        #expect(message("[]") == "expected an object, found an array")
        #expect(message("{").hasPrefix("malformed JSON at byte 1"))
        // Counts that seed files wrote as floats still decode as integers; unknown keys are ignored.
        #expect(message(valid.replacingFirst(#""zeta":3"#, with: #""zeta":3.0,"unknown":[1]"#)) == "decoded")
        let layer = try JSONValueDecoder().decode(
            Layer.self, from: Array(#"{"layer": 0, "cv": 1, "weight": 2, "name": "n", "note": null}"#.utf8))
        #expect(layer == Layer(layer: 0, cv: 1, weight: 2, name: "n", note: nil))
        struct Pair: Decodable {
            var a: Int, b: Int
            init(from decoder: any Decoder) throws {
                var items = try decoder.unkeyedContainer()
                a = try items.decode(Int.self)
                b = try items.decode(Int.self)
            }
        }
        let missing = #expect(throws: JSONCodingError.self) {
            try JSONValueDecoder().decode([Pair].self, from: .array([.array([.int(1)])]))
        }
        #expect(missing?.description == "at [0][1]: the array has only 1 elements")
    }

    @Test func duplicateKeysDecodeToTheLast() throws {
        let value = try JSONValueDecoder().decode([String: Int].self, from: Array(#"{"a": 1, "b": 2, "a": 3}"#.utf8))
        #expect(value == ["a": 3, "b": 2])
    }

    @Test func integersOutsideSixtyFourBitsAreRefused() throws {
        #expect(try JSONValueEncoder().encode([UInt64(Int.max)]) == .array([.int(Int.max)]))
        let error = #expect(throws: JSONCodingError.self) { try JSONValueEncoder().encode(["n": UInt64.max]) }
        #expect(error?.description == "at n: 18446744073709551615 does not fit a 64-bit signed integer")
    }
}

/// What decoding `text` as a `Record` says: "decoded", or the error's description.
private func message(_ text: String) -> String {
    do {
        _ = try JSONValueDecoder().decode(Record.self, from: Array(text.utf8))
        return "decoded"
    } catch {
        return "\(error)"
    }
}

extension String {
    fileprivate func replacingFirst(_ target: String, with replacement: String) -> String {
        guard let range = range(of: target) else { return self }
        return replacingCharacters(in: range, with: replacement)
    }
}
