import Foundation
import MoEJSON

/// A dataset split as rows, whatever file it came from (parquet, Arrow IPC stream, JSON Lines).
///
/// Rows are JSON objects so that a benchmark task reads a Hub parquet row exactly as it reads a record of
/// the dataset's JSON export: strings, integers, doubles, booleans, nulls, `list<…>` as arrays and
/// `struct<…>` as objects, keys in the file's column order.
public struct DataTable: Sendable, Equatable {
    /// Top-level column names in file order.
    public var columns: [String]
    public var rows: [JSONObject]

    public init(columns: [String], rows: [JSONObject]) {
        self.columns = columns
        self.rows = rows
    }
}

/// A data file that cannot be read: one line naming the file, where in it (byte offset, row group, page,
/// column) and what is wrong.
public struct DataFileError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public let description: String
    public var errorDescription: String? { description }

    public init(_ description: String) { self.description = description }
    public init(file: String, _ problem: String) { self.description = "\(file): \(problem)" }
}
