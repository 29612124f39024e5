import MoECheckpoint
import MoEModels
import MoETensor

/// bf16 bits of an fp32 value, rounded to nearest even (NaN stays NaN): what PyTorch's `.to(torch.bfloat16)` does.
@inline(__always)
func bfloat16Bits(_ value: Float) -> UInt16 {
    let bits = value.bitPattern
    if bits & 0x7fff_ffff > 0x7f80_0000 { return UInt16(truncatingIfNeeded: bits >> 16) | 0x40 }
    let rounded = bits &+ 0x7fff &+ ((bits >> 16) & 1)
    return UInt16(truncatingIfNeeded: rounded >> 16)
}

/// Uploads checkpoint tensors to the device once: matrices as bf16, vectors as fp32.
struct DeviceWeightUploader {
    let runtime: CUDAForwardRuntime
    let source: WeightSource
    /// Elements converted per host chunk (bounds the host memory an upload needs).
    static let chunkElements = 1 << 22

    /// The stored tensor `name`, whose shape must be `shape`.
    func stored(_ name: String, _ shape: [Int]) throws -> Weight {
        guard let info = source.tensorInfos[name] else {
            throw ModelLoadError("\(source.description): tensor \(name) is missing (model args need shape \(shape))")
        }
        guard info.shape == shape else {
            throw ModelLoadError("\(source.description): tensor \(name) has shape \(info.shape) but the model args imply \(shape)")
        }
        let tensor = try source.load(name)
        do {
            return try Weight(dtype: tensor.dtype, shape: tensor.shape, bytes: tensor.bytes, owner: tensor)
        } catch {
            throw ModelLoadError("\(source.description): tensor \(name): \(error)")
        }
    }

    /// Copies `count` elements of `weight` from element `start` as bf16 into `buffer` from element `offset`.
    func uploadBF16(_ weight: Weight, from start: Int, count: Int, to buffer: DeviceBuffer, at offset: Int) throws {
        if weight.dtype == .bfloat16 {
            try runtime.context.upload(
                UnsafeRawBufferPointer(start: weight.base + start * 2, count: count * 2), to: buffer.storage, offset: offset * 2)
            return
        }
        var widened = [Float](repeating: 0, count: min(count, Self.chunkElements))
        var bits = [UInt16](repeating: 0, count: widened.count)
        var done = 0
        while done < count {
            let n = min(Self.chunkElements, count - done)
            widened.withUnsafeMutableBufferPointer { weight.widen(from: start + done, count: n, into: $0.baseAddress!) }
            for i in 0..<n { bits[i] = bfloat16Bits(widened[i]) }
            try bits.withUnsafeBytes {
                try runtime.context.upload(UnsafeRawBufferPointer(rebasing: $0[0..<(n * 2)]), to: buffer.storage, offset: (offset + done) * 2)
            }
            done += n
        }
    }

    /// A matrix (or stack of matrices) as bf16.
    func matrix(_ name: String, _ shape: [Int]) throws -> DeviceBuffer {
        let weight = try stored(name, shape)
        let buffer = try DeviceBuffer(runtime, bytes: try deviceBytes(weight.count, 2))
        try uploadBF16(weight, from: 0, count: weight.count, to: buffer, at: 0)
        return buffer
    }

    /// `[first; second]` per leading index as one bf16 tensor: w1 and w3 stacked `[E, 2F, D]` (or `[2F, D]`) so
    /// the gate and up projections run as one GEMM.
    func stacked(_ first: String, _ second: String, experts: Int, rows: Int, columns: Int) throws -> DeviceBuffer {
        let shape = experts == 0 ? [rows, columns] : [experts, rows, columns]
        let a = try stored(first, shape), b = try stored(second, shape)
        let perMatrix = try deviceBytes(rows, columns)
        let buffer = try DeviceBuffer(runtime, bytes: try deviceBytes(max(experts, 1), 2, perMatrix, 2))
        for e in 0..<max(experts, 1) {
            try uploadBF16(a, from: e * perMatrix, count: perMatrix, to: buffer, at: 2 * e * perMatrix)
            try uploadBF16(b, from: e * perMatrix, count: perMatrix, to: buffer, at: (2 * e + 1) * perMatrix)
        }
        return buffer
    }

    /// A tensor as fp32 (norm weights, router gate and biases).
    func float32(_ name: String, _ shape: [Int]) throws -> DeviceBuffer {
        try DeviceBuffer(runtime, floats: try stored(name, shape).toFloatArray())
    }
}

extension DeviceBuffer {
    /// fp32 values computed or read on the host (norm weights, router gate and biases, RoPE tables).
    convenience init(_ runtime: CUDAForwardRuntime, floats values: [Float]) throws {
        try self.init(runtime, bytes: try deviceBytes(values.count, 4))
        try values.withUnsafeBytes { try runtime.context.upload($0, to: storage) }
    }
}
