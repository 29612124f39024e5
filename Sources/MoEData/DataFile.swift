import Foundation

/// Reads one dataset file by its kind: `.parquet`, `.arrow` (Arrow IPC stream, as `datasets` caches), or
/// `.json`/`.jsonl` (JSON Lines, or one JSON array of objects).
public enum DataFile {
    public static func read(_ url: URL) throws -> DataTable {
        switch url.pathExtension.lowercased() {
        case "parquet": return try Parquet.read(url)
        case "arrow": return try ArrowStream.read(url)
        case "json", "jsonl": return try JSONTable.read(url)
        default: throw DataFileError(file: url.path, "unknown data file kind (expected .parquet, .arrow, .json or .jsonl)")
        }
    }
}
