/// Precision of the matrix products (issue 15): `fp32` is the exact reference mode; `bf16` multiplies bf16
/// activations by bf16 weights with fp32 accumulation, as PyTorch/oneDNN do on CPUs with AVX512_BF16 or AMX.
public enum ComputePrecision: String, Sendable, CaseIterable {
    case fp32
    case bf16
}
