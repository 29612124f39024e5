import CKernels

#if canImport(Glibc)
import Glibc
#endif

/// A read-only weight matrix (or stack of matrices) in its storage dtype, usually a view into a
/// memory-mapped checkpoint. bf16/fp16 weights are never expanded to an fp32 copy of the model:
/// kernels widen panels on the fly.
public final class Weight: @unchecked Sendable {
    public let dtype: DType
    public let shape: [Int]
    public let count: Int
    /// Start of the elements; aligned to the element size (unaligned sources are copied on init).
    public let base: UnsafeRawPointer
    /// Keeps the backing memory (mmap region, heap buffer) alive.
    private let owner: AnyObject?
    private let ownsBase: Bool

    public enum WeightError: Error, CustomStringConvertible {
        case unsupportedDType(DType)
        case byteCountMismatch(expected: Int, actual: Int)
        public var description: String {
            switch self {
            case .unsupportedDType(let d): return "weights stored as \(d) are not supported (float32, bfloat16, float16 are)"
            case .byteCountMismatch(let e, let a): return "weight holds \(a) bytes but its shape needs \(e)"
            }
        }
    }

    /// Wraps `bytes` (little-endian, row-major) without copying when suitably aligned.
    public init(dtype: DType, shape: [Int], bytes: UnsafeRawBufferPointer, owner: AnyObject?) throws {
        guard dtype == .float32 || dtype == .bfloat16 || dtype == .float16 else {
            throw WeightError.unsupportedDType(dtype)
        }
        let count = shape.reduce(1, *)
        guard bytes.count == count * dtype.byteSize else {
            throw WeightError.byteCountMismatch(expected: count * dtype.byteSize, actual: bytes.count)
        }
        self.dtype = dtype
        self.shape = shape
        self.count = count
        if let start = bytes.baseAddress, Int(bitPattern: start) % dtype.byteSize == 0 {
            self.base = start
            self.owner = owner
            self.ownsBase = false
        } else {
            let copy = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 64)
            if let start = bytes.baseAddress {
                copy.copyMemory(from: start, byteCount: bytes.count)
                Weight.releasePages(start, byteCount: bytes.count)
            }
            self.base = UnsafeRawPointer(copy)
            self.owner = nil
            self.ownsBase = true
        }
    }

    /// After copying a misaligned view out of a memory-mapped checkpoint, its source pages would stay resident
    /// next to the copy (a second copy of the tensor in RSS). MADV_PAGEOUT reclaims the whole pages inside the
    /// range; it keeps their contents, so it is harmless when the source is ordinary memory.
    static func releasePages(_ start: UnsafeRawPointer, byteCount: Int) {
        #if os(Linux)
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let first = (Int(bitPattern: start) + page - 1) / page * page
        let end = (Int(bitPattern: start) + byteCount) / page * page
        if end > first, let pointer = UnsafeMutableRawPointer(bitPattern: first) {
            _ = madvise(pointer, end - first, 21 /* MADV_PAGEOUT, Linux 5.4+; ignored where unknown */)
        }
        #endif
    }

    /// An fp32 weight that owns a copy of `values` (tests, random weights).
    public convenience init(shape: [Int], values: [Float]) {
        let t = Tensor(shape: shape, values: values)
        try! self.init(
            dtype: .float32, shape: shape,
            bytes: UnsafeRawBufferPointer(start: t.data, count: t.count * 4), owner: t)
    }

    /// An fp32 weight sharing a tensor's memory.
    public convenience init(_ tensor: Tensor) {
        try! self.init(
            dtype: .float32, shape: tensor.shape,
            bytes: UnsafeRawBufferPointer(start: tensor.data, count: tensor.count * 4), owner: tensor)
    }

    private init(slicing parent: Weight, elementOffset: Int, shape: [Int]) {
        self.dtype = parent.dtype
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.base = parent.base + elementOffset * parent.dtype.byteSize
        self.owner = parent
        self.ownsBase = false
    }

    deinit { if ownsBase { UnsafeMutableRawPointer(mutating: base).deallocate() } }

    public var rows: Int { count / max(shape.last ?? 1, 1) }
    public var columns: Int { shape.last ?? 1 }
    public var byteCount: Int { count * dtype.byteSize }

    /// The `index`-th matrix of a stacked weight `[n, rows, cols]` (an expert of a grouped weight).
    public func matrix(_ index: Int) -> Weight {
        let inner = Array(shape.dropFirst())
        let size = inner.reduce(1, *)
        return Weight(slicing: self, elementOffset: index * size, shape: inner)
    }

    /// fp32 pointer when stored as fp32 (zero-copy fast path).
    public var float32Pointer: UnsafePointer<Float>? {
        dtype == .float32 ? base.assumingMemoryBound(to: Float.self) : nil
    }

    /// Widens elements [start, start+n) to fp32 into `dst`.
    public func widen(from start: Int, count n: Int, into dst: UnsafeMutablePointer<Float>) {
        switch dtype {
        case .float32:
            dst.update(from: base.assumingMemoryBound(to: Float.self) + start, count: n)
        case .bfloat16:
            moe_bf16_to_f32(base.assumingMemoryBound(to: UInt16.self) + start, dst, n)
        case .float16:
            moe_f16_to_f32(base.assumingMemoryBound(to: UInt16.self) + start, dst, n)
        default:
            break // rejected in init
        }
    }

    /// All elements as fp32 (small vectors: norms, biases).
    public func toFloatArray() -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { buf, n in
            if count > 0 { widen(from: 0, count: count, into: buf.baseAddress!) }
            n = count
        }
    }
}
