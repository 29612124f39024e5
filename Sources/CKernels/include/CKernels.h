#ifndef MOE_CKERNELS_H
#define MOE_CKERNELS_H
#include <stddef.h>
#include <stdint.h>

/* Widen bf16 (stored as uint16) to fp32. */
void moe_bf16_to_f32(const uint16_t *src, float *dst, size_t n);
/* Round fp32 to bf16 (round-to-nearest-even, NaN kept quiet), as torch does. */
void moe_f32_to_bf16(const float *src, uint16_t *dst, size_t n);
/* Widen IEEE fp16 (stored as uint16) to fp32. */
void moe_f16_to_f32(const uint16_t *src, float *dst, size_t n);


/* Row kernels (kernels.c): an AVX-512 body when the CPU has it, a portable C body otherwise. */

/* 1 when the AVX-512 bodies run, 0 for the portable ones. */
int moe_kernels_isa(void);
/* 1 when the bf16×bf16 kernels use AVX512_BF16 (VDPBF16PS), 0 for the portable ones. */
int moe_kernels_bf16_dot(void);
/* What the CPU has (AVX-512 F/BW/VL/DQ; and AVX512_BF16), whatever `moe_kernels_force_portable` says: for choices
 * made once for the whole process, such as the weight layout at load. */
int moe_cpu_has_avx512(void);
int moe_cpu_has_avx512_bf16(void);
/* Tests: force the portable bodies (nonzero) or return to run-time dispatch (0). */
void moe_kernels_force_portable(int portable);
/* 1 when the CPU multiplies bf16 natively (AVX512_BF16 or AMX-BF16): what `--compute auto` picks bf16 on. */
int moe_cpu_has_bf16_compute(void);
/* In-place numerically stable softmax of one row. */
void moe_softmax_row(float *row, size_t n);
/* gate[i] = silu(gate[i]) * up[i] (the SwiGLU middle step). */
void moe_silu_mul(float *gate, const float *up, size_t n);
/* out = x * rsqrt(mean(x^2) + eps) * weight, one row of dim. */
void moe_rmsnorm_row(const float *x, const float *weight, float eps, float *out, size_t dim);
/* y[0..<rows] (+)= W[rows × cols, row stride ldw] · x, fp32 weights: the one-row decode product (AVX-512 where
 * present), for the CPUs where it reads the weights faster than the BLAS sgemv. */
void moe_gemv_f32(const float *w, size_t ldw, size_t rows, size_t cols, const float *x, float *y, int accumulate);
/* fp32 weights W[rows × cols] (row stride ldw) packed in 64-row panels: panel p is a kp × 64 row-major block holding
 * W[64p + j][c] at c*64 + j, kp = cols rounded up to 16, zeros in the padding (rows up to a multiple of 64, columns
 * up to kp). It is oneDNN's BA16a64b layout of the K×N view of W, the one its AVX-512 fp32 matmul packs weights into
 * on every call when given them plain. `out` holds ceil(rows/64) * kp * 64 floats. */
void moe_pack_f32_panels64(const float *w, size_t ldw, size_t rows, size_t cols, float *out);
/* y[0..<n] (+)= W · x over panel-packed weights (first panel at `panels`, kp as above, k = unpadded columns). */
void moe_gemv_f32_panels64(const float *panels, size_t kp, size_t n, size_t k, const float *x, float *y,
                           int accumulate);
/* bf16 weights W[rows × cols] packed the same way with k pairs interleaved (oneDNN's BA16a64b2a, what its AVX512_BF16
 * matmul packs weights into): kp = cols rounded up to 32, W[64p + j][c] at panel p, (c/2)*128 + j*2 + c%2. */
void moe_pack_bf16_panels64(const uint16_t *w, size_t ldw, size_t rows, size_t cols, uint16_t *out);
/* y[0..<n] (+)= W · x over those panels, x rounded to bf16 (bf16 compute, decode). */
void moe_gemv_bf16_bf16_panels64(const uint16_t *panels, size_t kp, size_t n, size_t k, const uint16_t *x, float *y,
                                 int accumulate);
/* y[r] (+)= sum_c w[r*ldw + c] * x[c] for r < rows, c < cols, with bf16 weights (memory-bound decode). */
void moe_gemv_bf16(const uint16_t *w, size_t ldw, size_t rows, size_t cols, const float *x, float *y, int accumulate);
/* The same with x already rounded to bf16: bf16 × bf16 products, fp32 accumulation (bf16 compute, decode). */
void moe_gemv_bf16_bf16(const uint16_t *w, size_t ldw, size_t rows, size_t cols, const uint16_t *x, float *y,
                        int accumulate);

/* Nesting depth of the calling thread inside Compute's parallel loops (nested loops run serially). */
int moe_parallel_depth(void);
void moe_parallel_depth_add(int delta);
int moe_threads_override(void);
void moe_set_threads_override(int n);
/* A 64-byte aligned buffer of at least `count` floats owned by the calling thread, reused across calls
 * (slot 0-3 for buffers needed at the same time; 4-5 belong to Linear's bf16 compute); NULL if allocation fails. Contents are undefined. */
float *moe_thread_scratch(int slot, size_t count);
/* Sum of n floats (streams memory at full speed: the DRAM bandwidth probe). */
float moe_sum_f32(const float *x, size_t n);
/* Keeps large freed blocks in the heap (glibc), so per-layer activation buffers are reused, not re-faulted. */
void moe_tune_allocator(void);

/* Runs fn(context, i) for i in 0..<count on the calling thread and up to threads - 1 pool threads that spin
 * briefly between jobs (pool.c). Returns 1 when done, 0 (nothing run) when the pool is busy with another job or
 * cannot start a thread: the caller then runs the loop another way. */
typedef void (*moe_pool_task_fn)(void *context, long index);
int moe_pool_run(long count, long threads, moe_pool_task_fn fn, void *context);

#endif
