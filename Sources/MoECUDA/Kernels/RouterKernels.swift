extension CUDAKernelSource {
    /// TorchTitan's `TokenChoiceTopKRouter`: the fp32 gate, then one thread per token mirroring
    /// `MoEBlock.route`: gate bias, softmax or sigmoid scores, the expert bias for selection only, node-limited
    /// groups (ranked by the sum of each group's two best), top-k (stable: ties keep the lower index first),
    /// weights from the unbiased scores, route_norm, route_scale.
    public static let router = CUDAKernelSource(
        name: "router.cu",
        source: CommonKernelCode.prelude + """
            // Index of the largest of values[0..<n] not already in taken[0..<taken_count]; the first on ties.
            __device__ int argmax_excluding(const float* values, int n, const int* taken, int taken_count) {
                int best = -1;
                for (int i = 0; i < n; ++i) {
                    bool used = false;
                    for (int j = 0; j < taken_count; ++j) { if (taken[j] == i) { used = true; break; } }
                    if (used) { continue; }
                    if (best < 0 || values[i] > values[best]) { best = i; }
                }
                return best;
            }

            // logits[t, e] = x[t]·gate[e] in fp32: the gate decides the experts, so it is not rounded to bf16.
            // Block per token with its row in dynamic shared memory (dim floats); a warp per expert.
            extern "C" __global__ void router_gate_f32(const float* x, const float* gate, float* logits, int dim, int experts) {
                extern __shared__ float row[];
                long long t = blockIdx.x;
                for (int c = threadIdx.x; c < dim; c += blockDim.x) { row[c] = x[t * dim + c]; }
                __syncthreads();
                int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
                for (int e = warp; e < experts; e += warps) {
                    const float* w = gate + (long long)e * dim;
                    float acc = 0.0f;
                    for (int c = lane; c < dim; c += 32) { acc += row[c] * w[c]; }
                    for (int o = 16; o > 0; o >>= 1) { acc += __shfl_xor_sync(0xffffffffu, acc, o); }
                    if (lane == 0) { logits[t * experts + e] = acc; }
                }
            }

            extern "C" __global__ void router_select(
                float* logits, const float* gate_bias, const float* expert_bias, float* scores, float* choice,
                float* group_scores, int* group_pick, int* selected, float* weights, long long tokens, int experts,
                int top_k, int groups, int limited, int use_sigmoid, int route_norm, float route_scale) {
                long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x;
                if (t >= tokens) { return; }
                float* l = logits + t * experts;
                float* s = scores + t * experts;
                float* c = choice + t * experts;
                if (gate_bias) { for (int j = 0; j < experts; ++j) { l[j] += gate_bias[j]; } }
                if (use_sigmoid) {
                    for (int j = 0; j < experts; ++j) { s[j] = 1.0f / (1.0f + expf(-l[j])); }
                } else {
                    float m = -INFINITY;
                    for (int j = 0; j < experts; ++j) { m = fmaxf(m, l[j]); }
                    float sum = 0.0f;
                    for (int j = 0; j < experts; ++j) { s[j] = expf(l[j] - m); sum += s[j]; }
                    for (int j = 0; j < experts; ++j) { s[j] /= sum; }
                }
                for (int j = 0; j < experts; ++j) { c[j] = s[j] + (expert_bias ? expert_bias[j] : 0.0f); }
                if (groups > 0) {
                    int per_group = experts / groups;
                    float* gs = group_scores + t * groups;
                    int* pick = group_pick + t * groups;
                    for (int g = 0; g < groups; ++g) {
                        int pair[2];
                        pair[0] = argmax_excluding(c + g * per_group, per_group, pair, 0);
                        pair[1] = argmax_excluding(c + g * per_group, per_group, pair, 1);
                        gs[g] = c[g * per_group + pair[0]] + (pair[1] >= 0 ? c[g * per_group + pair[1]] : 0.0f);
                    }
                    for (int j = 0; j < limited; ++j) { pick[j] = argmax_excluding(gs, groups, pick, j); }
                    for (int g = 0; g < groups; ++g) {
                        bool kept = false;
                        for (int j = 0; j < limited; ++j) { if (pick[j] == g) { kept = true; } }
                        if (!kept) { for (int e = 0; e < per_group; ++e) { c[g * per_group + e] = -INFINITY; } }
                    }
                }
                int* sel = selected + t * top_k;
                float* w = weights + t * top_k;
                float sum = 0.0f;
                for (int j = 0; j < top_k; ++j) {
                    sel[j] = argmax_excluding(c, experts, sel, j);
                    w[j] = s[sel[j]];
                    sum += w[j];
                }
                if (route_norm) {
                    float denominator = sum + 1e-20f;
                    for (int j = 0; j < top_k; ++j) { w[j] /= denominator; }
                }
                for (int j = 0; j < top_k; ++j) { w[j] *= route_scale; }
            }
            """,
        entryPoints: ["router_gate_f32", "router_select"])
}
