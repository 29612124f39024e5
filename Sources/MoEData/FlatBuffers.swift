/// A minimal FlatBuffers table reader for Arrow IPC metadata: every offset is checked against the buffer,
/// and absent fields read as their schema defaults.
struct FlatBuffer {
    let bytes: [UInt8]
    let start: Int
    let end: Int

    func root() throws -> FlatTable {
        let offset = Int(try u32(start))
        return try table(at: try Checked.add(start, offset, "root table offset"))
    }

    func u32(_ position: Int) throws -> UInt32 { try read(UInt32.self, position, "offset") }

    func read<T: FixedWidthInteger>(_ type: T.Type, _ position: Int, _ what: String) throws -> T {
        guard position >= start, position <= end - MemoryLayout<T>.size else {
            throw FormatProblem("flatbuffer \(what) at byte \(position) is outside the metadata (\(start)..<\(end))")
        }
        return try bytes.littleEndian(T.self, at: position, what)
    }

    func table(at position: Int) throws -> FlatTable {
        let relative = Int(try read(Int32.self, position, "vtable offset"))
        let (vtable, overflow) = position.subtractingReportingOverflow(relative)
        guard !overflow else { throw FormatProblem("flatbuffer vtable offset overflows at byte \(position)") }
        let vtableSize = Int(try read(UInt16.self, vtable, "vtable size"))
        guard vtableSize >= 4, vtableSize % 2 == 0, vtable <= end - vtableSize else {
            throw FormatProblem("flatbuffer vtable at byte \(vtable) has invalid size \(vtableSize)")
        }
        return FlatTable(buffer: self, position: position, vtable: vtable, fieldCount: (vtableSize - 4) / 2)
    }
}

struct FlatTable {
    let buffer: FlatBuffer
    let position: Int
    let vtable: Int
    let fieldCount: Int

    /// Where field `index` is stored, or nil when the table leaves it at its default.
    func field(_ index: Int) throws -> Int? {
        guard index < fieldCount else { return nil }
        let offset = Int(try buffer.read(UInt16.self, vtable + 4 + 2 * index, "vtable entry"))
        return offset == 0 ? nil : position + offset
    }

    func scalar<T: FixedWidthInteger>(_ index: Int, default value: T) throws -> T {
        guard let at = try field(index) else { return value }
        return try buffer.read(T.self, at, "field \(index)")
    }

    func bool(_ index: Int, default value: Bool) throws -> Bool {
        try scalar(index, default: UInt8(value ? 1 : 0)) != 0
    }

    /// The target of an offset field (table, vector or string).
    private func target(_ index: Int) throws -> Int? {
        guard let at = try field(index) else { return nil }
        return try Checked.add(at, Int(try buffer.u32(at)), "field \(index) offset")
    }

    func table(_ index: Int) throws -> FlatTable? {
        guard let at = try target(index) else { return nil }
        return try buffer.table(at: at)
    }

    /// Start and element count of a vector whose elements take `elementSize` bytes.
    func vector(_ index: Int, elementSize: Int) throws -> (start: Int, count: Int)? {
        guard let at = try target(index) else { return nil }
        let count = Int(try buffer.u32(at))
        let start = at + 4
        let size = try Checked.multiply(count, elementSize, "vector size")
        _ = try Checked.range(start: start, length: size, limit: buffer.end, "flatbuffer vector")
        return (start, count)
    }

    func tables(_ index: Int) throws -> [FlatTable] {
        guard let (start, count) = try vector(index, elementSize: 4) else { return [] }
        return try (0..<count).map { item in
            let at = start + 4 * item
            return try buffer.table(at: try Checked.add(at, Int(try buffer.u32(at)), "table offset"))
        }
    }

    func string(_ index: Int) throws -> String? {
        guard let (start, count) = try vector(index, elementSize: 1) else { return nil }
        guard let text = String(validating: buffer.bytes[start..<(start + count)], as: UTF8.self) else {
            throw FormatProblem("flatbuffer string at byte \(start) is not UTF-8")
        }
        return text
    }
}
