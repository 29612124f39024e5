import CCUDA

/// cuBLAS on a context's primary context and stream, so its GEMMs are ordered with the context's kernels and copies.
/// Matrices are row-major as moe-eval stores them; the column-major transposition is done here, once.
public final class CUBLAS: @unchecked Sendable {
    public let context: CUDAContext
    let library: CUBLASLibrary
    let handle: cublasHandle_t

    public enum OutputType: Sendable, Hashable {
        case bf16
        case fp32

        var cudaType: Int32 { self == .bf16 ? MOE_CUDA_R_16BF : MOE_CUDA_R_32F }
        var byteCount: Int { self == .bf16 ? 2 : 4 }
    }

    /// `pedantic`: cuBLAS's reference-precision math mode (for fp32-exact comparisons); the default lets it choose
    /// tensor-core algorithms.
    public init(context: CUDAContext, pedantic: Bool = false) throws(CUDAError) {
        self.context = context
        self.library = context.libraries.cublas
        try context.makeCurrent()
        var handle: cublasHandle_t? = nil
        try Self.check(library, library.api.cublasCreate!(&handle), "cublasCreate_v2")
        guard let handle else { throw CUDAError(call: "cublasCreate_v2", reason: "returned no handle") }
        self.handle = handle
        try Self.check(library, library.api.cublasSetStream!(handle, context.stream), "cublasSetStream_v2")
        let mode = pedantic ? MOE_CUBLAS_PEDANTIC_MATH : MOE_CUBLAS_DEFAULT_MATH
        try Self.check(library, library.api.cublasSetMathMode!(handle, mode), "cublasSetMathMode")
    }

    deinit {
        _ = try? context.makeCurrent()
        _ = library.api.cublasDestroy!(handle)
    }

    /// `y[M,N] = alpha · x[M,K] · W[N,K]ᵀ + beta · y`, all row-major: bf16 `x` and `W`, fp32 accumulation, `y` in
    /// `output` type. `W` is a linear layer's weight as checkpoints store it (out_features × in_features).
    public func gemmBF16(
        x: CUDADevicePointer, w: CUDADevicePointer, y: CUDADevicePointer, m: Int, n: Int, k: Int,
        output: OutputType = .bf16, alpha: Float = 1, beta: Float = 0
    ) throws(CUDAError) {
        try gemmBF16StridedBatched(
            x: x, strideX: 0, w: w, strideW: 0, y: y, strideY: 0, batchCount: 1, m: m, n: n, k: k, output: output, alpha: alpha,
            beta: beta)
    }

    /// `batchCount` independent `gemmBF16`s whose operands lie `stride*` elements apart (e.g. attention heads, or
    /// experts with equal token counts). A batch count of 1 calls cublasGemmEx.
    public func gemmBF16StridedBatched(
        x: CUDADevicePointer, strideX: Int, w: CUDADevicePointer, strideW: Int, y: CUDADevicePointer, strideY: Int,
        batchCount: Int, m: Int, n: Int, k: Int, output: OutputType = .bf16, alpha: Float = 1, beta: Float = 0
    ) throws(CUDAError) {
        let call = batchCount == 1 ? "cublasGemmEx" : "cublasGemmStridedBatchedEx"
        for (name, value) in [("m", m), ("n", n), ("k", k), ("batchCount", batchCount)] where value < 1 || value > Int(Int32.max) {
            throw CUDAError(call: call, reason: "\(name) = \(value) is outside 1…\(Int32.max)")
        }
        for (name, value) in [("strideX", strideX), ("strideW", strideW), ("strideY", strideY)] where value < 0 {
            throw CUDAError(call: call, reason: "\(name) = \(value) is negative")
        }
        var alpha = alpha
        var beta = beta
        try context.makeCurrent()
        // Row-major y = x·Wᵀ is column-major yᵀ = W·xᵀ: A = W read transposed (lda K), B = x as is (ldb K), C = yᵀ (ldc N).
        let api = library.api
        let status: cublasStatus_t
        let a = UnsafeRawPointer(bitPattern: UInt(w.address))
        let b = UnsafeRawPointer(bitPattern: UInt(x.address))
        let c = UnsafeMutableRawPointer(bitPattern: UInt(y.address))
        if batchCount == 1 {
            status = api.cublasGemmEx!(
                handle, MOE_CUBLAS_OP_T, MOE_CUBLAS_OP_N, Int32(n), Int32(m), Int32(k), &alpha, a, MOE_CUDA_R_16BF, Int32(k), b,
                MOE_CUDA_R_16BF, Int32(k), &beta, c, output.cudaType, Int32(n), MOE_CUBLAS_COMPUTE_32F, MOE_CUBLAS_GEMM_DEFAULT)
        } else {
            status = api.cublasGemmStridedBatchedEx!(
                handle, MOE_CUBLAS_OP_T, MOE_CUBLAS_OP_N, Int32(n), Int32(m), Int32(k), &alpha, a, MOE_CUDA_R_16BF, Int32(k),
                Int64(strideW), b, MOE_CUDA_R_16BF, Int32(k), Int64(strideX), &beta, c, output.cudaType, Int32(n), Int64(strideY),
                Int32(batchCount), MOE_CUBLAS_COMPUTE_32F, MOE_CUBLAS_GEMM_DEFAULT)
        }
        try Self.check(library, status, call)
    }

    static func check(_ library: CUBLASLibrary, _ status: cublasStatus_t, _ call: String) throws(CUDAError) {
        guard status != MOE_CUBLAS_STATUS_SUCCESS else { return }
        let text = library.api.cublasGetStatusString!(status).map { String(cString: $0) } ?? "unknown cuBLAS status"
        throw CUDAError(call: call, reason: "\(text) (\(status))")
    }
}
