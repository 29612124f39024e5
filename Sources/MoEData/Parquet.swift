import Foundation

// SCAFFOLD (replaced by the owning branch before anything lands).
public enum Parquet {
    public static func read(_ url: URL) throws -> DataTable {
        throw DataFileError(file: url.path, "Parquet reader not built yet")
    }
}
