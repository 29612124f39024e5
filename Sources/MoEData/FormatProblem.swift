/// What is wrong inside a binary data file, before the reader adds the file name and where it was reading
/// (row group, column, page, message): the low-level decoders know only their own buffer.
struct FormatProblem: Error {
    let message: String
    init(_ message: String) { self.message = message }
}

/// Arithmetic on numbers read from a file: overflow becomes a `FormatProblem` naming the quantity.
enum Checked {
    static func add(_ a: Int, _ b: Int, _ what: @autoclosure () -> String) throws -> Int {
        let (sum, overflow) = a.addingReportingOverflow(b)
        if overflow { throw FormatProblem("\(what()) overflows (\(a) + \(b))") }
        return sum
    }

    static func multiply(_ a: Int, _ b: Int, _ what: @autoclosure () -> String) throws -> Int {
        let (product, overflow) = a.multipliedReportingOverflow(by: b)
        if overflow { throw FormatProblem("\(what()) overflows (\(a) × \(b))") }
        return product
    }

    /// A count or size read from a file as a signed integer: must be ≥ 0 and fit an `Int`.
    static func count<T: BinaryInteger>(_ value: T, _ what: @autoclosure () -> String) throws -> Int {
        guard value >= 0, let result = Int(exactly: value) else {
            throw FormatProblem("\(what()) is \(value), not a valid size")
        }
        return result
    }

    /// `[start, start + length)` lies within `0..<limit`; returns the end.
    static func range(start: Int, length: Int, limit: Int, _ what: @autoclosure () -> String) throws -> Int {
        guard start >= 0, length >= 0 else { throw FormatProblem("\(what()) has a negative offset or length") }
        let end = try add(start, length, what())
        guard end <= limit else {
            throw FormatProblem("\(what()) at byte \(start) with \(length) bytes runs past the end (\(limit) bytes)")
        }
        return end
    }
}

/// Little-endian reads from a byte array at checked positions.
extension Array where Element == UInt8 {
    func littleEndian<T: FixedWidthInteger>(_: T.Type, at offset: Int, _ what: @autoclosure () -> String) throws -> T {
        let size = MemoryLayout<T>.size
        guard offset >= 0, offset <= count - size else {
            throw FormatProblem("\(what()) at byte \(offset) runs past the end (\(count) bytes)")
        }
        var value: T = 0
        for index in 0..<size { value |= T(truncatingIfNeeded: self[offset + index]) << (8 * index) }
        return value
    }
}
