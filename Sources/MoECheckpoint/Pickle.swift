import Foundation

/// Data read from a Python pickle. Nothing is ever called: a class applied to arguments
/// (REDUCE, NEWOBJ, BUILD…) becomes an `.object` recording the class name, arguments and state.
public indirect enum PickleValue: Sendable, Equatable {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer outside Int64, as decimal digits (with a leading "-" when negative).
    case bigInt(String)
    case float(Double)
    case string(String)
    /// `bytes` and `bytearray`.
    case bytes([UInt8])
    case tuple([PickleValue])
    case list([PickleValue])
    /// Items in pickle order (keys may be objects, so this is not a Swift dictionary).
    case dict([PickleDictItem])
    case set([PickleValue])
    case frozenset([PickleValue])
    /// An allowlisted global used as a value (e.g. `torch.float32`).
    case global(module: String, name: String)
    case object(PickleObject)
    /// What a persistent-id opcode referred to (torch.save uses it for tensor storages).
    case persistent(PickleValue)
}

public struct PickleDictItem: Sendable, Equatable {
    public let key: PickleValue
    public let value: PickleValue
    public init(key: PickleValue, value: PickleValue) {
        self.key = key
        self.value = value
    }
}

/// An allowlisted class applied to arguments, with the state BUILD gave it.
public struct PickleObject: Sendable, Equatable {
    /// "module.name" of the class or function.
    public let type: String
    public let args: [PickleValue]
    /// Keyword arguments (NEWOBJ_EX only).
    public let kwargs: [PickleDictItem]
    public let state: PickleValue?

    /// A dataclass-style field: from the state dict, a `(dict, slots)` state, or keyword arguments.
    public func field(_ name: String) -> PickleValue? {
        if let value = state?[name] { return value }
        if case .tuple(let parts)? = state {
            for part in parts { if let value = part[name] { return value } }
        }
        return kwargs.first(where: { $0.key == .string(name) })?.value
    }
}

extension PickleValue {
    /// The value under a string key of a dict.
    public subscript(key: String) -> PickleValue? {
        guard case .dict(let items) = self else { return nil }
        return items.last(where: { $0.key == .string(key) })?.value
    }

    public var intValue: Int? {
        switch self {
        case .int(let v): return v
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var boolValue: Bool? {
        switch self {
        case .bool(let b): return b
        case .int(let v): return v != 0
        default: return nil
        }
    }

    /// Items of a tuple or list.
    public var sequenceItems: [PickleValue]? {
        switch self {
        case .tuple(let items), .list(let items): return items
        default: return nil
        }
    }

    public var dictItems: [PickleDictItem]? {
        if case .dict(let items) = self { return items }
        return nil
    }

    public var object: PickleObject? {
        if case .object(let o) = self { return o }
        return nil
    }

    /// A tuple/list of ints, or a `torch.Size` built from one.
    public var intArray: [Int]? {
        if case .object(let o) = self, o.type == "torch.Size" {
            if o.args.isEmpty { return [] }
            return o.args.count == 1 ? o.args[0].intArray : nil
        }
        guard let items = sequenceItems else { return nil }
        var result: [Int] = []
        result.reserveCapacity(items.count)
        for item in items {
            guard let v = item.intValue else { return nil }
            result.append(v)
        }
        return result
    }
}

extension PickleValue: CustomStringConvertible {
    public var description: String {
        switch self {
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let v): return String(v)
        case .bigInt(let s): return s
        case .float(let d): return String(d)
        case .string(let s): return "'\(s)'"
        case .bytes(let b): return "b<\(b.count) bytes>"
        case .tuple(let items): return "(" + items.map(\.description).joined(separator: ", ") + (items.count == 1 ? ",)" : ")")
        case .list(let items): return "[" + items.map(\.description).joined(separator: ", ") + "]"
        case .dict(let items): return "{" + items.map { "\($0.key): \($0.value)" }.joined(separator: ", ") + "}"
        case .set(let items): return "set(" + items.map(\.description).joined(separator: ", ") + ")"
        case .frozenset(let items): return "frozenset(" + items.map(\.description).joined(separator: ", ") + ")"
        case .global(let module, let name): return "\(module).\(name)"
        case .object(let o):
            var text = o.type + "(" + o.args.map(\.description).joined(separator: ", ") + ")"
            if let state = o.state { text += " state=\(state)" }
            return text
        case .persistent(let pid): return "persistent(\(pid))"
        }
    }
}

/// The globals a pickle may name. Everything else is refused, so reading a file never runs code.
public struct PickleAllowlist: Sendable {
    /// "module.name" entries.
    public var names: Set<String>
    /// Whether `torch.<X>Storage` types (torch.save persistent ids) are allowed.
    public var torchStorageTypes: Bool

    public init(names: Set<String>, torchStorageTypes: Bool) {
        self.names = names
        self.torchStorageTypes = torchStorageTypes
    }

    public func allows(module: String, name: String) -> Bool {
        if names.contains(module + "." + name) { return true }
        return torchStorageTypes && module == "torch" && name.hasSuffix("Storage")
            && name.allSatisfy { $0.isLetter || $0.isNumber }
    }

    /// DCP `.metadata` and torch.save `data.pkl` globals.
    public static let checkpoint: PickleAllowlist = {
        let dcpMetadata = [
            "Metadata", "TensorStorageMetadata", "TensorProperties", "ChunkStorageMetadata",
            "BytesStorageMetadata", "MetadataIndex", "StorageMeta", "_MEM_FORMAT_ENCODING",
        ]
        .map { "torch.distributed.checkpoint.metadata." + $0 }
        let dtypes = [
            "float32", "float", "float64", "double", "float16", "half", "bfloat16",
            "int64", "long", "int32", "int", "int16", "short", "int8", "uint8", "bool",
            "uint16", "uint32", "uint64", "complex32", "chalf", "complex64", "cfloat",
            "complex128", "cdouble", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz",
            "float8_e5m2fnuz", "float8_e8m0fnu", "qint8", "quint8", "qint32", "quint4x2",
        ]
        .map { "torch." + $0 }
        let others = [
            "torch.distributed.checkpoint.filesystem._StorageInfo", "torch.Size",
            "torch.serialization._get_layout", "pathlib.PosixPath", "pathlib.WindowsPath",
            "torch._utils._rebuild_tensor_v2", "collections.OrderedDict",
        ]
        return PickleAllowlist(names: Set(dcpMetadata + dtypes + others), torchStorageTypes: true)
    }()
}

/// A pickle virtual machine (protocols 0–5) that only builds data.
public struct Unpickler {
    /// Nesting allowed in the result; real checkpoint pickles nest about a dozen levels.
    public static let maximumDepth = 100

    private let data: UnsafeRawBufferPointer
    private let source: String
    private let allowlist: PickleAllowlist

    /// `source` names the file in error messages.
    public init(_ data: UnsafeRawBufferPointer, source: String, allowlist: PickleAllowlist = .checkpoint) {
        self.data = data
        self.source = source
        self.allowlist = allowlist
    }

    public static func load(
        _ data: UnsafeRawBufferPointer, source: String,
        allowlist: PickleAllowlist = .checkpoint
    ) throws -> PickleValue {
        try Unpickler(data, source: source, allowlist: allowlist).load()
    }

    public static func load(
        _ data: [UInt8], source: String,
        allowlist: PickleAllowlist = .checkpoint
    ) throws -> PickleValue {
        try data.withUnsafeBytes { try load($0, source: source, allowlist: allowlist) }
    }

    public func load() throws -> PickleValue {
        var machine = Machine(
            reader: ByteReader(data), source: source, allowlist: allowlist,
            expansionBudget: 1_000_000 + 16 * data.count)
        return try machine.run()
    }
}

// MARK: - The machine

/// Containers live in an arena and refer to each other by index: sharing through the memo and
/// mutation after memoization (APPENDS, SETITEMS, BUILD) then work as in Python, and tearing
/// down a hostile, deeply nested pickle never recurses.
private enum Node {
    case leaf(PickleValue)
    case ref(Int)
}

private enum ContainerKind {
    case tuple, list, dict, set, frozenset
    case object(String)
}

private struct Container {
    var kind: ContainerKind
    /// Elements; for a dict, keys and values alternate; for an object, its arguments.
    var items: [Node] = []
    var kwargs: [Node] = []
    var state: Node? = nil
}

private struct Machine {
    var reader: ByteReader
    let source: String
    let allowlist: PickleAllowlist
    /// Values the whole file may still expand to. Shared references make a few bytes expand to many
    /// values, so every expansion (each BINPERSID argument, the final result, OrderedDict copies) draws
    /// from this one budget rather than a fresh one per occurrence.
    var expansionBudget: Int

    var stack: [Node] = []
    var marks: [Int] = []
    var memo: [Int: Node] = [:]
    var arena: [Container] = []
    var opcodeStart = 0

    init(reader: ByteReader, source: String, allowlist: PickleAllowlist, expansionBudget: Int) {
        self.reader = reader
        self.source = source
        self.allowlist = allowlist
        self.expansionBudget = expansionBudget
    }

    func failure(_ message: String) -> CheckpointError {
        CheckpointError("\(source): pickle \(message) (at byte \(opcodeStart))")
    }

    mutating func run() throws -> PickleValue {
        while true {
            opcodeStart = reader.position
            guard let opcode = reader.u8() else { throw failure("ends without STOP (truncated?)") }
            if opcode == 0x2E { // STOP
                return try freezeWithinBudget(try pop())
            }
            try execute(opcode)
        }
    }

    // MARK: stack

    mutating func push(_ node: Node) { stack.append(node) }
    mutating func push(_ value: PickleValue) { stack.append(.leaf(value)) }

    mutating func pop() throws -> Node {
        guard stack.count > (marks.last ?? 0), let top = stack.popLast() else { throw failure("stack underflow") }
        return top
    }

    func top() throws -> Node {
        guard stack.count > (marks.last ?? 0), let last = stack.last else { throw failure("stack underflow") }
        return last
    }

    mutating func popToMark() throws -> [Node] {
        guard let mark = marks.popLast() else { throw failure("has no MARK to pop to") }
        let items = Array(stack[mark...])
        stack.removeSubrange(mark...)
        return items
    }

    mutating func newContainer(_ kind: ContainerKind, items: [Node] = []) -> Node {
        arena.append(Container(kind: kind, items: items))
        return .ref(arena.count - 1)
    }

    // MARK: reading operands

    mutating func bytes(_ count: Int, _ what: String) throws -> UnsafeRawBufferPointer {
        guard let raw = reader.take(count) else { throw failure("truncated \(what) (needs \(count) bytes)") }
        return raw
    }

    mutating func length(_ width: Int, _ what: String) throws -> Int {
        guard let raw = reader.unsigned(width) else { throw failure("truncated \(what) length") }
        guard raw <= UInt64(reader.remaining) else {
            throw failure("\(what) length \(raw) exceeds the \(reader.remaining) bytes left")
        }
        return Int(raw)
    }

    mutating func textLine(_ what: String) throws -> String {
        guard let raw = reader.line() else { throw failure("truncated \(what) (no newline)") }
        guard let text = String(validating: raw, as: UTF8.self) else { throw failure("\(what) is not UTF-8") }
        return text
    }

    mutating func utf8(_ count: Int) throws -> String {
        let raw = try bytes(count, "string")
        guard let text = String(validating: raw, as: UTF8.self) else { throw failure("string is not valid UTF-8") }
        return text
    }

    mutating func memoIndex(_ width: Int) throws -> Int {
        guard let raw = reader.unsigned(width) else { throw failure("truncated memo index") }
        return Int(raw)
    }

    func memoGet(_ index: Int) throws -> Node {
        guard let node = memo[index] else { throw failure("refers to memo entry \(index), which was never stored") }
        return node
    }

    // MARK: opcodes

    mutating func execute(_ opcode: UInt8) throws {
        switch opcode {
        case 0x80: // PROTO
            guard let version = reader.u8() else { throw failure("truncated PROTO") }
            guard version <= 5 else { throw failure("protocol \(version) is not supported (0–5 are)") }
        case 0x95: // FRAME: frames only batch reads; the stream is already in memory.
            _ = try length(8, "FRAME")
        case 0x28: // MARK
            marks.append(stack.count)
        case 0x30: // POP
            if stack.count > (marks.last ?? 0) { stack.removeLast() } else { _ = try popToMark() }
        case 0x31: // POP_MARK
            _ = try popToMark()
        case 0x32: // DUP
            push(try top())

        // Constants and numbers
        case 0x4E: push(.none) // NONE
        case 0x88: push(.bool(true)) // NEWTRUE
        case 0x89: push(.bool(false)) // NEWFALSE
        case 0x4A: // BININT
            guard let v = reader.i32() else { throw failure("truncated BININT") }
            push(.int(Int(v)))
        case 0x4B: // BININT1
            guard let v = reader.u8() else { throw failure("truncated BININT1") }
            push(.int(Int(v)))
        case 0x4D: // BININT2
            guard let v = reader.u16() else { throw failure("truncated BININT2") }
            push(.int(Int(v)))
        case 0x8A: // LONG1
            let n = try length(1, "LONG1")
            push(try littleEndianInteger(try bytes(n, "LONG1")))
        case 0x8B: // LONG4
            guard let n = reader.i32() else { throw failure("truncated LONG4") }
            guard n >= 0 else { throw failure("LONG4 has a negative length") }
            push(try littleEndianInteger(try bytes(Int(n), "LONG4")))
        case 0x49: // INT (text)
            let text = try textLine("INT")
            if text == "00" {
                push(.bool(false))
            } else if text == "01" {
                push(.bool(true))
            } else {
                push(try decimalInteger(text))
            }
        case 0x4C: // LONG (text)
            var text = try textLine("LONG")
            if text.hasSuffix("L") { text.removeLast() }
            push(try decimalInteger(text))
        case 0x47: // BINFLOAT (big-endian)
            let raw = try bytes(8, "BINFLOAT")
            var bits: UInt64 = 0
            for byte in raw { bits = bits << 8 | UInt64(byte) }
            push(.float(Double(bitPattern: bits)))
        case 0x46: // FLOAT (text)
            let text = try textLine("FLOAT")
            guard let v = Double(text.trimmingCharacters(in: .whitespaces)) else { throw failure("bad FLOAT '\(text)'") }
            push(.float(v))

        // Strings and bytes
        case 0x8C: push(.string(try utf8(try length(1, "SHORT_BINUNICODE")))) // SHORT_BINUNICODE
        case 0x58: push(.string(try utf8(try length(4, "BINUNICODE")))) // BINUNICODE
        case 0x8D: push(.string(try utf8(try length(8, "BINUNICODE8")))) // BINUNICODE8
        case 0x43: push(.bytes(Array(try bytes(try length(1, "SHORT_BINBYTES"), "SHORT_BINBYTES")))) // SHORT_BINBYTES
        case 0x42: push(.bytes(Array(try bytes(try length(4, "BINBYTES"), "BINBYTES")))) // BINBYTES
        case 0x8E: push(.bytes(Array(try bytes(try length(8, "BINBYTES8"), "BINBYTES8")))) // BINBYTES8
        case 0x96: push(.bytes(Array(try bytes(try length(8, "BYTEARRAY8"), "BYTEARRAY8")))) // BYTEARRAY8
        case 0x55: push(python2String(Array(try bytes(try length(1, "SHORT_BINSTRING"), "SHORT_BINSTRING")))) // SHORT_BINSTRING
        case 0x54: // BINSTRING
            guard let n = reader.i32(), n >= 0 else { throw failure("bad BINSTRING length") }
            push(python2String(Array(try bytes(Int(n), "BINSTRING"))))
        case 0x53: // STRING (quoted text)
            push(python2String(try quotedString(try rawLine("STRING"))))
        case 0x56: // UNICODE (raw-unicode-escape text)
            push(.string(try rawUnicodeEscape(try rawLine("UNICODE"))))

        // Containers
        case 0x29: push(newContainer(.tuple)) // EMPTY_TUPLE
        case 0x85: // TUPLE1
            let a = try pop()
            push(newContainer(.tuple, items: [a]))
        case 0x86: // TUPLE2
            let b = try pop(), a = try pop()
            push(newContainer(.tuple, items: [a, b]))
        case 0x87: // TUPLE3
            let c = try pop(), b = try pop(), a = try pop()
            push(newContainer(.tuple, items: [a, b, c]))
        case 0x74: push(newContainer(.tuple, items: try popToMark())) // TUPLE
        case 0x5D: push(newContainer(.list)) // EMPTY_LIST
        case 0x6C: push(newContainer(.list, items: try popToMark())) // LIST
        case 0x7D: push(newContainer(.dict)) // EMPTY_DICT
        case 0x64: // DICT
            let items = try popToMark()
            guard items.count % 2 == 0 else { throw failure("DICT has an odd number of items") }
            push(newContainer(.dict, items: items))
        case 0x8F: push(newContainer(.set)) // EMPTY_SET
        case 0x91: push(newContainer(.frozenset, items: try popToMark())) // FROZENSET
        case 0x61: // APPEND
            let item = try pop()
            try extend(try top(), with: [item], opcode: "APPEND", expecting: .list)
        case 0x65: // APPENDS
            let items = try popToMark()
            try extend(try top(), with: items, opcode: "APPENDS", expecting: .list)
        case 0x90: // ADDITEMS
            let items = try popToMark()
            try extend(try top(), with: items, opcode: "ADDITEMS", expecting: .set)
        case 0x73: // SETITEM
            let value = try pop(), key = try pop()
            try extend(try top(), with: [key, value], opcode: "SETITEM", expecting: .dict)
        case 0x75: // SETITEMS
            let items = try popToMark()
            guard items.count % 2 == 0 else { throw failure("SETITEMS has an odd number of items") }
            try extend(try top(), with: items, opcode: "SETITEMS", expecting: .dict)

        // Memo
        case 0x94: // MEMOIZE
            memo[memo.count] = try top()
        case 0x71: memo[try memoIndex(1)] = try top() // BINPUT
        case 0x72: memo[try memoIndex(4)] = try top() // LONG_BINPUT
        case 0x70: memo[try textIndex("PUT")] = try top() // PUT
        case 0x68: push(try memoGet(try memoIndex(1))) // BINGET
        case 0x6A: push(try memoGet(try memoIndex(4))) // LONG_BINGET
        case 0x67: push(try memoGet(try textIndex("GET"))) // GET

        // Globals and objects
        case 0x63: // GLOBAL
            let module = try textLine("GLOBAL module"), name = try textLine("GLOBAL name")
            push(try resolveGlobal(module: module, name: name))
        case 0x93: // STACK_GLOBAL
            let name = try pop(), module = try pop()
            guard case .leaf(.string(let n)) = name, case .leaf(.string(let m)) = module else {
                throw failure("STACK_GLOBAL needs two strings")
            }
            push(try resolveGlobal(module: m, name: n))
        case 0x52: // REDUCE
            let args = try pop(), callable = try pop()
            push(try instantiate(callable, arguments: try tupleItems(args, "REDUCE"), kwargs: []))
        case 0x81: // NEWOBJ
            let args = try pop(), cls = try pop()
            push(try instantiate(cls, arguments: try tupleItems(args, "NEWOBJ"), kwargs: []))
        case 0x92: // NEWOBJ_EX
            let kwargs = try pop(), args = try pop(), cls = try pop()
            guard case .ref(let k) = kwargs, case .dict = arena[k].kind else { throw failure("NEWOBJ_EX needs a kwargs dict") }
            push(try instantiate(cls, arguments: try tupleItems(args, "NEWOBJ_EX"), kwargs: arena[k].items))
        case 0x69: // INST
            let module = try textLine("INST module"), name = try textLine("INST name")
            let cls = try resolveGlobal(module: module, name: name)
            push(try instantiate(cls, arguments: try popToMark(), kwargs: []))
        case 0x6F: // OBJ
            var items = try popToMark()
            guard !items.isEmpty else { throw failure("OBJ without a class") }
            let cls = items.removeFirst()
            push(try instantiate(cls, arguments: items, kwargs: []))
        case 0x62: // BUILD
            let state = try pop()
            guard case .ref(let index) = try top(), case .object = arena[index].kind else {
                throw failure("BUILD on something that is not an object")
            }
            arena[index].state = state
        case 0x51: // BINPERSID
            push(.persistent(try freezeWithinBudget(try pop())))
        case 0x50: // PERSID
            push(.persistent(.string(try textLine("PERSID"))))

        case 0x98: break // READONLY_BUFFER: mutability does not matter to data.
        case 0x97: throw failure("uses out-of-band buffers (NEXT_BUFFER), which a file cannot carry")
        case 0x82, 0x83, 0x84: throw failure("uses the copyreg extension registry (EXT1/2/4), which is not supported")
        default:
            throw failure(String(format: "has unknown opcode 0x%02x", opcode))
        }
    }

    mutating func extend(_ target: Node, with items: [Node], opcode: String, expecting kind: ContainerKind) throws {
        guard case .ref(let index) = target else { throw failure("\(opcode) on a value that is not a container") }
        switch (arena[index].kind, kind) {
        case (.list, .list), (.set, .set), (.dict, .dict):
            arena[index].items.append(contentsOf: items)
        default:
            throw failure("\(opcode) on the wrong kind of container")
        }
    }

    func tupleItems(_ node: Node, _ opcode: String) throws -> [Node] {
        guard case .ref(let index) = node, case .tuple = arena[index].kind else {
            throw failure("\(opcode) arguments are not a tuple")
        }
        return arena[index].items
    }

    func resolveGlobal(module: String, name: String) throws -> Node {
        guard allowlist.allows(module: module, name: name) else {
            throw CheckpointError("\(source): pickle names the global \(module).\(name), which is not allowed (at byte \(opcodeStart))")
        }
        return .leaf(.global(module: module, name: name))
    }

    mutating func instantiate(_ callable: Node, arguments: [Node], kwargs: [Node]) throws -> Node {
        guard case .leaf(.global(let module, let name)) = callable else {
            throw failure("applies something that is not an allowed global")
        }
        if module == "collections" && name == "OrderedDict" {
            // OrderedDict() or OrderedDict([(k, v), …]): keep it a plain dict so SETITEMS works on it.
            var items: [Node] = []
            if let first = arguments.first, case .ref(let index) = first {
                try chargeExpansion(2 * arena[index].items.count)
                for pair in arena[index].items {
                    guard case .ref(let p) = pair, arena[p].items.count == 2 else {
                        throw failure("OrderedDict argument is not a sequence of pairs")
                    }
                    items.append(contentsOf: arena[p].items)
                }
            }
            return newContainer(.dict, items: items)
        }
        arena.append(Container(kind: .object(module + "." + name), items: arguments, kwargs: kwargs))
        return .ref(arena.count - 1)
    }

    // MARK: freezing into values

    mutating func freezeWithinBudget(_ node: Node) throws -> PickleValue {
        var budget = expansionBudget
        let value = try freeze(node, depth: 0, budget: &budget)
        expansionBudget = budget
        return value
    }

    mutating func chargeExpansion(_ count: Int) throws {
        expansionBudget -= count
        guard expansionBudget >= 0 else { throw failure("expands to too many values (shared references?)") }
    }

    func freeze(_ node: Node, depth: Int, budget: inout Int) throws -> PickleValue {
        budget -= 1
        guard budget >= 0 else { throw failure("expands to too many values (shared references?)") }
        guard depth <= Unpickler.maximumDepth else {
            throw failure("nests deeper than \(Unpickler.maximumDepth) levels (or refers to itself)")
        }
        switch node {
        case .leaf(let value):
            return value
        case .ref(let index):
            let container = arena[index]
            let items = try container.items.map { try freeze($0, depth: depth + 1, budget: &budget) }
            switch container.kind {
            case .tuple: return .tuple(items)
            case .list: return .list(items)
            case .set: return .set(items)
            case .frozenset: return .frozenset(items)
            case .dict: return .dict(pairs(items))
            case .object(let type):
                let kwargs = try container.kwargs.map { try freeze($0, depth: depth + 1, budget: &budget) }
                let state = try container.state.map { try freeze($0, depth: depth + 1, budget: &budget) }
                return .object(PickleObject(type: type, args: items, kwargs: pairs(kwargs), state: state))
            }
        }
    }

    func pairs(_ flat: [PickleValue]) -> [PickleDictItem] {
        stride(from: 0, to: flat.count - 1, by: 2).map { PickleDictItem(key: flat[$0], value: flat[$0 + 1]) }
    }

    // MARK: number and text decoding

    /// A two's-complement little-endian integer (LONG1/LONG4).
    func littleEndianInteger(_ raw: UnsafeRawBufferPointer) throws -> PickleValue {
        if raw.isEmpty { return .int(0) }
        if raw.count <= 8 {
            var value: UInt64 = 0
            for i in stride(from: raw.count - 1, through: 0, by: -1) { value = value << 8 | UInt64(raw[i]) }
            let shift = UInt64(64 - 8 * raw.count)
            // Shift the sign bit to the top, then back with sign extension.
            return .int(Int(Int64(bitPattern: value << shift) >> Int64(shift)))
        }
        guard raw.count <= 1024 else { throw failure("integer of \(raw.count) bytes is too large") }
        return .bigInt(decimalString(twosComplementLittleEndian: Array(raw)))
    }

    func decimalInteger(_ text: String) throws -> PickleValue {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if let v = Int(trimmed) { return .int(v) }
        let digits = trimmed.hasPrefix("-") || trimmed.hasPrefix("+") ? trimmed.dropFirst() : Substring(trimmed)
        guard !digits.isEmpty, digits.count <= 2500, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            throw failure("bad integer '\(text.prefix(40))'")
        }
        let stripped = digits.drop(while: { $0 == "0" })
        let magnitude = stripped.isEmpty ? "0" : String(stripped)
        return .bigInt(trimmed.hasPrefix("-") && magnitude != "0" ? "-" + magnitude : magnitude)
    }

    mutating func textIndex(_ what: String) throws -> Int {
        let text = try textLine(what)
        guard let index = Int(text), index >= 0 else { throw failure("bad \(what) index '\(text.prefix(40))'") }
        return index
    }

    mutating func rawLine(_ what: String) throws -> [UInt8] {
        guard let raw = reader.line() else { throw failure("truncated \(what) (no newline)") }
        return Array(raw)
    }

    /// Python 2 `str` data: text when it is UTF-8, bytes otherwise.
    func python2String(_ raw: [UInt8]) -> PickleValue {
        if let text = String(validating: raw, as: UTF8.self) { return .string(text) }
        return .bytes(raw)
    }

    /// The body of a protocol-0 STRING: a Python repr in single or double quotes.
    func quotedString(_ line: [UInt8]) throws -> [UInt8] {
        guard line.count >= 2, let quote = line.first, quote == 0x27 || quote == 0x22, line.last == quote else {
            throw failure("STRING is not quoted")
        }
        var out: [UInt8] = []
        var i = 1
        let end = line.count - 1
        while i < end {
            let c = line[i]
            guard c == 0x5C else { out.append(c); i += 1; continue }
            guard i + 1 < end else { throw failure("STRING ends inside an escape") }
            let e = line[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "n"): out.append(0x0A)
            case UInt8(ascii: "t"): out.append(0x09)
            case UInt8(ascii: "r"): out.append(0x0D)
            case UInt8(ascii: "0"): out.append(0x00)
            case UInt8(ascii: "\\"), UInt8(ascii: "'"), UInt8(ascii: "\""): out.append(e)
            case UInt8(ascii: "x"):
                guard i + 2 <= end, let v = UInt8(String(decoding: line[i..<(i + 2)], as: UTF8.self), radix: 16) else {
                    throw failure("STRING has a bad \\x escape")
                }
                out.append(v)
                i += 2
            default: throw failure("STRING has an unsupported escape")
            }
        }
        return out
    }

    /// Python's raw-unicode-escape: bytes are Latin-1 code points, except `\uXXXX` and `\UXXXXXXXX`.
    func rawUnicodeEscape(_ line: [UInt8]) throws -> String {
        var scalars = String.UnicodeScalarView()
        var i = 0
        while i < line.count {
            let c = line[i]
            if c == 0x5C, i + 1 < line.count, line[i + 1] == UInt8(ascii: "u") || line[i + 1] == UInt8(ascii: "U") {
                let width = line[i + 1] == UInt8(ascii: "u") ? 4 : 8
                guard i + 2 + width <= line.count,
                    let code = UInt32(String(decoding: line[(i + 2)..<(i + 2 + width)], as: UTF8.self), radix: 16),
                    let scalar = Unicode.Scalar(code)
                else {
                    throw failure("UNICODE has a bad \\u escape")
                }
                scalars.append(scalar)
                i += 2 + width
            } else {
                scalars.append(Unicode.Scalar(c))
                i += 1
            }
        }
        return String(scalars)
    }
}

/// Decimal digits of a two's-complement little-endian integer of any width.
func decimalString(twosComplementLittleEndian raw: [UInt8]) -> String {
    let negative = (raw.last ?? 0) & 0x80 != 0
    var magnitude = raw
    if negative {
        // Negate: invert and add one.
        var carry: UInt16 = 1
        for i in magnitude.indices {
            let sum = UInt16(~magnitude[i]) + carry
            magnitude[i] = UInt8(truncatingIfNeeded: sum)
            carry = sum >> 8
        }
    }
    // Base-10^9 digits by repeated division of 32-bit limbs (most significant first).
    var limbs: [UInt32] = []
    for start in stride(from: 0, to: magnitude.count, by: 4) {
        var limb: UInt32 = 0
        for j in stride(from: min(start + 4, magnitude.count) - 1, through: start, by: -1) {
            limb = limb << 8 | UInt32(magnitude[j])
        }
        limbs.append(limb)
    }
    limbs.reverse()
    var groups: [UInt32] = []
    while limbs.contains(where: { $0 != 0 }) {
        var remainder: UInt64 = 0
        for k in limbs.indices {
            let current = remainder << 32 | UInt64(limbs[k])
            limbs[k] = UInt32(current / 1_000_000_000)
            remainder = current % 1_000_000_000
        }
        groups.append(UInt32(remainder))
    }
    guard let last = groups.popLast() else { return "0" }
    var text = String(last)
    for group in groups.reversed() {
        let digits = String(group)
        text += String(repeating: "0", count: 9 - digits.count) + digits
    }
    return negative ? "-" + text : text
}
