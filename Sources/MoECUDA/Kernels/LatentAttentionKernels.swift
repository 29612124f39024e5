extension CUDAKernelSource {
    /// Multi-head latent attention pieces, mirroring `MultiHeadLatentAttention.apply`: the compressed cache
    /// (`kv_norm`ed latent and RoPE'd shared key, bf16 on the device), the expanded-order causal attention for
    /// prefill (a flash-style tiled kernel with an online softmax), and the absorbed order for decode over the
    /// compressed cache.
    public static let latentAttention = CUDAKernelSource(
        name: "mla.cu",
        source: CommonKernelCode.prelude + """
            // One block per new token row of `kv` = [c_kv (rank) | k_pe (rope_dims)] (wkv_a's output): c_kv is
            // RMS-normalised with kv_norm, k_pe rotated at its position, both stored at the row's cache slot.
            extern "C" __global__ void mla_store_latent(
                const float* kv, const float* kv_norm, float eps, const float* cos_table, const float* sin_table,
                bf16_t* latent_cache, bf16_t* rope_cache, int rank, int rope_dims, int past, int new_tokens,
                int capacity) {
                __shared__ float scratch[32];
                long long row = blockIdx.x;
                const float* source = kv + row * (rank + rope_dims);
                long long position = past + row % new_tokens;
                long long slot = (row / new_tokens) * capacity + position;
                float squares = 0.0f;
                for (int c = threadIdx.x; c < rank; c += blockDim.x) { float v = source[c]; squares += v * v; }
                float inverse = 1.0f / sqrtf(block_sum(squares, scratch) / (float)rank + eps);
                for (int c = threadIdx.x; c < rank; c += blockDim.x) {
                    latent_cache[slot * rank + c] = f32_to_bf16(source[c] * inverse * kv_norm[c]);
                }
                int pairs = rope_dims / 2;
                for (int p = threadIdx.x; p < pairs; p += blockDim.x) {
                    float c = cos_table[position * pairs + p], s = sin_table[position * pairs + p];
                    float a = source[rank + 2 * p], b = source[rank + 2 * p + 1];
                    rope_cache[slot * rope_dims + 2 * p] = f32_to_bf16(a * c - b * s);
                    rope_cache[slot * rope_dims + 2 * p + 1] = f32_to_bf16(a * s + b * c);
                }
            }

            // Expanded order (prefill). Queries `q` [batch·new_tokens, heads·(nope+rope)] fp32 (RoPE applied);
            // `kv_heads` [batch·total, heads·(nope+value)] bf16 (wkv_b over every visible latent); keys are
            // [k_nope | k_pe] with k_pe from the rope cache. Block (query tile, head, batch row), 128 threads;
            // dynamic shared memory as `mla_flash_shared_bytes` computes on the host. Output [rows, heads·value] bf16.
            #define FLASH_QUERIES 16
            #define FLASH_KEYS 32
            extern "C" __global__ void mla_flash_prefill(
                const float* q, const bf16_t* kv_heads, const bf16_t* rope_cache, bf16_t* out, int new_tokens,
                int past, int total, int capacity, int heads, int nope_dims, int rope_dims, int value_dims,
                float scale) {
                extern __shared__ float shared[];
                int qk_dims = nope_dims + rope_dims;
                float* q_tile = shared;                                   // [FLASH_QUERIES][qk_dims]
                float* s_tile = q_tile + FLASH_QUERIES * qk_dims;         // [FLASH_QUERIES][FLASH_KEYS]
                float* o_tile = s_tile + FLASH_QUERIES * FLASH_KEYS;      // [FLASH_QUERIES][value_dims]
                float* row_max = o_tile + FLASH_QUERIES * value_dims;     // [FLASH_QUERIES]
                float* row_sum = row_max + FLASH_QUERIES;                  // [FLASH_QUERIES]
                float* row_correction = row_sum + FLASH_QUERIES;           // [FLASH_QUERIES]
                bf16_t* k_tile = (bf16_t*)(row_correction + FLASH_QUERIES); // [FLASH_KEYS][qk_dims]
                bf16_t* v_tile = k_tile + FLASH_KEYS * qk_dims;            // [FLASH_KEYS][value_dims]

                int first_query = blockIdx.x * FLASH_QUERIES, head = blockIdx.y, b = blockIdx.z;
                int queries = min(FLASH_QUERIES, new_tokens - first_query);
                long long q_stride = (long long)heads * qk_dims;
                long long kv_stride = (long long)heads * (nope_dims + value_dims);
                for (int i = threadIdx.x; i < FLASH_QUERIES * qk_dims; i += blockDim.x) {
                    int qi = i / qk_dims, d = i - qi * qk_dims;
                    q_tile[i] = qi < queries
                        ? q[((long long)b * new_tokens + first_query + qi) * q_stride + (long long)head * qk_dims + d] * scale
                        : 0.0f;
                }
                for (int i = threadIdx.x; i < FLASH_QUERIES * value_dims; i += blockDim.x) { o_tile[i] = 0.0f; }
                if (threadIdx.x < FLASH_QUERIES) {
                    row_max[threadIdx.x] = -INFINITY; row_sum[threadIdx.x] = 0.0f; row_correction[threadIdx.x] = 1.0f;
                }
                __syncthreads();
                int last_key = past + first_query + queries - 1;
                for (int first_key = 0; first_key <= last_key; first_key += FLASH_KEYS) {
                    for (int i = threadIdx.x; i < FLASH_KEYS * qk_dims; i += blockDim.x) {
                        int kj = i / qk_dims, d = i - kj * qk_dims, t = first_key + kj;
                        bf16_t v = 0;
                        if (t < total) {
                            v = d < nope_dims
                                ? kv_heads[((long long)b * total + t) * kv_stride + (long long)head * (nope_dims + value_dims) + d]
                                : rope_cache[((long long)b * capacity + t) * rope_dims + (d - nope_dims)];
                        }
                        k_tile[i] = v;
                    }
                    for (int i = threadIdx.x; i < FLASH_KEYS * value_dims; i += blockDim.x) {
                        int kj = i / value_dims, d = i - kj * value_dims, t = first_key + kj;
                        v_tile[i] = t < total
                            ? kv_heads[((long long)b * total + t) * kv_stride + (long long)head * (nope_dims + value_dims) + nope_dims + d]
                            : (bf16_t)0;
                    }
                    __syncthreads();
                    for (int i = threadIdx.x; i < FLASH_QUERIES * FLASH_KEYS; i += blockDim.x) {
                        int qi = i / FLASH_KEYS, kj = i - qi * FLASH_KEYS, t = first_key + kj;
                        float score = -INFINITY;
                        if (qi < queries && t <= past + first_query + qi) {
                            score = 0.0f;
                            for (int d = 0; d < qk_dims; ++d) { score += q_tile[qi * qk_dims + d] * bf16_to_f32(k_tile[kj * qk_dims + d]); }
                        }
                        s_tile[i] = score;
                    }
                    __syncthreads();
                    if (threadIdx.x < FLASH_QUERIES) {
                        int qi = threadIdx.x;
                        float tile_max = -INFINITY;
                        for (int kj = 0; kj < FLASH_KEYS; ++kj) { tile_max = fmaxf(tile_max, s_tile[qi * FLASH_KEYS + kj]); }
                        float new_max = fmaxf(row_max[qi], tile_max);
                        float correction = 1.0f, added = 0.0f;
                        if (new_max != -INFINITY) {
                            correction = row_max[qi] == -INFINITY ? 0.0f : expf(row_max[qi] - new_max);
                            for (int kj = 0; kj < FLASH_KEYS; ++kj) {
                                float s = s_tile[qi * FLASH_KEYS + kj];
                                float p = s == -INFINITY ? 0.0f : expf(s - new_max);
                                s_tile[qi * FLASH_KEYS + kj] = p;
                                added += p;
                            }
                            row_max[qi] = new_max;
                        } else {
                            for (int kj = 0; kj < FLASH_KEYS; ++kj) { s_tile[qi * FLASH_KEYS + kj] = 0.0f; }
                        }
                        row_sum[qi] = row_sum[qi] * correction + added;
                        row_correction[qi] = correction;
                    }
                    __syncthreads();
                    for (int i = threadIdx.x; i < FLASH_QUERIES * value_dims; i += blockDim.x) {
                        int qi = i / value_dims, d = i - qi * value_dims;
                        float acc = o_tile[i] * row_correction[qi];
                        for (int kj = 0; kj < FLASH_KEYS; ++kj) { acc += s_tile[qi * FLASH_KEYS + kj] * bf16_to_f32(v_tile[kj * value_dims + d]); }
                        o_tile[i] = acc;
                    }
                    __syncthreads();
                }
                long long out_stride = (long long)heads * value_dims;
                for (int i = threadIdx.x; i < queries * value_dims; i += blockDim.x) {
                    int qi = i / value_dims, d = i - qi * value_dims;
                    out[((long long)b * new_tokens + first_query + qi) * out_stride + (long long)head * value_dims + d] =
                        f32_to_bf16(o_tile[i] / row_sum[qi]);
                }
            }

            // Absorbed order (decode), step 1: q_latent[row, head] = q_nope[row, head] · W_kb[head] ([nope, rank],
            // rows head·(nope+value) ..< head·(nope+value)+nope of wkv_b). Block per (row, head).
            extern "C" __global__ void mla_absorb_query(
                const float* q, const bf16_t* wkv_b, float* q_latent, int heads, int nope_dims, int rope_dims,
                int value_dims, int rank) {
                long long row = blockIdx.x / heads;
                int head = blockIdx.x % heads;
                const float* q_nope = q + row * heads * (nope_dims + rope_dims) + (long long)head * (nope_dims + rope_dims);
                const bf16_t* w = wkv_b + (long long)head * (nope_dims + value_dims) * rank;
                for (int r = threadIdx.x; r < rank; r += blockDim.x) {
                    float acc = 0.0f;
                    for (int d = 0; d < nope_dims; ++d) { acc += q_nope[d] * bf16_to_f32(w[(long long)d * rank + r]); }
                    q_latent[((long long)row * heads + head) * rank + r] = acc;
                }
            }

            // Step 2: scores[row, head, t] = scale·(q_latent·latent[t] + q_pe·k_pe[t]) for the positions the row
            // sees, -inf after them. One thread per (row, head, t).
            extern "C" __global__ void mla_absorbed_scores(
                const float* q_latent, const float* q, const bf16_t* latent_cache, const bf16_t* rope_cache,
                float* scores, long long rows, int new_tokens, int past, int total, int capacity, int heads,
                int nope_dims, int rope_dims, int rank, float scale) {
                long long count = rows * heads * (long long)total;
                for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < count;
                     i += (long long)gridDim.x * blockDim.x) {
                    int t = (int)(i % total);
                    long long rest = i / total;
                    int head = (int)(rest % heads);
                    long long row = rest / heads;
                    long long b = row / new_tokens;
                    int sees = past + (int)(row % new_tokens) + 1;
                    if (t >= sees) { scores[i] = -INFINITY; continue; }
                    const float* ql = q_latent + (row * heads + head) * rank;
                    const bf16_t* latent = latent_cache + (b * capacity + t) * rank;
                    float acc = 0.0f;
                    for (int r = 0; r < rank; ++r) { acc += ql[r] * bf16_to_f32(latent[r]); }
                    const float* q_pe = q + row * heads * (nope_dims + rope_dims) + (long long)head * (nope_dims + rope_dims) + nope_dims;
                    const bf16_t* k_pe = rope_cache + (b * capacity + t) * rope_dims;
                    for (int d = 0; d < rope_dims; ++d) { acc += q_pe[d] * bf16_to_f32(k_pe[d]); }
                    scores[i] = acc * scale;
                }
            }

            // Softmax of each row of `length` values in place (masked entries are -inf); one block per row.
            extern "C" __global__ void softmax_rows(float* x, int length) {
                __shared__ float scratch[32];
                float* row = x + (long long)blockIdx.x * length;
                float m = -INFINITY;
                for (int i = threadIdx.x; i < length; i += blockDim.x) { m = fmaxf(m, row[i]); }
                m = block_max(m, scratch);
                float sum = 0.0f;
                for (int i = threadIdx.x; i < length; i += blockDim.x) {
                    float e = row[i] == -INFINITY ? 0.0f : expf(row[i] - m);
                    row[i] = e;
                    sum += e;
                }
                sum = block_sum(sum, scratch);
                for (int i = threadIdx.x; i < length; i += blockDim.x) { row[i] /= sum; }
            }

            // Step 3: context_latent[row, head] = Σ_t p[row, head, t] · latent[t]. Block per (row, head).
            extern "C" __global__ void mla_absorbed_context(
                const float* probabilities, const bf16_t* latent_cache, float* context_latent, int new_tokens,
                int past, int total, int capacity, int heads, int rank) {
                long long row = blockIdx.x / heads;
                int head = blockIdx.x % heads;
                long long b = row / new_tokens;
                int sees = past + (int)(row % new_tokens) + 1;
                const float* p = probabilities + (row * heads + head) * (long long)total;
                for (int r = threadIdx.x; r < rank; r += blockDim.x) {
                    float acc = 0.0f;
                    for (int t = 0; t < sees; ++t) { acc += p[t] * bf16_to_f32(latent_cache[(b * capacity + t) * rank + r]); }
                    context_latent[(row * heads + head) * rank + r] = acc;
                }
            }

            // Step 4: out[row, head] = W_vb[head] · context_latent[row, head] (W_vb: rows
            // head·(nope+value)+nope ..< (head+1)·(nope+value) of wkv_b). Block per (row, head).
            extern "C" __global__ void mla_absorb_value(
                const float* context_latent, const bf16_t* wkv_b, bf16_t* out, int heads, int nope_dims,
                int value_dims, int rank) {
                long long row = blockIdx.x / heads;
                int head = blockIdx.x % heads;
                const float* c = context_latent + (row * heads + head) * rank;
                const bf16_t* w = wkv_b + ((long long)head * (nope_dims + value_dims) + nope_dims) * rank;
                for (int v = threadIdx.x; v < value_dims; v += blockDim.x) {
                    float acc = 0.0f;
                    for (int r = 0; r < rank; ++r) { acc += c[r] * bf16_to_f32(w[(long long)v * rank + r]); }
                    out[(row * heads + head) * (long long)value_dims + v] = f32_to_bf16(acc);
                }
            }
            """,
        entryPoints: [
            "mla_store_latent", "mla_flash_prefill", "mla_absorb_query", "mla_absorbed_scores", "softmax_rows",
            "mla_absorbed_context", "mla_absorb_value",
        ])

    /// Query rows and keys per tile of `mla_flash_prefill` (its `FLASH_QUERIES`, `FLASH_KEYS`).
    public static let flashQueryTile = 16
    public static let flashKeyTile = 32

    /// Dynamic shared memory `mla_flash_prefill` needs for these head sizes (the layout at its top).
    public static func flashSharedBytes(qkDims: Int, valueDims: Int) -> Int {
        let floats = flashQueryTile * qkDims + flashQueryTile * flashKeyTile + flashQueryTile * valueDims + 3 * flashQueryTile
        let halves = flashKeyTile * qkDims + flashKeyTile * valueDims
        return floats * 4 + halves * 2
    }
}
