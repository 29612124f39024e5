import FuzzSupport
import MoEData

// A parquet file held in memory (footer, page headers, snappy/zstd pages, dictionary encoding) → table rows.
runFuzzer { bytes in
    let table = try Parquet.read(bytes: bytes, name: "fuzz.parquet")
    _ = table.rows.count
}
