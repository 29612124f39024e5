import Foundation
import MoETensor

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A whole file mapped read-only into memory. Checkpoints are far larger than what we may copy,
/// so tensors are handed out as views into this mapping, which stays alive as their owner.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let bytes: UnsafeRawBufferPointer
    private let base: UnsafeMutableRawPointer?

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw CheckpointError("\(path): cannot open (\(String(cString: strerror(errno))))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw CheckpointError("\(path): cannot stat (\(String(cString: strerror(errno))))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw CheckpointError("\(path): not a regular file")
        }
        let size = Int(info.st_size)
        // mmap rejects length 0; an empty file is simply an empty view.
        guard size > 0 else {
            base = nil
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let mapped = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else {
            throw CheckpointError("\(path): cannot memory-map (\(String(cString: strerror(errno))))")
        }
        base = mapped
        bytes = UnsafeRawBufferPointer(start: mapped, count: size)
        HugePages.advise(mapped, byteCount: size)
    }

    deinit {
        if let base { munmap(base, bytes.count) }
    }

    public var count: Int { bytes.count }

    /// The bytes `[offset, offset+length)`, or nil when that range is not inside the file.
    public func slice(offset: Int, length: Int) -> UnsafeRawBufferPointer? {
        guard offset >= 0, length >= 0, offset <= bytes.count, length <= bytes.count - offset else { return nil }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + length)])
    }
}

/// A heap allocation that owns tensor bytes assembled or copied by a reader.
final class HeapBuffer: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer
    let count: Int
    private let buffer: PageBuffer

    /// Large buffers (an expert stack) are mapped directly, so that they go back to the system when a model
    /// replaces them with a repacked copy (`PageBuffer`).
    init(byteCount: Int) throws {
        guard let buffer = PageBuffer(byteCount: byteCount) else {
            throw CheckpointError("out of memory for a \(byteCount)-byte tensor copy")
        }
        self.buffer = buffer
        count = byteCount
        pointer = buffer.pointer
    }

    deinit { buffer.release() }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: pointer, count: count) }
    var mutableBytes: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: pointer, count: count) }
}

/// Little-endian reads that fail instead of reading past the end: every length in a checkpoint
/// file comes from the file itself and may be wrong.
struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    var position: Int

    init(_ bytes: UnsafeRawBufferPointer, position: Int = 0) {
        self.bytes = bytes
        self.position = position
    }

    var remaining: Int { bytes.count - position }
    var isAtEnd: Bool { position >= bytes.count }

    mutating func take(_ n: Int) -> UnsafeRawBufferPointer? {
        guard n >= 0, position >= 0, n <= bytes.count - position else { return nil }
        defer { position += n }
        return UnsafeRawBufferPointer(rebasing: bytes[position..<(position + n)])
    }

    mutating func u8() -> UInt8? {
        guard position >= 0, position < bytes.count else { return nil }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func unsigned(_ width: Int) -> UInt64? {
        guard let raw = take(width) else { return nil }
        var value: UInt64 = 0
        for i in stride(from: width - 1, through: 0, by: -1) { value = value << 8 | UInt64(raw[i]) }
        return value
    }

    mutating func u16() -> UInt16? { unsigned(2).map { UInt16($0) } }
    mutating func u32() -> UInt32? { unsigned(4).map { UInt32($0) } }
    mutating func u64() -> UInt64? { unsigned(8) }
    mutating func i32() -> Int32? { u32().map { Int32(bitPattern: $0) } }

    /// Bytes up to (not including) the next `\n`, consuming the newline.
    mutating func line() -> UnsafeRawBufferPointer? {
        guard position >= 0, position < bytes.count else { return nil }
        var end = position
        while end < bytes.count, bytes[end] != 0x0A { end += 1 }
        guard end < bytes.count else { return nil }
        let result = UnsafeRawBufferPointer(rebasing: bytes[position..<end])
        position = end + 1
        return result
    }
}

/// Reads a fixed-width little-endian unsigned integer at `offset` of `bytes`, or nil if out of range.
func readLittleEndian(_ bytes: UnsafeRawBufferPointer, at offset: Int, width: Int) -> UInt64? {
    var reader = ByteReader(bytes, position: offset)
    return reader.unsigned(width)
}

