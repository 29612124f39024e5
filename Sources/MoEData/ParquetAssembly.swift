import MoEJSON

/// Rebuilds nested values from the leaf columns' repetition and definition levels (the Dremel record
/// assembly): a definition level below a node's own says the node is null (optional) or its list is empty
/// (repeated); a repetition level at a list's level starts that list's next element.
struct ParquetRecordAssembler {
    let schema: ParquetSchema
    let leafData: [Int: ParquetLeafColumn]

    /// The values of top-level column `top`, one per row.
    func column(_ top: Int, rowCount: Int) throws -> [JSONValue] {
        let node = schema.nodes[top]
        if node.physicalType != nil, node.repetition != .repeated {
            let leaf = try data(node.leaves.lowerBound)
            guard leaf.count == rowCount else { throw FormatProblem("column has \(leaf.count) values for \(rowCount) rows") }
            return leaf.values
        }
        guard !node.leaves.isEmpty else { return Array(repeating: .object(JSONObject()), count: rowCount) }
        var starts: [[Int]] = []
        for leafIndex in node.leaves {
            let leaf = try data(leafIndex)
            var recordStarts: [Int] = []
            recordStarts.reserveCapacity(rowCount + 1)
            if leaf.repetition.isEmpty {
                recordStarts.append(contentsOf: 0..<leaf.count)
            } else {
                guard leaf.repetition.first == 0 else { throw FormatProblem("first repetition level is not 0") }
                for (index, level) in leaf.repetition.enumerated() where level == 0 { recordStarts.append(index) }
            }
            guard recordStarts.count == rowCount else {
                throw FormatProblem(
                    "leaf \(schema.nodes[schema.leafNodes[leafIndex]].path.joined(separator: ".")) holds \(recordStarts.count) records for \(rowCount) rows"
                )
            }
            recordStarts.append(leaf.count)
            starts.append(recordStarts)
        }
        var values: [JSONValue] = []
        values.reserveCapacity(rowCount)
        for row in 0..<rowCount {
            let ranges = starts.map { $0[row]..<$0[row + 1] }
            values.append(node.repetition == .repeated ? try repeated(top, element: top, ranges) : try build(top, ranges))
        }
        return values
    }

    private func data(_ leafIndex: Int) throws -> ParquetLeafColumn {
        guard let leaf = leafData[leafIndex] else { throw FormatProblem("leaf column \(leafIndex) was not read") }
        return leaf
    }

    private func definitionLevel(_ leaf: ParquetLeafColumn, _ entry: Int) -> Int {
        leaf.definition.isEmpty ? leaf.maxDefinition : Int(leaf.definition[entry])
    }

    /// One instance of `index` (its own repetition is handled by the caller) from its leaves' entry ranges.
    private func build(_ index: Int, _ ranges: [Range<Int>]) throws -> JSONValue {
        let node = schema.nodes[index]
        guard let first = ranges.first else { return .object(JSONObject()) }
        guard !first.isEmpty else { throw FormatProblem("\(node.path.joined(separator: ".")): no level entries for a value") }
        let leaf = try data(node.leaves.lowerBound)
        let level = definitionLevel(leaf, first.lowerBound)
        if node.repetition == .optional && level < node.maxDefinition { return .null }
        if node.physicalType != nil {
            guard first.count == 1, level == node.maxDefinition else {
                throw FormatProblem("\(node.path.joined(separator: ".")): levels do not match the schema")
            }
            return leaf.values[first.lowerBound]
        }
        if node.isList || node.isMap {
            let repeatedIndex = node.children[0]
            return try repeated(repeatedIndex, element: schema.listElement(repeated: repeatedIndex, listName: node.name), ranges)
        }
        var object = JSONObject()
        for child in node.children {
            let childNode = schema.nodes[child]
            let offset = node.leaves.lowerBound
            let childRanges = Array(ranges[(childNode.leaves.lowerBound - offset)..<(childNode.leaves.upperBound - offset)])
            let value = childNode.repetition == .repeated ? try repeated(child, element: child, childRanges) : try build(child, childRanges)
            object.append(childNode.name, value)
        }
        return .object(object)
    }

    /// The elements of repeated node `repeatedIndex`; each element is an instance of `element`.
    private func repeated(_ repeatedIndex: Int, element: Int, _ ranges: [Range<Int>]) throws -> JSONValue {
        let node = schema.nodes[repeatedIndex]
        guard let first = ranges.first else { return .array([]) }
        guard !first.isEmpty else { throw FormatProblem("\(node.path.joined(separator: ".")): no level entries for a list") }
        let firstLeaf = try data(node.leaves.lowerBound)
        if definitionLevel(firstLeaf, first.lowerBound) < node.maxDefinition { return .array([]) }
        let level = UInt8(node.maxRepetition)
        var elementRanges: [[Range<Int>]] = []
        for (offset, range) in ranges.enumerated() {
            let leaf = try data(node.leaves.lowerBound + offset)
            guard leaf.repetition.count >= range.upperBound else {
                throw FormatProblem("\(node.path.joined(separator: ".")): repetition levels missing")
            }
            var pieces: [Range<Int>] = []
            var start = range.lowerBound
            for entry in (range.lowerBound + 1)..<range.upperBound where leaf.repetition[entry] <= level {
                pieces.append(start..<entry)
                start = entry
            }
            pieces.append(start..<range.upperBound)
            if let count = elementRanges.first?.count, count != pieces.count {
                throw FormatProblem("\(node.path.joined(separator: ".")): leaves disagree on the number of list elements")
            }
            elementRanges.append(pieces)
        }
        var items: [JSONValue] = []
        items.reserveCapacity(elementRanges[0].count)
        for item in 0..<elementRanges[0].count {
            items.append(try build(element, elementRanges.map { $0[item] }))
        }
        return .array(items)
    }
}
