#if canImport(Glibc)
import Glibc
#endif

/// Weights are read once per decoded token, front to back, at memory bandwidth, and 2 MiB pages read faster than
/// 4 KiB ones (fewer TLB walks; docs/PERFORMANCE.md, "Decode GEMV"). Linux's default transparent-huge-page mode is
/// `madvise`: memory gets huge pages only where asked. Checkpoint mappings ask (kernels with large page-cache folios
/// map them with 2 MiB entries), and so does the decode roofline's probe buffer, so that the roofline is what the
/// weights' reads could reach. Heap buffers of stacked or assembled weights do not: under the default `defrag`
/// setting an advised fault compacts memory synchronously, which made loading a 4 GB checkpoint 2–4× slower.
/// Advice only: where the kernel says no, nothing changes.
public enum HugePages {
    public static let size = 2 << 20

    public static func advise(_ start: UnsafeMutableRawPointer, byteCount: Int) {
        #if os(Linux)
        guard byteCount >= size else { return }
        let first = (Int(bitPattern: start) + size - 1) / size * size
        let end = (Int(bitPattern: start) + byteCount) / size * size
        if end > first, let pointer = UnsafeMutableRawPointer(bitPattern: first) {
            _ = madvise(pointer, end - first, 14 /* MADV_HUGEPAGE */)
        }
        #endif
    }

    /// `byteCount` bytes aligned to a huge page (when that large) and advised as above; free with `deallocate()`.
    public static func allocate(byteCount: Int) -> UnsafeMutableRawPointer {
        let pointer = UnsafeMutableRawPointer.allocate(
            byteCount: max(byteCount, 1), alignment: byteCount >= size ? size : 64)
        advise(pointer, byteCount: byteCount)
        return pointer
    }
}
