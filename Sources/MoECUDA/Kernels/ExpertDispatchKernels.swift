extension CUDAKernelSource {
    /// Dispatch (a stable counting sort of the (token, slot) assignments by expert, then the gather into
    /// per-expert buckets) and combine (the weighted sum back per token), mirroring `MoEBlock.dispatch/combine`.
    public static let expertDispatch = CUDAKernelSource(
        name: "moe_dispatch.cu",
        source: CommonKernelCode.prelude + """
            extern "C" __global__ void moe_count(const int* selected, long long assignments, int* counts, int experts) {
                for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < assignments;
                     i += (long long)gridDim.x * blockDim.x) {
                    int e = selected[i];
                    if (e >= 0 && e < experts) { atomicAdd(counts + e, 1); }
                }
            }

            // One thread: offsets[e] = Σ counts[0..<e], offsets[experts] = the total (experts is small).
            extern "C" __global__ void moe_offsets(const int* counts, int* offsets, int experts) {
                if (blockIdx.x != 0 || threadIdx.x != 0) { return; }
                int running = 0;
                for (int e = 0; e < experts; ++e) { offsets[e] = running; running += counts[e]; }
                offsets[experts] = running;
            }

            // One thread per expert walks the assignments in order, so each bucket keeps token order
            // (TorchTitan's argsort(stable=True)); row_of_assignment is the inverse permutation for combine.
            extern "C" __global__ void moe_stable_order(
                const int* selected, long long assignments, const int* offsets, int* order, int* row_of_assignment,
                int experts) {
                int e = blockIdx.x * blockDim.x + threadIdx.x;
                if (e >= experts) { return; }
                int next = offsets[e];
                for (long long i = 0; i < assignments; ++i) {
                    if (selected[i] == e) { order[next] = (int)i; row_of_assignment[i] = next; ++next; }
                }
            }

            // Bucketed row r holds token order[r] / top_k, scaled by its routing weight when the model scores
            // before the experts.
            extern "C" __global__ void moe_gather(
                const bf16_t* x, const int* order, const float* weights, int score_before, int top_k, bf16_t* out,
                long long rows, int dim) {
                long long total = rows * (long long)dim;
                for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
                     i += (long long)gridDim.x * blockDim.x) {
                    long long row = i / dim;
                    int column = (int)(i - row * dim);
                    int assignment = order[row];
                    bf16_t v = x[(long long)(assignment / top_k) * dim + column];
                    out[i] = score_before ? f32_to_bf16(bf16_to_f32(v) * weights[assignment]) : v;
                }
            }

            // hidden[t] += shared[t] + Σ_slot w·expert_out[row(t, slot)], slots summed in slot order so the result
            // does not depend on the bucketing. `shared` may be null.
            extern "C" __global__ void moe_combine(
                const float* expert_out, const int* row_of_assignment, const float* weights, int score_before,
                int top_k, const float* shared, float* hidden, long long tokens, int dim) {
                long long total = tokens * (long long)dim;
                for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
                     i += (long long)gridDim.x * blockDim.x) {
                    long long t = i / dim;
                    int column = (int)(i - t * dim);
                    float routed = 0.0f;
                    for (int slot = 0; slot < top_k; ++slot) {
                        long long a = t * top_k + slot;
                        float w = score_before ? 1.0f : weights[a];
                        routed += w * expert_out[(long long)row_of_assignment[a] * dim + column];
                    }
                    hidden[i] += (shared ? shared[i] : 0.0f) + routed;
                }
            }

            extern "C" __global__ void fill_i32(int* x, long long count, int value) {
                for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < count;
                     i += (long long)gridDim.x * blockDim.x) {
                    x[i] = value;
                }
            }
            """,
        entryPoints: ["moe_count", "moe_offsets", "moe_stable_order", "moe_gather", "moe_combine", "fill_i32"])
}
