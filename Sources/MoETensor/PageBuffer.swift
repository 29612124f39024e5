#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Memory for large weight copies (stacked experts, packed panels) taken from the kernel directly, so that freeing
/// it gives it back at once. From the C heap it would stay resident after a copy is replaced: moe-eval raises
/// glibc's mmap and trim thresholds to 1 GiB (`moe_tune_allocator`, so activation buffers are reused, not
/// re-faulted), and a layer's expert stack is below that. Small buffers come from the heap as usual.
public struct PageBuffer: @unchecked Sendable {
    /// Below this, the heap.
    public static let directThreshold = 16 << 20

    public let pointer: UnsafeMutableRawPointer
    public let byteCount: Int
    private let mapped: Bool

    /// `byteCount` bytes, 64-byte aligned (page aligned when mapped), contents zero or undefined. Fails (nil) only
    /// when the kernel refuses the mapping.
    public init?(byteCount: Int) {
        self.byteCount = byteCount
        if byteCount >= PageBuffer.directThreshold {
            #if os(Linux) || os(macOS)
            let start = mmap(nil, byteCount, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            guard let start, start != MAP_FAILED else { return nil }
            pointer = start
            mapped = true
            return
            #endif
        }
        pointer = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
        mapped = false
    }

    /// Returns the memory; the buffer must not be used afterwards.
    public func release() {
        if mapped {
            #if os(Linux) || os(macOS)
            munmap(pointer, byteCount)
            #endif
        } else {
            pointer.deallocate()
        }
    }
}
