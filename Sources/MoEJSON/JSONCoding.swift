/// Codable on top of `JSONValue`: typed records are written and read by the same reader and writer as the rest of
/// moe-eval, so objects keep the order their `encode(to:)` wrote the keys in (synthesized conformances: declaration
/// order), integers stay integers, and a decoding error names the key path where the document disagrees with the type.

/// How `JSONValueEncoder` writes, and `JSONValueDecoder` reads, doubles that JSON has no number for.
public enum NonFiniteDoubles: Sendable, Equatable {
    /// The strings `"nan"`, `"inf"` and `"-inf"` (Python's `str(float)`): how results files have always stored them.
    /// Reading also accepts the bare `NaN`/`Infinity` that Python's `json.dumps` writes, when the parse allowed them.
    case strings
    /// `null`; reading takes `null` for NaN where a non-optional double is expected.
    case null
    /// Encoding fails, naming the key path; reading accepts only numbers.
    case error
}

/// Why a value could not be encoded or decoded: the key path (`routing_stats.layer_3.cv`, `layers[2]`) and the reason.
public struct JSONCodingError: Error, CustomStringConvertible, Sendable {
    /// The coding path as text; empty for the top-level value.
    public let path: String
    public let reason: String

    public var description: String { path.isEmpty ? reason : "at \(path): \(reason)" }

    init(codingPath: [any CodingKey], reason: String) {
        path = JSONCodingError.format(codingPath)
        self.reason = reason
    }

    static func format(_ codingPath: [any CodingKey]) -> String {
        var text = ""
        for key in codingPath {
            if let index = key.intValue, key.stringValue == "Index \(index)" || key.stringValue == String(index) {
                text += "[\(index)]"
            } else {
                text += (text.isEmpty ? "" : ".") + key.stringValue
            }
        }
        return text
    }

    init(_ error: EncodingError) {
        switch error {
        case .invalidValue(_, let context): self.init(codingPath: context.codingPath, reason: context.debugDescription)
        @unknown default: self.init(codingPath: [], reason: "\(error)")
        }
    }

    init(_ error: DecodingError) {
        switch error {
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            self.init(codingPath: context.codingPath, reason: context.debugDescription)
        case .keyNotFound(let key, let context):
            self.init(codingPath: context.codingPath + [key], reason: context.debugDescription)
        @unknown default:
            self.init(codingPath: [], reason: "\(error)")
        }
    }
}

/// The key of an array element in a coding path.
struct JSONIndexKey: CodingKey {
    let intValue: Int?
    var stringValue: String { "Index \(intValue ?? 0)" }
    init(_ index: Int) { intValue = index }
    init?(stringValue: String) { nil }
    init?(intValue: Int) { self.intValue = intValue }
}

/// A key known only at run time (JSONValue objects, `superEncoder`).
struct JSONStringKey: CodingKey {
    let stringValue: String
    var intValue: Int? { nil }
    init(_ string: String) { stringValue = string }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

// MARK: - Encoding

/// Encodes `Encodable` values to `JSONValue` (then `.serialized` or `.prettyPrinted` for text).
public struct JSONValueEncoder {
    public var nonFiniteDoubles: NonFiniteDoubles
    public var userInfo: [CodingUserInfoKey: any Sendable] = [:]

    public init(nonFiniteDoubles: NonFiniteDoubles = .strings) {
        self.nonFiniteDoubles = nonFiniteDoubles
    }

    /// Throws `JSONCodingError` naming the key path of a value JSON cannot hold.
    public func encode<T: Encodable>(_ value: T) throws -> JSONValue {
        let encoder = ValueEncoder(options: self, codingPath: [])
        do {
            return try encoder.encodeNested(value)
        } catch let error as EncodingError {
            throw JSONCodingError(error)
        }
    }
}

/// A container under construction: nested containers hand out references so that values encoded into them after
/// they were created still land in their parent.
private final class EncodedObject {
    var keys: [String] = []
    var slots: [EncodedSlot] = []
    var indexOfKey: [String: Int] = [:]

    func set(_ key: String, _ slot: EncodedSlot) {
        if let index = indexOfKey[key] {
            slots[index] = slot
        } else {
            indexOfKey[key] = keys.count
            keys.append(key)
            slots.append(slot)
        }
    }
}

private final class EncodedArray {
    var slots: [EncodedSlot] = []
}

private enum EncodedSlot {
    case value(JSONValue)
    case object(EncodedObject)
    case array(EncodedArray)
    /// A nested encoder (`superEncoder`, a value's own `encode(to:)`) whose container is read when the tree is built.
    case encoder(ValueEncoder)

    var built: JSONValue {
        switch self {
        case .value(let value): return value
        case .object(let object):
            return .object(JSONObject(zip(object.keys, object.slots).map { (key: $0.0, value: $0.1.built) }))
        case .array(let array): return .array(array.slots.map(\.built))
        case .encoder(let encoder): return encoder.root?.built ?? .object([])
        }
    }
}

private final class ValueEncoder: Encoder {
    let options: JSONValueEncoder
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { options.userInfo }
    var root: EncodedSlot?

    init(options: JSONValueEncoder, codingPath: [any CodingKey]) {
        self.options = options
        self.codingPath = codingPath
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        let object: EncodedObject
        if case .object(let existing) = root {
            object = existing
        } else {
            object = EncodedObject()
            root = .object(object)
        }
        return KeyedEncodingContainer(KeyedEncoder<Key>(encoder: self, object: object, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        let array: EncodedArray
        if case .array(let existing) = root {
            array = existing
        } else {
            array = EncodedArray()
            root = .array(array)
        }
        return UnkeyedEncoder(encoder: self, array: array, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { SingleValueEncoder(encoder: self) }

    func double(_ value: Double, at path: [any CodingKey]) throws -> JSONValue {
        if value.isFinite { return .double(value) }
        switch options.nonFiniteDoubles {
        case .strings: return .string(value.isNaN ? "nan" : value < 0 ? "-inf" : "inf")
        case .null: return .null
        case .error:
            throw EncodingError.invalidValue(value, .init(codingPath: path, debugDescription: "\(value) is not a JSON number"))
        }
    }

    /// A Float as the double its shortest decimal names, so that `0.1` as a Float is written `0.1`.
    func float(_ value: Float, at path: [any CodingKey]) throws -> JSONValue {
        guard value.isFinite, let decimal = Double("\(value)") else { return try double(Double(value), at: path) }
        return .double(decimal)
    }

    func integer<T: BinaryInteger>(_ value: T, at path: [any CodingKey]) throws -> JSONValue {
        guard let exact = Int(exactly: value) else {
            throw EncodingError.invalidValue(
                value, .init(codingPath: path, debugDescription: "\(value) does not fit a 64-bit signed integer"))
        }
        return .int(exact)
    }

    /// `value` at this encoder's path: primitives directly, anything else through its own `encode(to:)`.
    func encodeNested<T: Encodable>(_ value: T) throws -> JSONValue {
        let path = codingPath
        switch value {
        case let v as JSONValue: return v
        case let v as JSONObject: return .object(v)
        case let v as String: return .string(v)
        case let v as Bool: return .bool(v)
        case let v as Double: return try double(v, at: path)
        case let v as Float: return try float(v, at: path)
        case let v as Int: return .int(v)
        default:
            let nested = ValueEncoder(options: options, codingPath: path)
            try value.encode(to: nested)
            return nested.root?.built ?? .object([])
        }
    }
}

private struct KeyedEncoder<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let encoder: ValueEncoder
    let object: EncodedObject
    let codingPath: [any CodingKey]

    func encodeNil(forKey key: Key) throws { object.set(key.stringValue, .value(.null)) }
    func encode(_ value: Bool, forKey key: Key) throws { object.set(key.stringValue, .value(.bool(value))) }
    func encode(_ value: String, forKey key: Key) throws { object.set(key.stringValue, .value(.string(value))) }
    func encode(_ value: Double, forKey key: Key) throws {
        object.set(key.stringValue, .value(try encoder.double(value, at: codingPath + [key])))
    }
    func encode(_ value: Float, forKey key: Key) throws {
        object.set(key.stringValue, .value(try encoder.float(value, at: codingPath + [key])))
    }
    func encode(_ value: Int, forKey key: Key) throws { object.set(key.stringValue, .value(.int(value))) }
    func encode(_ value: Int8, forKey key: Key) throws { try encodeInteger(value, key) }
    func encode(_ value: Int16, forKey key: Key) throws { try encodeInteger(value, key) }
    func encode(_ value: Int32, forKey key: Key) throws { try encodeInteger(value, key) }
    func encode(_ value: Int64, forKey key: Key) throws { try encodeInteger(value, key) }
    func encode(_ value: UInt, forKey key: Key) throws { try encodeInteger(value, key) }
    func encode(_ value: UInt8, forKey key: Key) throws { try encodeInteger(value, key) }
    func encode(_ value: UInt16, forKey key: Key) throws { try encodeInteger(value, key) }
    func encode(_ value: UInt32, forKey key: Key) throws { try encodeInteger(value, key) }
    func encode(_ value: UInt64, forKey key: Key) throws { try encodeInteger(value, key) }

    func encodeInteger<T: BinaryInteger>(_ value: T, _ key: Key) throws {
        object.set(key.stringValue, .value(try encoder.integer(value, at: codingPath + [key])))
    }

    func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        let nested = ValueEncoder(options: encoder.options, codingPath: codingPath + [key])
        object.set(key.stringValue, .value(try nested.encodeNested(value)))
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        let nested = EncodedObject()
        object.set(key.stringValue, .object(nested))
        return KeyedEncodingContainer(KeyedEncoder<NestedKey>(encoder: encoder, object: nested, codingPath: codingPath + [key]))
    }

    func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let nested = EncodedArray()
        object.set(key.stringValue, .array(nested))
        return UnkeyedEncoder(encoder: encoder, array: nested, codingPath: codingPath + [key])
    }

    func superEncoder() -> any Encoder { superEncoder(keyName: "super") }
    func superEncoder(forKey key: Key) -> any Encoder { superEncoder(keyName: key.stringValue, key: key) }

    private func superEncoder(keyName: String, key: (any CodingKey)? = nil) -> any Encoder {
        let nested = ValueEncoder(options: encoder.options, codingPath: codingPath + [key ?? JSONStringKey(keyName)])
        object.set(keyName, .encoder(nested))
        return nested
    }
}

private struct UnkeyedEncoder: UnkeyedEncodingContainer {
    let encoder: ValueEncoder
    let array: EncodedArray
    let codingPath: [any CodingKey]
    var count: Int { array.slots.count }

    private var nextKey: any CodingKey { JSONIndexKey(array.slots.count) }

    func encodeNil() throws { array.slots.append(.value(.null)) }
    func encode(_ value: Bool) throws { array.slots.append(.value(.bool(value))) }
    func encode(_ value: String) throws { array.slots.append(.value(.string(value))) }
    func encode(_ value: Double) throws { array.slots.append(.value(try encoder.double(value, at: codingPath + [nextKey]))) }
    func encode(_ value: Float) throws { array.slots.append(.value(try encoder.float(value, at: codingPath + [nextKey]))) }
    func encode(_ value: Int) throws { array.slots.append(.value(.int(value))) }
    func encode(_ value: Int8) throws { try encodeInteger(value) }
    func encode(_ value: Int16) throws { try encodeInteger(value) }
    func encode(_ value: Int32) throws { try encodeInteger(value) }
    func encode(_ value: Int64) throws { try encodeInteger(value) }
    func encode(_ value: UInt) throws { try encodeInteger(value) }
    func encode(_ value: UInt8) throws { try encodeInteger(value) }
    func encode(_ value: UInt16) throws { try encodeInteger(value) }
    func encode(_ value: UInt32) throws { try encodeInteger(value) }
    func encode(_ value: UInt64) throws { try encodeInteger(value) }

    func encodeInteger<T: BinaryInteger>(_ value: T) throws {
        array.slots.append(.value(try encoder.integer(value, at: codingPath + [nextKey])))
    }

    func encode<T: Encodable>(_ value: T) throws {
        let nested = ValueEncoder(options: encoder.options, codingPath: codingPath + [nextKey])
        array.slots.append(.value(try nested.encodeNested(value)))
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let path = codingPath + [nextKey]
        let nested = EncodedObject()
        array.slots.append(.object(nested))
        return KeyedEncodingContainer(KeyedEncoder<NestedKey>(encoder: encoder, object: nested, codingPath: path))
    }

    func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let path = codingPath + [nextKey]
        let nested = EncodedArray()
        array.slots.append(.array(nested))
        return UnkeyedEncoder(encoder: encoder, array: nested, codingPath: path)
    }

    func superEncoder() -> any Encoder {
        let nested = ValueEncoder(options: encoder.options, codingPath: codingPath + [nextKey])
        array.slots.append(.encoder(nested))
        return nested
    }
}

private struct SingleValueEncoder: SingleValueEncodingContainer {
    let encoder: ValueEncoder
    var codingPath: [any CodingKey] { encoder.codingPath }

    func store(_ value: JSONValue) { encoder.root = .value(value) }

    func encodeNil() throws { store(.null) }
    func encode(_ value: Bool) throws { store(.bool(value)) }
    func encode(_ value: String) throws { store(.string(value)) }
    func encode(_ value: Double) throws { store(try encoder.double(value, at: codingPath)) }
    func encode(_ value: Float) throws { store(try encoder.float(value, at: codingPath)) }
    func encode(_ value: Int) throws { store(.int(value)) }
    func encode(_ value: Int8) throws { store(try encoder.integer(value, at: codingPath)) }
    func encode(_ value: Int16) throws { store(try encoder.integer(value, at: codingPath)) }
    func encode(_ value: Int32) throws { store(try encoder.integer(value, at: codingPath)) }
    func encode(_ value: Int64) throws { store(try encoder.integer(value, at: codingPath)) }
    func encode(_ value: UInt) throws { store(try encoder.integer(value, at: codingPath)) }
    func encode(_ value: UInt8) throws { store(try encoder.integer(value, at: codingPath)) }
    func encode(_ value: UInt16) throws { store(try encoder.integer(value, at: codingPath)) }
    func encode(_ value: UInt32) throws { store(try encoder.integer(value, at: codingPath)) }
    func encode(_ value: UInt64) throws { store(try encoder.integer(value, at: codingPath)) }
    func encode<T: Encodable>(_ value: T) throws { store(try encoder.encodeNested(value)) }
}

// MARK: - Decoding

/// Decodes `Decodable` values from `JSONValue`. Unknown keys are ignored; a missing key, `null` where a value is
/// required, or a value of the wrong type throws `JSONCodingError` naming the key path.
public struct JSONValueDecoder {
    public var nonFiniteDoubles: NonFiniteDoubles
    public var userInfo: [CodingUserInfoKey: any Sendable] = [:]

    public init(nonFiniteDoubles: NonFiniteDoubles = .strings) {
        self.nonFiniteDoubles = nonFiniteDoubles
    }

    public func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws -> T {
        do {
            return try ValueDecoder(options: self, value: value, codingPath: []).decodeNested(type)
        } catch let error as DecodingError {
            throw JSONCodingError(error)
        }
    }

    /// Parses then decodes: a malformed document throws `JSONParseError` (with its byte offset), a document of the
    /// wrong shape `JSONCodingError`. Python's bare `NaN`/`Infinity` are accepted unless `nonFiniteDoubles` is `.error`.
    public func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try decode(type, from: JSONValue.parse(bytes, allowNonFinite: nonFiniteDoubles != .error))
    }
}

private struct ValueDecoder: Decoder {
    let options: JSONValueDecoder
    let value: JSONValue
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { options.userInfo }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let object) = value else { throw mismatch(expected: "an object") }
        return KeyedDecodingContainer(KeyedDecoder<Key>(decoder: self, object: object))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let items) = value else { throw mismatch(expected: "an array") }
        return UnkeyedDecoder(decoder: self, items: items)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { SingleValueDecoder(decoder: self) }

    func child(_ value: JSONValue, key: any CodingKey) -> ValueDecoder {
        ValueDecoder(options: options, value: value, codingPath: codingPath + [key])
    }

    func mismatch(expected: String) -> DecodingError {
        let found: String
        switch value {
        case .string(let s): found = "the string \(JSONValue.quoted(s.count > 40 ? String(s.prefix(40)) + "…" : s))"
        case .int(let i): found = "\(i)"
        case .double(let d): found = "\(d)"
        case .bool(let b): found = "\(b)"
        default: found = value.typeName
        }
        let context = DecodingError.Context(codingPath: codingPath, debugDescription: "expected \(expected), found \(found)")
        return value.isNull ? .valueNotFound(Any.self, context) : .typeMismatch(Any.self, context)
    }

    func decodeBool() throws -> Bool {
        guard case .bool(let b) = value else { throw mismatch(expected: "a boolean") }
        return b
    }

    func decodeString() throws -> String {
        guard case .string(let s) = value else { throw mismatch(expected: "a string") }
        return s
    }

    func decodeDouble() throws -> Double {
        switch value {
        case .int(let i): return Double(i)
        case .double(let d) where d.isFinite || options.nonFiniteDoubles != .error: return d
        case .string("nan") where options.nonFiniteDoubles == .strings: return .nan
        case .string("inf") where options.nonFiniteDoubles == .strings: return .infinity
        case .string("-inf") where options.nonFiniteDoubles == .strings: return -.infinity
        case .null where options.nonFiniteDoubles == .null: return .nan
        default: throw mismatch(expected: "a number")
        }
    }

    func decodeFloat() throws -> Float {
        let d = try decodeDouble()
        let f = Float(d)
        guard f.isFinite || !d.isFinite else { throw mismatch(expected: "a number within Float's range") }
        return f
    }

    func decodeInteger<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
        guard let whole = value.intValue else { throw mismatch(expected: "an integer") }
        guard let exact = T(exactly: whole) else { throw mismatch(expected: "an integer that fits \(T.self)") }
        return exact
    }

    func decodeNested<T: Decodable>(_ type: T.Type) throws -> T {
        switch type {
        case is JSONValue.Type: return value as! T
        case is JSONObject.Type:
            guard case .object(let object) = value else { throw mismatch(expected: "an object") }
            return object as! T
        case is String.Type: return try decodeString() as! T
        case is Bool.Type: return try decodeBool() as! T
        case is Double.Type: return try decodeDouble() as! T
        case is Float.Type: return try decodeFloat() as! T
        case is Int.Type: return try decodeInteger(Int.self) as! T
        default: return try T(from: self)
        }
    }
}

private struct KeyedDecoder<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let decoder: ValueDecoder
    /// Duplicate keys resolve to the last, as `JSONObject`'s subscript does.
    let values: [String: JSONValue]
    let allKeys: [Key]
    var codingPath: [any CodingKey] { decoder.codingPath }

    init(decoder: ValueDecoder, object: JSONObject) {
        self.decoder = decoder
        var values: [String: JSONValue] = [:]
        var keys: [Key] = []
        for entry in object.entries {
            if values.updateValue(entry.value, forKey: entry.key) == nil, let key = Key(stringValue: entry.key) { keys.append(key) }
        }
        self.values = values
        allKeys = keys
    }

    func contains(_ key: Key) -> Bool { values[key.stringValue] != nil }

    func child(_ key: Key) throws -> ValueDecoder {
        guard let value = values[key.stringValue] else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "missing required key"))
        }
        return decoder.child(value, key: key)
    }

    func decodeNil(forKey key: Key) throws -> Bool { try child(key).value.isNull }
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try child(key).decodeBool() }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try child(key).decodeString() }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try child(key).decodeDouble() }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try child(key).decodeFloat() }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try child(key).decodeInteger(type) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try child(key).decodeInteger(type) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try child(key).decodeInteger(type) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try child(key).decodeInteger(type) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try child(key).decodeInteger(type) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try child(key).decodeInteger(type) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try child(key).decodeInteger(type) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try child(key).decodeInteger(type) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try child(key).decodeInteger(type) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try child(key).decodeInteger(type) }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T { try child(key).decodeNested(type) }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try child(key).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer { try child(key).unkeyedContainer() }

    func superDecoder() throws -> any Decoder {
        decoder.child(values["super"] ?? .null, key: JSONStringKey("super"))
    }

    func superDecoder(forKey key: Key) throws -> any Decoder { decoder.child(values[key.stringValue] ?? .null, key: key) }
}

private struct UnkeyedDecoder: UnkeyedDecodingContainer {
    let decoder: ValueDecoder
    let items: [JSONValue]
    var currentIndex = 0
    var codingPath: [any CodingKey] { decoder.codingPath }
    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    init(decoder: ValueDecoder, items: [JSONValue]) {
        self.decoder = decoder
        self.items = items
    }

    /// The next element's decoder; the index advances only when decoding it succeeds, as Codable requires.
    func next() throws -> ValueDecoder {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(
                Any.self,
                .init(
                    codingPath: codingPath + [JSONIndexKey(currentIndex)], debugDescription: "the array has only \(items.count) elements"))
        }
        return decoder.child(items[currentIndex], key: JSONIndexKey(currentIndex))
    }

    mutating func advance<T>(_ read: (ValueDecoder) throws -> T) throws -> T {
        let value = try read(try next())
        currentIndex += 1
        return value
    }

    mutating func decodeNil() throws -> Bool {
        guard try next().value.isNull else { return false }
        currentIndex += 1
        return true
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool { try advance { try $0.decodeBool() } }
    mutating func decode(_ type: String.Type) throws -> String { try advance { try $0.decodeString() } }
    mutating func decode(_ type: Double.Type) throws -> Double { try advance { try $0.decodeDouble() } }
    mutating func decode(_ type: Float.Type) throws -> Float { try advance { try $0.decodeFloat() } }
    mutating func decode(_ type: Int.Type) throws -> Int { try advance { try $0.decodeInteger(type) } }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { try advance { try $0.decodeInteger(type) } }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { try advance { try $0.decodeInteger(type) } }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { try advance { try $0.decodeInteger(type) } }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try advance { try $0.decodeInteger(type) } }
    mutating func decode(_ type: UInt.Type) throws -> UInt { try advance { try $0.decodeInteger(type) } }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try advance { try $0.decodeInteger(type) } }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try advance { try $0.decodeInteger(type) } }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try advance { try $0.decodeInteger(type) } }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try advance { try $0.decodeInteger(type) } }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try advance { try $0.decodeNested(type) } }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try advance { try $0.container(keyedBy: type) }
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer { try advance { try $0.unkeyedContainer() } }

    mutating func superDecoder() throws -> any Decoder { try advance { $0 } }
}

private struct SingleValueDecoder: SingleValueDecodingContainer {
    let decoder: ValueDecoder
    var codingPath: [any CodingKey] { decoder.codingPath }

    func decodeNil() -> Bool { decoder.value.isNull }
    func decode(_ type: Bool.Type) throws -> Bool { try decoder.decodeBool() }
    func decode(_ type: String.Type) throws -> String { try decoder.decodeString() }
    func decode(_ type: Double.Type) throws -> Double { try decoder.decodeDouble() }
    func decode(_ type: Float.Type) throws -> Float { try decoder.decodeFloat() }
    func decode(_ type: Int.Type) throws -> Int { try decoder.decodeInteger(type) }
    func decode(_ type: Int8.Type) throws -> Int8 { try decoder.decodeInteger(type) }
    func decode(_ type: Int16.Type) throws -> Int16 { try decoder.decodeInteger(type) }
    func decode(_ type: Int32.Type) throws -> Int32 { try decoder.decodeInteger(type) }
    func decode(_ type: Int64.Type) throws -> Int64 { try decoder.decodeInteger(type) }
    func decode(_ type: UInt.Type) throws -> UInt { try decoder.decodeInteger(type) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try decoder.decodeInteger(type) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try decoder.decodeInteger(type) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try decoder.decodeInteger(type) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try decoder.decodeInteger(type) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try decoder.decodeNested(type) }
}

// MARK: - JSONValue as a Codable value

/// A `JSONValue` field in a record is written as the JSON it holds (raw config files, per-sample logs): through
/// `JSONValueEncoder`/`Decoder` exactly, through other coders as the nearest Codable primitives.
extension JSONValue: Codable {
    public init(from decoder: any Decoder) throws {
        if let own = decoder as? ValueDecoder {
            self = own.value
            return
        }
        if let object = try? decoder.container(keyedBy: JSONStringKey.self) {
            var entries = JSONObject()
            for key in object.allKeys { entries.append(key.stringValue, try object.decode(JSONValue.self, forKey: key)) }
            self = .object(entries)
        } else if var array = try? decoder.unkeyedContainer() {
            var items: [JSONValue] = []
            while !array.isAtEnd { items.append(try array.decode(JSONValue.self)) }
            self = .array(items)
        } else {
            let single = try decoder.singleValueContainer()
            if single.decodeNil() {
                self = .null
            } else if let b = try? single.decode(Bool.self) {
                self = .bool(b)
            } else if let i = try? single.decode(Int.self) {
                self = .int(i)
            } else if let d = try? single.decode(Double.self) {
                self = .double(d)
            } else {
                self = .string(try single.decode(String.self))
            }
        }
    }

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case .object(let object):
            var container = encoder.container(keyedBy: JSONStringKey.self)
            for entry in object.entries { try container.encode(entry.value, forKey: JSONStringKey(entry.key)) }
        case .array(let items):
            var container = encoder.unkeyedContainer()
            for item in items { try container.encode(item) }
        default:
            var container = encoder.singleValueContainer()
            switch self {
            case .null: try container.encodeNil()
            case .bool(let b): try container.encode(b)
            case .int(let i): try container.encode(i)
            case .double(let d): try container.encode(d)
            case .string(let s): try container.encode(s)
            case .array, .object: break
            }
        }
    }
}

extension JSONObject: Codable {
    public init(from decoder: any Decoder) throws {
        guard case .object(let object) = try JSONValue(from: decoder) else {
            throw DecodingError.typeMismatch(JSONObject.self, .init(codingPath: decoder.codingPath, debugDescription: "expected an object"))
        }
        self = object
    }

    public func encode(to encoder: any Encoder) throws { try JSONValue.object(self).encode(to: encoder) }
}
