/// Device helpers every kernel translation unit starts with: NVRTC compiles each unit alone, header-free, so
/// bf16 is carried as `unsigned short` and converted with plain bit operations (round to nearest even).
enum CommonKernelCode {
    static let prelude = """
        typedef unsigned short bf16_t;
        #ifndef INFINITY
        #define INFINITY __int_as_float(0x7f800000)
        #endif
        __device__ __forceinline__ float bf16_to_f32(bf16_t v) { return __uint_as_float(((unsigned int)v) << 16); }
        __device__ __forceinline__ bf16_t f32_to_bf16(float f) {
            unsigned int u = __float_as_uint(f);
            if ((u & 0x7fffffffu) > 0x7f800000u) { return (bf16_t)((u >> 16) | 0x40u); }
            u += 0x7fffu + ((u >> 16) & 1u);
            return (bf16_t)(u >> 16);
        }
        // Block-wide sum for blockDim.x a multiple of 32 and at most 1024; `scratch` holds 32 floats.
        __device__ __forceinline__ float block_sum(float v, float* scratch) {
            for (int o = 16; o > 0; o >>= 1) { v += __shfl_xor_sync(0xffffffffu, v, o); }
            int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
            __syncthreads();
            if (lane == 0) { scratch[warp] = v; }
            __syncthreads();
            float total = 0.0f;
            for (int w = 0; w < warps; ++w) { total += scratch[w]; }
            return total;
        }
        __device__ __forceinline__ float block_max(float v, float* scratch) {
            for (int o = 16; o > 0; o >>= 1) { v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o)); }
            int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
            __syncthreads();
            if (lane == 0) { scratch[warp] = v; }
            __syncthreads();
            float best = -INFINITY;
            for (int w = 0; w < warps; ++w) { best = fmaxf(best, scratch[w]); }
            return best;
        }

        """
}
