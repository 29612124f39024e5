import Foundation

// SCAFFOLD (replaced by the owning branch before anything lands).
public enum ArrowStream {
    public static func read(_ url: URL) throws -> DataTable {
        throw DataFileError(file: url.path, "ArrowStream reader not built yet")
    }
}
