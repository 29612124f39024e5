/// A size computed from numbers read from a file or an argument did not fit in an `Int`.
public struct SizeOverflowError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Arithmetic on untrusted sizes (shapes, byte counts, offsets, model dimensions). Swift traps on
/// overflow, which for a hostile file means a crash; these turn overflow into an error whose message
/// says what was being computed (`what` should name the file and field, e.g. "x.distcp: tensor 'w' byte count").
public enum Checked {
    public static func multiply(_ a: Int, _ b: Int, what: @autoclosure () -> String) throws -> Int {
        let (product, overflow) = a.multipliedReportingOverflow(by: b)
        guard !overflow else { throw SizeOverflowError("\(what()) is too large (\(a) × \(b) overflows)") }
        return product
    }

    public static func add(_ a: Int, _ b: Int, what: @autoclosure () -> String) throws -> Int {
        let (sum, overflow) = a.addingReportingOverflow(b)
        guard !overflow else { throw SizeOverflowError("\(what()) is too large (\(a) + \(b) overflows)") }
        return sum
    }

    /// The product of dimensions, none of which may be negative (an empty list is 1, a scalar).
    public static func product(_ dimensions: [Int], what: @autoclosure () -> String) throws -> Int {
        var result = 1
        for dimension in dimensions {
            guard dimension >= 0 else { throw SizeOverflowError("\(what()) has a negative dimension in \(dimensions)") }
            let (next, overflow) = result.multipliedReportingOverflow(by: dimension)
            guard !overflow else { throw SizeOverflowError("\(what()) is too large (the product of \(dimensions) overflows)") }
            result = next
        }
        return result
    }

    public static func sum(_ terms: some Sequence<Int>, what: @autoclosure () -> String) throws -> Int {
        var result = 0
        for term in terms {
            let (next, overflow) = result.addingReportingOverflow(term)
            guard !overflow else { throw SizeOverflowError("\(what()) is too large (the sum overflows)") }
            result = next
        }
        return result
    }
}
