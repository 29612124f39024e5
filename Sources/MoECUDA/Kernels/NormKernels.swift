extension CUDAKernelSource {
    /// RMSNorm, one block per row, as the CPU's `rmsNormRow`: `x / sqrt(mean(x²) + eps) · w` in fp32.
    public static let rmsNorm = CUDAKernelSource(
        name: "rmsnorm.cu",
        source: CommonKernelCode.prelude + """
            // Row r of the output normalises input row `row_index[r]` (all rows in order when it is null), so the
            // final norm runs only on the positions whose logits are read. `out_f32` may be null; the router's
            // fp32 gate GEMM reads it.
            extern "C" __global__ void rmsnorm_rows(
                const float* x, const int* row_index, const float* weight, bf16_t* out_bf16, float* out_f32,
                int dim, float eps) {
                __shared__ float scratch[32];
                long long out_row = blockIdx.x;
                long long in_row = row_index ? (long long)row_index[out_row] : out_row;
                const float* source = x + in_row * dim;
                float squares = 0.0f;
                for (int c = threadIdx.x; c < dim; c += blockDim.x) { float v = source[c]; squares += v * v; }
                float total = block_sum(squares, scratch);
                float inverse = 1.0f / sqrtf(total / (float)dim + eps);
                for (int c = threadIdx.x; c < dim; c += blockDim.x) {
                    float y = source[c] * inverse * weight[c];
                    if (out_bf16) { out_bf16[out_row * dim + c] = f32_to_bf16(y); }
                    if (out_f32) { out_f32[out_row * dim + c] = y; }
                }
            }
            """,
        entryPoints: ["rmsnorm_rows"])
}
