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
    /// How the elements are laid out in memory.
    public let layout: Layout
    /// Start of the elements; aligned to the element size (unaligned sources are copied on init).
    public let base: UnsafeRawPointer
    /// Keeps the backing memory (mmap region, heap buffer) alive.
    private let owner: AnyObject?
    private let ownsBase: Bool
    /// The packed copy this weight owns (`Layout.panels64`).
    private let packedBuffer: PageBuffer?

    public enum Layout: Sendable, Equatable {
        /// Row-major, as in the checkpoint.
        case rowMajor
        /// Each matrix in panels of 64 rows, zero padded: fp32 as `moe_pack_f32_panels64` (panel p is a
        /// `paddedColumns × 64` row-major block holding row 64p + j, column c at c·64 + j; oneDNN's BA16a64b), bf16
        /// as `moe_pack_bf16_panels64` (column pairs interleaved; BA16a64b2a). It is the layout oneDNN's AVX-512
        /// matmul packs weights into on every call when given them row-major; packed once, a product with a few
        /// dozen rows (an expert's bucket) skips that copy.
        case panels64
    }

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
        self.layout = .rowMajor
        if let start = bytes.baseAddress, Int(bitPattern: start) % dtype.byteSize == 0 {
            self.base = start
            self.owner = owner
            self.ownsBase = false
            self.packedBuffer = nil
        } else {
            let copy = UnsafeMutableRawPointer.allocate(byteCount: max(bytes.count, 1), alignment: 64)
            if let start = bytes.baseAddress {
                copy.copyMemory(from: start, byteCount: bytes.count)
                Weight.releasePages(start, byteCount: bytes.count)
            }
            self.base = UnsafeRawPointer(copy)
            self.owner = nil
            self.ownsBase = true
            self.packedBuffer = nil
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
        self.layout = parent.layout
        self.base = parent.base + elementOffset * parent.dtype.byteSize
        self.owner = parent
        self.ownsBase = false
        self.packedBuffer = nil
    }

    /// A copy of the row-major fp32 or bf16 weight `source` in 64-row panels, one matrix (of a stack) per parallel
    /// task.
    private convenience init?(panelsOf source: Weight) {
        precondition(source.layout == .rowMajor, "only row-major weights are packed")
        let matrixBytes = source.matrixRows * source.columns * source.dtype.byteSize
        let matrices = (0..<source.matrixCount).map { UnsafeRawPointer(source.base + $0 * matrixBytes) }
        self.init(panelsOf: matrices, dtype: source.dtype, shape: source.shape)
    }

    /// A stack `shape` (`[matrices.count, rows, columns]`, or one matrix `[rows, columns]`) packed in 64-row panels
    /// from row-major fp32 or bf16 matrices wherever they are (a stack, or one tensor per expert).
    private init?(panelsOf matrices: [UnsafeRawPointer], dtype: DType, shape: [Int]) {
        precondition(dtype == .float32 || dtype == .bfloat16, "only fp32 and bf16 weights are packed")
        self.dtype = dtype
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.layout = .panels64
        let rows = shape.count >= 2 ? shape[shape.count - 2] : 1, columns = shape.last ?? 1
        precondition(matrices.count == (shape.count >= 3 ? shape.dropLast(2).reduce(1, *) : 1), "one pointer per matrix")
        guard let bytes = Weight.checkedPanelBytes(matrices: matrices.count, rows: rows, columns: columns, dtype: dtype),
            let buffer = PageBuffer(byteCount: max(bytes, 1))
        else { return nil }
        let packedElements = Weight.panelElements(rows: rows, columns: columns, dtype: dtype)
        let elementSize = dtype.byteSize
        let from = matrices.map { SendableConstPointer($0.assumingMemoryBound(to: UInt8.self)) }
        let to = SendablePointer(buffer.pointer.assumingMemoryBound(to: UInt8.self))
        let bf16 = dtype == .bfloat16
        Compute.parallelFor(matrices.count) { index in
            let matrix = UnsafeRawPointer(from[index].pointer)
            let panels = UnsafeMutableRawPointer(to.pointer + index * packedElements * elementSize)
            if bf16 {
                moe_pack_bf16_panels64(
                    matrix.assumingMemoryBound(to: UInt16.self), columns, rows, columns, panels.assumingMemoryBound(to: UInt16.self))
            } else {
                moe_pack_f32_panels64(
                    matrix.assumingMemoryBound(to: Float.self), columns, rows, columns, panels.assumingMemoryBound(to: Float.self))
            }
        }
        self.base = UnsafeRawPointer(buffer.pointer)
        self.owner = nil
        self.ownsBase = false
        self.packedBuffer = buffer
    }

    /// This row-major fp32 or bf16 weight (or stack of matrices) packed in 64-row panels (`Layout.panels64`); nil
    /// when the memory for the copy cannot be had.
    public func packedInPanels64() -> Weight? { Weight(panelsOf: self) }

    /// The stack `[parts.count, rows, columns]` of row-major fp32 or bf16 matrices `parts` (each `rows × columns`,
    /// all of `dtype`), packed in 64-row panels without stacking them first; nil when the memory cannot be had.
    public static func packedInPanels64(parts: [UnsafeRawBufferPointer], dtype: DType, rows: Int, columns: Int) -> Weight? {
        guard dtype == .float32 || dtype == .bfloat16, !parts.isEmpty else { return nil }
        var matrices: [UnsafeRawPointer] = []
        for part in parts {
            guard let start = part.baseAddress,
                let expected = try? Checked.product([rows, columns, dtype.byteSize], what: "expert matrix"), part.count == expected,
                Int(bitPattern: start) % dtype.byteSize == 0
            else { return nil }
            matrices.append(start)
        }
        return Weight(panelsOf: matrices, dtype: dtype, shape: [parts.count, rows, columns])
    }

    /// Bytes of `matrices` matrices `rows × columns` of `dtype` packed in 64-row panels, with checked arithmetic
    /// (the shapes come from checkpoint files); nil on overflow or a negative dimension.
    static func checkedPanelBytes(matrices: Int, rows: Int, columns: Int, dtype: DType) -> Int? {
        guard matrices >= 0, rows >= 0, columns >= 0, rows <= Int.max - 63, columns <= Int.max - 31 else { return nil }
        return try? Checked.product(
            [matrices, (rows + 63) / 64 * 64, panelDepth(columns: columns, dtype: dtype), dtype.byteSize], what: "packed weights")
    }

    /// Elements of one matrix of `rows × columns` packed in 64-row panels (padding included; sizes checked by
    /// `checkedPanelBytes` before anything is packed).
    static func panelElements(rows: Int, columns: Int, dtype: DType) -> Int {
        (rows + 63) / 64 * 64 * panelDepth(columns: columns, dtype: dtype)
    }
    /// Columns of a packed panel: `columns` rounded up to 16 (fp32) or 32 (bf16: 16 interleaved pairs).
    static func panelDepth(columns: Int, dtype: DType) -> Int {
        let quantum = dtype == .bfloat16 ? 32 : 16
        return (columns + quantum - 1) / quantum * quantum
    }
    /// Matrices in a stacked weight `[n, rows, cols]` (1 for a matrix or vector).
    var matrixCount: Int { shape.count >= 3 ? shape.dropLast(2).reduce(1, *) : 1 }
    /// Rows of one matrix of the stack.
    var matrixRows: Int { shape.count >= 2 ? shape[shape.count - 2] : 1 }

    deinit {
        if ownsBase { UnsafeMutableRawPointer(mutating: base).deallocate() }
        packedBuffer?.release()
    }

    public var rows: Int { count / max(shape.last ?? 1, 1) }
    public var columns: Int { shape.last ?? 1 }
    /// Bytes of storage (with a packed layout's padding).
    public var byteCount: Int {
        switch layout {
        case .rowMajor: return count * dtype.byteSize
        case .panels64: return matrixCount * Weight.panelElements(rows: matrixRows, columns: columns, dtype: dtype) * dtype.byteSize
        }
    }

    /// The `index`-th matrix of a stacked weight `[n, rows, cols]` (an expert of a grouped weight).
    public func matrix(_ index: Int) -> Weight {
        let inner = Array(shape.dropFirst())
        let size: Int
        switch layout {
        case .rowMajor: size = inner.reduce(1, *)
        case .panels64:
            size = Weight.panelElements(rows: inner.count >= 2 ? inner[inner.count - 2] : 1, columns: columns, dtype: dtype)
        }
        return Weight(slicing: self, elementOffset: index * size, shape: inner)
    }

    /// fp32 pointer when stored as row-major fp32 (zero-copy fast path).
    public var float32Pointer: UnsafePointer<Float>? {
        dtype == .float32 && layout == .rowMajor ? base.assumingMemoryBound(to: Float.self) : nil
    }

    /// The first panel of fp32 weights packed in 64-row panels (`Layout.panels64`).
    public var panels64Pointer: UnsafePointer<Float>? {
        layout == .panels64 && dtype == .float32 ? base.assumingMemoryBound(to: Float.self) : nil
    }

    /// The first panel of bf16 weights packed in 64-row panels (`Layout.panels64`).
    public var panels64BF16Pointer: UnsafePointer<UInt16>? {
        layout == .panels64 && dtype == .bfloat16 ? base.assumingMemoryBound(to: UInt16.self) : nil
    }

    /// Widens elements [start, start+n) (row-major order, whatever the layout) to fp32 into `dst`.
    public func widen(from start: Int, count n: Int, into dst: UnsafeMutablePointer<Float>) {
        if layout == .panels64 {
            gatherPanels(from: start, count: n, into: dst)
            return
        }
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

    /// Row-major elements [start, start+n) of a panel-packed weight (slow: for the paths without a packed kernel).
    private func gatherPanels(from start: Int, count n: Int, into dst: UnsafeMutablePointer<Float>) {
        let columns = self.columns, rows = matrixRows, depth = Weight.panelDepth(columns: columns, dtype: dtype)
        let matrixElements = rows * columns, packedElements = Weight.panelElements(rows: rows, columns: columns, dtype: dtype)
        let bf16 = dtype == .bfloat16
        var index = start, out = 0
        while out < n {
            let matrix = index / matrixElements, row = (index % matrixElements) / columns, column = index % columns
            let run = min(columns - column, n - out)
            // Panel of `row`, at its column 0: fp32 c·64 + j further; bf16 (c/2)·128 + 2j + c%2.
            let panelStart = matrix * packedElements + (row / 64) * depth * 64
            if bf16 {
                let panel = base.assumingMemoryBound(to: UInt16.self) + panelStart + (row % 64) * 2
                for c in 0..<run {
                    let at = column + c
                    dst[out + c] = Float(bitPattern: UInt32(panel[(at / 2) * 128 + at % 2]) << 16)
                }
            } else {
                let panel = base.assumingMemoryBound(to: Float.self) + panelStart + row % 64
                for c in 0..<run { dst[out + c] = panel[(column + c) * 64] }
            }
            index += run
            out += run
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
