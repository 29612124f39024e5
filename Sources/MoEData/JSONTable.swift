import Foundation

// SCAFFOLD (replaced by the owning branch before anything lands).
public enum JSONTable {
    public static func read(_ url: URL) throws -> DataTable {
        throw DataFileError(file: url.path, "JSONTable reader not built yet")
    }
}
