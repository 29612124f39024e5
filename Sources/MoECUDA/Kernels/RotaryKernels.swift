extension CUDAKernelSource {
    /// RoPE on DeepSeek's interleaved pairs `(x[2i], x[2i+1])`, with `[positions, pairs]` cos/sin tables made on
    /// the host from the same frequencies (YaRN included) as the CPU's `RotaryTable`.
    public static let rotary = CUDAKernelSource(
        name: "rope.cu",
        source: CommonKernelCode.prelude + """
            // Row r is token r % new_tokens of its sequence, at position past + r % new_tokens. Each of the
            // `heads` heads of a row starts `head_stride` floats after the previous one; its rotated part
            // starts `offset` floats into the head.
            extern "C" __global__ void rope_interleaved_f32(
                float* x, long long rows, int row_stride, int heads, int head_stride, int offset, int pairs,
                const float* cos_table, const float* sin_table, int past, int new_tokens) {
                long long total = rows * (long long)heads * pairs;
                for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
                     i += (long long)gridDim.x * blockDim.x) {
                    int pair = (int)(i % pairs);
                    long long rest = i / pairs;
                    int head = (int)(rest % heads);
                    long long row = rest / heads;
                    long long position = past + row % new_tokens;
                    float c = cos_table[position * pairs + pair], s = sin_table[position * pairs + pair];
                    float* v = x + row * row_stride + (long long)head * head_stride + offset + 2 * pair;
                    float a = v[0], b = v[1];
                    v[0] = a * c - b * s;
                    v[1] = a * s + b * c;
                }
            }
            """,
        entryPoints: ["rope_interleaved_f32"])
}
