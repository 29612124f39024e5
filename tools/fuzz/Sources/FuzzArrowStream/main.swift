import FuzzSupport
import MoEData

// An Arrow IPC stream held in memory (flatbuffer schema and record batches) → table rows.
runFuzzer { bytes in
    let table = try ArrowStream.read(bytes: bytes, name: "fuzz.arrow")
    _ = table.rows.count
}
