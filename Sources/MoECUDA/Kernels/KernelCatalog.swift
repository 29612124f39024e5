extension CUDAKernelSource {
    /// Every kernel translation unit the GPU forward loads; the NVRTC test compiles each for sm_80 and sm_90.
    public static let all: [CUDAKernelSource] = [smoke, elementwise, rmsNorm, rotary, latentAttention, router, expertDispatch]

    /// The smallest useful kernel: proves that the loader, NVRTC, module load and launch fit together.
    public static let smoke = CUDAKernelSource(
        name: "smoke.cu",
        source: """
            extern "C" __global__ void moe_smoke_scale_add(float *y, const float *x, float scale, int count) {
                int i = blockIdx.x * blockDim.x + threadIdx.x;
                if (i < count) y[i] += scale * x[i];
            }
            """,
        entryPoints: ["moe_smoke_scale_add"])
}
