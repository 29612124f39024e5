import CSnappy
import CZlib
import CZstd

/// Page and buffer codecs of parquet and Arrow IPC. Output memory grows with the bytes actually produced, so
/// a small input that claims a huge uncompressed size fails before the size is allocated.
enum Decompression {
    enum Codec: String { case snappy = "SNAPPY", gzip = "GZIP", zstd = "ZSTD" }

    /// Decompresses `input` that must expand to exactly `expectedSize` bytes.
    static func decompress(_ codec: Codec, _ input: ArraySlice<UInt8>, expectedSize: Int) throws -> [UInt8] {
        guard expectedSize >= 0 else { throw FormatProblem("negative uncompressed size \(expectedSize)") }
        switch codec {
        case .snappy: return try snappy(input, expectedSize: expectedSize)
        case .gzip: return try inflate(input, expectedSize: expectedSize)
        case .zstd: return try zstd(input, expectedSize: expectedSize)
        }
    }

    private static func snappy(_ input: ArraySlice<UInt8>, expectedSize: Int) throws -> [UInt8] {
        try input.withUnsafeBytes { raw -> [UInt8] in
            let source = raw.baseAddress?.assumingMemoryBound(to: CChar.self)
            var claimed = 0
            guard let source, snappy_uncompressed_length(source, raw.count, &claimed) == SNAPPY_OK else {
                throw FormatProblem("SNAPPY data is corrupt (no valid length header)")
            }
            guard claimed == expectedSize else {
                throw FormatProblem("SNAPPY data expands to \(claimed) bytes, not the declared \(expectedSize)")
            }
            guard snappy_validate_compressed_buffer(source, raw.count) == SNAPPY_OK else {
                throw FormatProblem("SNAPPY data is corrupt")
            }
            var output = [UInt8](repeating: 0, count: expectedSize)
            var produced = expectedSize
            let status = output.withUnsafeMutableBytes { out in
                snappy_uncompress(source, raw.count, out.baseAddress?.assumingMemoryBound(to: CChar.self), &produced)
            }
            guard status == SNAPPY_OK, produced == expectedSize else { throw FormatProblem("SNAPPY data is corrupt") }
            return output
        }
    }

    /// First allocation for streaming codecs: what the input could plausibly expand to, never the claim alone.
    private static func initialCapacity(inputCount: Int, expectedSize: Int) -> Int {
        min(expectedSize, inputCount.multipliedReportingOverflow(by: 16).overflow ? expectedSize : inputCount * 16 + 4096)
    }

    private static func zstd(_ input: ArraySlice<UInt8>, expectedSize: Int) throws -> [UInt8] {
        guard let stream = ZSTD_createDStream() else { throw FormatProblem("ZSTD: cannot create a decompression stream") }
        defer { ZSTD_freeDStream(stream) }
        var output = [UInt8](repeating: 0, count: initialCapacity(inputCount: input.count, expectedSize: expectedSize))
        var produced = 0
        try input.withUnsafeBytes { raw in
            var inBuffer = ZSTD_inBuffer(src: raw.baseAddress, size: raw.count, pos: 0)
            while true {
                if produced == output.count {
                    if output.count >= expectedSize {
                        // Full: the frame must be complete with nothing more to produce.
                        var probe = [UInt8](repeating: 0, count: 1)
                        let (rc, extra) = probe.withUnsafeMutableBytes { p -> (Int, Int) in
                            var out = ZSTD_outBuffer(dst: p.baseAddress, size: 1, pos: 0)
                            let rc = ZSTD_decompressStream(stream, &out, &inBuffer)
                            return (rc, out.pos)
                        }
                        if ZSTD_isError(rc) != 0 { throw FormatProblem("ZSTD data is corrupt: \(zstdName(rc))") }
                        if extra > 0 { throw FormatProblem("ZSTD data expands past the declared \(expectedSize) bytes") }
                        if rc == 0 { return }
                        if inBuffer.pos == inBuffer.size { throw FormatProblem("ZSTD data is truncated") }
                        continue
                    }
                    output.append(contentsOf: repeatElement(0, count: min(expectedSize - output.count, max(output.count, 4096))))
                }
                let (rc, pos) = output.withUnsafeMutableBytes { out -> (Int, Int) in
                    var outBuffer = ZSTD_outBuffer(dst: out.baseAddress, size: out.count, pos: produced)
                    let rc = ZSTD_decompressStream(stream, &outBuffer, &inBuffer)
                    return (rc, outBuffer.pos)
                }
                if ZSTD_isError(rc) != 0 { throw FormatProblem("ZSTD data is corrupt: \(zstdName(rc))") }
                let progressed = pos != produced
                produced = pos
                if rc == 0 && inBuffer.pos == inBuffer.size { break }
                if rc == 0 { continue } // another frame follows
                if !progressed && inBuffer.pos == inBuffer.size && produced < output.count {
                    throw FormatProblem("ZSTD data is truncated")
                }
            }
        }
        guard produced == expectedSize else {
            throw FormatProblem("ZSTD data expands to \(produced) bytes, not the declared \(expectedSize)")
        }
        return output
    }

    private static func zstdName(_ code: Int) -> String {
        guard let name = ZSTD_getErrorName(code) else { return "error \(code)" }
        return String(cString: name)
    }

    /// GZIP (parquet's codec name) as zlib finds it: gzip or zlib header, detected automatically.
    private static func inflate(_ input: ArraySlice<UInt8>, expectedSize: Int) throws -> [UInt8] {
        // zlib keeps a pointer back to the stream and checks it on every call, so the stream must not move.
        let streamPointer = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        streamPointer.initialize(to: z_stream())
        defer { streamPointer.deallocate() }
        guard inflateInit2_(streamPointer, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw FormatProblem("GZIP: cannot start zlib")
        }
        defer { inflateEnd(streamPointer) }
        guard input.count <= Int(UInt32.max) else { throw FormatProblem("GZIP input too large") }
        var output = [UInt8](repeating: 0, count: initialCapacity(inputCount: input.count, expectedSize: expectedSize))
        var produced = 0
        var source = Array(input)
        try source.withUnsafeMutableBufferPointer { src in
            streamPointer.pointee.next_in = src.baseAddress
            streamPointer.pointee.avail_in = UInt32(src.count)
            while true {
                if produced == output.count {
                    if output.count >= expectedSize {
                        var probe: UInt8 = 0
                        let rc = withUnsafeMutablePointer(to: &probe) { p -> Int32 in
                            streamPointer.pointee.next_out = p
                            streamPointer.pointee.avail_out = 1
                            return CZlib.inflate(streamPointer, Z_NO_FLUSH)
                        }
                        if rc == Z_STREAM_END && streamPointer.pointee.avail_out == 1 { return }
                        if streamPointer.pointee.avail_out == 0 {
                            throw FormatProblem("GZIP data expands past the declared \(expectedSize) bytes")
                        }
                        if rc == Z_BUF_ERROR { throw FormatProblem("GZIP data is truncated") }
                        throw FormatProblem("GZIP data is corrupt (zlib status \(rc))")
                    }
                    output.append(contentsOf: repeatElement(0, count: min(expectedSize - output.count, max(output.count, 4096))))
                }
                let (rc, newProduced) = output.withUnsafeMutableBufferPointer { out -> (Int32, Int) in
                    let room = min(out.count - produced, Int(UInt32.max))
                    streamPointer.pointee.next_out = out.baseAddress.map { $0 + produced }
                    streamPointer.pointee.avail_out = UInt32(room)
                    let rc = CZlib.inflate(streamPointer, Z_NO_FLUSH)
                    return (rc, produced + room - Int(streamPointer.pointee.avail_out))
                }
                produced = newProduced
                if rc == Z_STREAM_END { break }
                if rc == Z_BUF_ERROR && streamPointer.pointee.avail_in == 0 { throw FormatProblem("GZIP data is truncated") }
                if rc != Z_OK && rc != Z_BUF_ERROR { throw FormatProblem("GZIP data is corrupt (zlib status \(rc))") }
            }
        }
        guard produced == expectedSize else {
            throw FormatProblem("GZIP data expands to \(produced) bytes, not the declared \(expectedSize)")
        }
        return output
    }
}
