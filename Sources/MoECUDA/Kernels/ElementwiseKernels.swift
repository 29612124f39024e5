extension CUDAKernelSource {
    /// Embedding gather, bf16↔fp32 casts, residual adds and SwiGLU: one thread per element, grid-stride loops.
    public static let elementwise = CUDAKernelSource(
        name: "elementwise.cu",
        source: CommonKernelCode.prelude + """
            extern "C" __global__ void embedding_gather_bf16(
                const int* tokens, const bf16_t* table, float* out, long long rows, int dim) {
                long long total = rows * (long long)dim;
                for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
                     i += (long long)gridDim.x * blockDim.x) {
                    long long row = i / dim;
                    int column = (int)(i - row * dim);
                    out[i] = bf16_to_f32(table[(long long)tokens[row] * dim + column]);
                }
            }

            extern "C" __global__ void cast_f32_to_bf16(const float* in, bf16_t* out, long long count) {
                for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < count;
                     i += (long long)gridDim.x * blockDim.x) {
                    out[i] = f32_to_bf16(in[i]);
                }
            }

            extern "C" __global__ void cast_bf16_to_f32(const bf16_t* in, float* out, long long count) {
                for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < count;
                     i += (long long)gridDim.x * blockDim.x) {
                    out[i] = bf16_to_f32(in[i]);
                }
            }

            // hidden += delta
            extern "C" __global__ void add_f32(float* hidden, const float* delta, long long count) {
                for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < count;
                     i += (long long)gridDim.x * blockDim.x) {
                    hidden[i] += delta[i];
                }
            }

            // w1 and w3 run as one GEMM: each row of `gate_up` is [w1·x (hidden) | w3·x (hidden)].
            extern "C" __global__ void swiglu_fused_bf16(const float* gate_up, bf16_t* out, long long rows, int hidden) {
                long long total = rows * (long long)hidden;
                for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
                     i += (long long)gridDim.x * blockDim.x) {
                    long long row = i / hidden;
                    int column = (int)(i - row * hidden);
                    const float* source = gate_up + row * 2LL * hidden;
                    float g = source[column], u = source[hidden + column];
                    out[i] = f32_to_bf16(g / (1.0f + expf(-g)) * u);
                }
            }
            """,
        entryPoints: ["embedding_gather_bf16", "cast_f32_to_bf16", "cast_bf16_to_f32", "add_f32", "swiglu_fused_bf16"])
}
