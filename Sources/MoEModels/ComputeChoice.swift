import MoECheckpoint
import MoETensor

/// `--compute`: the precision of the matrix products as asked, before `auto` meets the weights and the CPU.
public enum ComputeChoice: String, Sendable, CaseIterable {
    case fp32
    case bf16
    case auto

    /// The precision a model with `weights` runs in, and why. `auto` is bf16 when the weights are bf16 and the CPU
    /// multiplies bf16 natively, fp32 otherwise. `bf16` on weights with no bf16 matrix is refused rather than
    /// rounded at load: rounding would evaluate a different model than the checkpoint, and a bf16 copy next to the
    /// mapped fp32 weights costs 1.5× their memory; `moe-eval convert --dtype bf16` makes that model explicitly.
    public func resolve(
        weights: [String: TensorInfo], checkpoint: String, cpuHasBF16: Bool = CPUFeatures.hasBF16Compute
    ) throws -> (precision: ComputePrecision, reason: String) {
        let matrices = weights.values.filter { $0.shape.count >= 2 && $0.elementCount > 0 }
        let bf16Bytes = matrices.filter { $0.dtype == .bfloat16 }.reduce(0) { $0 + $1.byteCount }
        let hasBF16Weights = bf16Bytes > 0
        let cpu = cpuHasBF16 ? "the CPU has AVX512_BF16/AMX" : "the CPU lacks AVX512_BF16 and AMX"
        switch self {
        case .fp32:
            return (.fp32, "--compute fp32")
        case .bf16:
            guard hasBF16Weights else {
                let stored = Set(matrices.map(\.dtype.torchName)).sorted().joined(separator: ", ")
                throw ModelLoadError(
                    "--compute bf16: \(checkpoint) stores its weight matrices as \(stored), not bf16; use --compute fp32 (or auto), or make a bf16 copy with `moe-eval convert --dtype bf16`"
                )
            }
            return (.bf16, "--compute bf16" + (cpuHasBF16 ? "" : " (\(cpu): bf16 products are emulated, slower than fp32)"))
        case .auto:
            if hasBF16Weights && cpuHasBF16 { return (.bf16, "--compute auto: bf16 weights and \(cpu)") }
            return (.fp32, "--compute auto: " + (hasBF16Weights ? cpu : "the weights are not bf16"))
        }
    }
}
