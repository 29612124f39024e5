/// Parquet's schema tree with each node's definition and repetition levels, built from the footer's
/// depth-first flat list of `SchemaElement`s.
struct ParquetSchema {
    /// Nesting is bounded so that levels fit a byte and assembly recursion stays shallow.
    static let maxDepth = 32

    enum Repetition: Int64 { case required = 0, optional = 1, repeated = 2 }

    enum PhysicalType: Int64 {
        case boolean = 0, int32 = 1, int64 = 2, int96 = 3, float = 4, double = 5, byteArray = 6, fixedLenByteArray = 7
    }

    /// How a leaf's values become JSON.
    enum ValueKind: Equatable {
        case bool, signed, unsigned, float, double, string, binary
        case float16
    }

    struct Node {
        var name: String
        var repetition: Repetition
        /// nil for a group.
        var physicalType: PhysicalType?
        var typeLength: Int
        var valueKind: ValueKind
        var isList = false
        var isMap = false
        var children: [Int] = []
        var maxDefinition = 0
        var maxRepetition = 0
        /// Leaf column indices under this node (contiguous, in file order).
        var leaves: Range<Int> = 0..<0
        var path: [String] = []
    }

    var nodes: [Node] = []
    /// Node index of each leaf column, in column-chunk order.
    var leafNodes: [Int] = []
    /// The root's children: the table's top-level columns.
    var topLevel: [Int] { nodes.first?.children ?? [] }

    init(elements: [ThriftValue], bytes: [UInt8]) throws {
        guard !elements.isEmpty else { throw FormatProblem("schema is empty") }
        var cursor = 0
        _ = try addNode(elements, bytes, &cursor, depth: 0, parent: nil)
        guard cursor == elements.count else {
            throw FormatProblem("schema has \(elements.count - cursor) elements that belong to no parent")
        }
    }

    private mutating func addNode(_ elements: [ThriftValue], _ bytes: [UInt8], _ cursor: inout Int, depth: Int, parent: Int?) throws -> Int
    {
        guard depth <= Self.maxDepth else { throw FormatProblem("schema nested deeper than \(Self.maxDepth) levels") }
        guard cursor < elements.count else { throw FormatProblem("schema ends inside a group (element \(cursor) missing)") }
        guard case .structure(let element) = elements[cursor] else { throw FormatProblem("schema element \(cursor) is not a struct") }
        let elementIndex = cursor
        cursor += 1
        let name = try element.string(4, "SchemaElement.name", in: bytes) ?? ""
        let repetitionCode = try element.int(3, "SchemaElement.repetition_type") ?? 0
        guard let repetition = Repetition(rawValue: repetitionCode) else {
            throw FormatProblem("schema element \(elementIndex) (\(name)) has unknown repetition \(repetitionCode)")
        }
        let childCount = try element.int(5, "SchemaElement.num_children")
        let typeCode = try element.int(1, "SchemaElement.type")
        let converted = try element.int(6, "SchemaElement.converted_type")
        let logical = try element.structure(10, "SchemaElement.logicalType")
        let logicalKind = logical?.fields.keys.first
        var node = Node(
            name: name, repetition: parent == nil ? .required : repetition, physicalType: nil, typeLength: 0, valueKind: .binary)
        if let parent {
            let parentNode = nodes[parent]
            node.path = parentNode.path + [name]
            node.maxDefinition = parentNode.maxDefinition + (repetition == .required ? 0 : 1)
            node.maxRepetition = parentNode.maxRepetition + (repetition == .repeated ? 1 : 0)
        }
        let index = nodes.count
        if let childCount, childCount > 0 || typeCode == nil {
            guard childCount >= 0, childCount <= Int64(elements.count - cursor) else {
                throw FormatProblem(
                    "schema element \(elementIndex) (\(name)) claims \(childCount) children; only \(elements.count - cursor) elements follow"
                )
            }
            node.isList = converted == 3 || logicalKind == 3
            node.isMap = converted == 1 || converted == 2 || logicalKind == 2
            nodes.append(node)
            let firstLeaf = leafNodes.count
            var children: [Int] = []
            for _ in 0..<Int(childCount) {
                children.append(try addNode(elements, bytes, &cursor, depth: depth + 1, parent: index))
            }
            nodes[index].children = children
            nodes[index].leaves = firstLeaf..<leafNodes.count
            if (node.isList || node.isMap) && (children.count != 1 || nodes[children[0]].repetition != .repeated) {
                throw FormatProblem("list/map column \(node.path.joined(separator: ".")) does not have exactly one repeated child")
            }
            return index
        }
        guard parent != nil else { throw FormatProblem("schema root is not a group") }
        guard let typeCode, let physical = PhysicalType(rawValue: typeCode) else {
            throw FormatProblem(
                "column \(node.path.joined(separator: ".")) has unknown physical type \(typeCode.map(String.init) ?? "(none)")")
        }
        node.physicalType = physical
        if physical == .fixedLenByteArray {
            let length = try element.int(2, "SchemaElement.type_length") ?? -1
            guard length >= 0, length <= 1 << 20 else {
                throw FormatProblem("column \(node.path.joined(separator: ".")) has invalid fixed length \(length)")
            }
            node.typeLength = Int(length)
        }
        let isString = converted == 0 || converted == 4 || converted == 19 || logicalKind == 1 || logicalKind == 4 || logicalKind == 12
        var unsigned = converted.map { (11...14).contains($0) } ?? false
        if let logical, case .structure(let intType)? = logical.fields[10], let signed = try intType.bool(2, "IntType.isSigned") {
            unsigned = !signed
        }
        switch physical {
        case .boolean: node.valueKind = .bool
        case .int32, .int64: node.valueKind = unsigned ? .unsigned : .signed
        case .int96: node.valueKind = .binary
        case .float: node.valueKind = .float
        case .double: node.valueKind = .double
        case .byteArray: node.valueKind = isString ? .string : .binary
        case .fixedLenByteArray: node.valueKind = logicalKind == 15 && node.typeLength == 2 ? .float16 : (isString ? .string : .binary)
        }
        nodes.append(node)
        nodes[index].leaves = leafNodes.count..<(leafNodes.count + 1)
        leafNodes.append(index)
        return index
    }

    /// The node that holds one element of the list whose repeated child is `repeatedIndex`, following the
    /// format's backward-compatibility rules for 2-level lists written by older tools.
    func listElement(repeated repeatedIndex: Int, listName: String) -> Int {
        let repeated = nodes[repeatedIndex]
        if repeated.physicalType != nil || repeated.children.count != 1 { return repeatedIndex }
        if repeated.name == "array" || repeated.name == listName + "_tuple" { return repeatedIndex }
        return repeated.children[0]
    }
}
