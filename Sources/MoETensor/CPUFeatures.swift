import CKernels

/// Instruction sets the kernels' choices depend on, read from the CPU at run time (never from a model table).
public enum CPUFeatures {
    /// Whether the CPU multiplies bf16 natively (AVX512_BF16 or AMX-BF16): where bf16 compute is the faster mode.
    public static let hasBF16Compute = moe_cpu_has_bf16_compute() != 0
}
