// Stand-in until the kernel families land (issue 17's forward branch owns this file and replaces it at the merge).

extension CUDAKernelSource {
    /// Every kernel the GPU forward compiles; the NVRTC test compiles each for sm_80 and sm_90.
    public static let all: [CUDAKernelSource] = [smoke]

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
