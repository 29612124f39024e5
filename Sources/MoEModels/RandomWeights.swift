import CKernels
import Foundation
import MoECheckpoint
import MoETensor

/// Deterministic random weights with a model's exact shapes, for benchmarking a flavor without a checkpoint.
/// Matrices are uniform in ±√3·std (std 0.02, as TorchTitan's init), norm weights 1, expert biases 0.
public final class RandomWeightSource: WeightSource, @unchecked Sendable {
    public let tensorInfos: [String: TensorInfo]
    public let seed: UInt64
    public var namingEra: NamingEra { .v0_2 }
    public var description: String { "random weights (seed \(seed))" }

    public init(args: ModelArgs, dtype: DType = .bfloat16, seed: UInt64 = 0) {
        self.seed = seed
        tensorInfos = args.expectedShapes().mapValues { TensorInfo(dtype: $0.count == 1 ? .float32 : dtype, shape: $0) }
    }

    public func load(_ name: String) throws -> StoredTensor {
        guard let info = tensorInfos[name] else { throw CheckpointError("random weights: no tensor \(name)") }
        let count = info.shape.reduce(1, *)
        var values = [Float](repeating: 0, count: count)
        if name.hasSuffix("norm.weight") {
            values = [Float](repeating: 1, count: count)
        } else if !name.hasSuffix("expert_bias") {
            var state = seed &+ stableHash(name)
            let scale: Float = 0.02 * 3.0.squareRoot().float
            for i in 0..<count {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                values[i] = (Float(state >> 40) / Float(1 << 24) * 2 - 1) * scale
            }
        }
        if info.dtype == .bfloat16 {
            var bits = [UInt16](repeating: 0, count: count)
            moe_f32_to_bf16(values, &bits, count)
            return try bits.withUnsafeBytes { try StoredTensor(name: name, dtype: .bfloat16, shape: info.shape, copying: $0) }
        }
        return try values.withUnsafeBytes { try StoredTensor(name: name, dtype: .float32, shape: info.shape, copying: $0) }
    }

    /// FNV-1a: the same value in every process (Swift's `hashValue` is randomly seeded).
    func stableHash(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in s.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return h
    }
}

private extension Double { var float: Float { Float(self) } }
