/// A contiguous, row-major fp32 tensor that owns its memory (64-byte aligned).
///
/// A class rather than a struct so that hot loops work on a stable pointer without copy-on-write
/// checks or exclusivity bookkeeping; activations are created once per forward and reused.
public final class Tensor: @unchecked Sendable {
    public let shape: [Int]
    public let count: Int
    public let data: UnsafeMutablePointer<Float>

    public convenience init(shape: [Int]) {
        self.init(uninitializedShape: shape)
        data.update(repeating: 0, count: max(count, 1))
    }

    /// A tensor whose contents are undefined, for outputs the caller overwrites completely
    /// (zero-filling large activations every layer costs several percent of a forward).
    public init(uninitializedShape shape: [Int]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
        _ = Compute.blasPinned
        self.shape = shape
        self.count = shape.reduce(1, *)
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
        self.data = raw.bindMemory(to: Float.self, capacity: max(count, 1))
    }

    public convenience init(shape: [Int], values: [Float]) {
        self.init(shape: shape)
        precondition(values.count == count, "\(values.count) values for shape \(shape)")
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: count) }
    }

    deinit { UnsafeMutableRawPointer(data).deallocate() }

    public var rank: Int { shape.count }
    public var buffer: UnsafeMutableBufferPointer<Float> { .init(start: data, count: count) }

    /// Number of rows when viewed as a matrix [rows, lastDim].
    public var rows: Int { shape.isEmpty ? 1 : count / max(shape[shape.count - 1], 1) }
    public var lastDim: Int { shape.last ?? 1 }

    public func row(_ i: Int) -> UnsafeMutablePointer<Float> { data + i * lastDim }

    public func toArray() -> [Float] { Array(buffer) }

    public func fill(_ value: Float) { data.update(repeating: value, count: count) }

    public subscript(_ index: Int...) -> Float {
        get { data[flatIndex(index)] }
        set { data[flatIndex(index)] = newValue }
    }

    private func flatIndex(_ index: [Int]) -> Int {
        var flat = 0
        for (i, dim) in shape.enumerated() { flat = flat * dim + index[i] }
        return flat
    }
}

/// A pointer that may cross into `concurrentPerform` closures (Swift 6 forbids capturing raw pointers).
public struct SendablePointer<T>: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<T>
    public init(_ pointer: UnsafeMutablePointer<T>) { self.pointer = pointer }
}

public struct SendableConstPointer<T>: @unchecked Sendable {
    public let pointer: UnsafePointer<T>
    public init(_ pointer: UnsafePointer<T>) { self.pointer = pointer }
}
