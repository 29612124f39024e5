/* Row kernels of the forward pass with an AVX-512 body chosen at run time and a portable C fallback.
 * The AVX-512 bodies carry their own target attribute, so the target builds for baseline x86-64 (and
 * for other architectures, where only the fallbacks exist). */
#include "CKernels.h"
#include <math.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define MOE_X86 1
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))
#else
#define MOE_X86 0
#endif

static int moe_isa_level = -1; /* 0 = portable C, 1 = AVX-512 */
static int moe_isa_forced = -1;
static int moe_bf16_dot_level = -1; /* 1 when the CPU multiplies bf16 pairs (AVX512_BF16) */

/* What the CPU has, whatever a test forced. */
static int detected_isa(void) {
    if (moe_isa_level < 0) {
#if MOE_X86
        __builtin_cpu_init();
        moe_isa_level = (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) ? 1 : 0;
#else
        moe_isa_level = 0;
#endif
    }
    return moe_isa_level;
}

static int isa(void) { return moe_isa_forced >= 0 ? moe_isa_forced : detected_isa(); }

int moe_kernels_isa(void) { return isa(); }
int moe_cpu_has_avx512(void) { return detected_isa(); }

int moe_cpu_has_avx512_bf16(void) {
    if (detected_isa() == 0) return 0;
    if (moe_bf16_dot_level < 0) {
#if MOE_X86
        moe_bf16_dot_level = __builtin_cpu_supports("avx512bf16") ? 1 : 0;
#else
        moe_bf16_dot_level = 0;
#endif
    }
    return moe_bf16_dot_level;
}

int moe_kernels_bf16_dot(void) { return isa() == 0 ? 0 : moe_cpu_has_avx512_bf16(); }
void moe_kernels_force_portable(int portable) { moe_isa_forced = portable ? 0 : -1; }

int moe_cpu_has_bf16_compute(void) {
#if MOE_X86
    __builtin_cpu_init();
    return (__builtin_cpu_supports("avx512bf16") || __builtin_cpu_supports("amx-bf16")) ? 1 : 0;
#else
    return 0;
#endif
}

/* ------------------------------------------------------------------ exp */

#if MOE_X86
/* exp(x) for x <= ~88: 2^n · p(r) with r = x - n·ln2 split in two parts (Cody–Waite) and a degree-6
 * polynomial; relative error about 2 ulp. Inputs below -87 flush to 0, as softmax wants. */
AVX512 static inline __m512 exp512(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-87.3f), hi = _mm512_set1_ps(88.3f);
    __mmask16 tiny = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    x = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    __m512 result = _mm512_scalef_ps(p, n);
    return _mm512_maskz_mov_ps(~tiny, result);
}

AVX512 static void softmax_avx512(float *row, size_t n) {
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(row + i));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), m, row + i));
    }
    float maxValue = _mm512_reduce_max_ps(vmax);
    if (maxValue == -INFINITY) return;
    __m512 vm = _mm512_set1_ps(maxValue), vsum = _mm512_setzero_ps();
    for (i = 0; i + 16 <= n; i += 16) {
        __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(row + i), vm));
        _mm512_storeu_ps(row + i, e);
        vsum = _mm512_add_ps(vsum, e);
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, row + i), vm));
        e = _mm512_maskz_mov_ps(m, e);
        _mm512_mask_storeu_ps(row + i, m, e);
        vsum = _mm512_add_ps(vsum, e);
    }
    __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vsum));
    for (i = 0; i + 16 <= n; i += 16) _mm512_storeu_ps(row + i, _mm512_mul_ps(_mm512_loadu_ps(row + i), inv));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(row + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, row + i), inv));
    }
}

AVX512 static void silu_mul_avx512(float *gate, const float *up, size_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 g = _mm512_loadu_ps(gate + i);
        __m512 s = _mm512_div_ps(g, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), g))));
        _mm512_storeu_ps(gate + i, _mm512_mul_ps(s, _mm512_loadu_ps(up + i)));
    }
    for (; i < n; i++) gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

AVX512 static void rmsnorm_avx512(const float *x, const float *w, float eps, float *out, size_t dim) {
    __m512 acc = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= dim; i += 16) { __m512 v = _mm512_loadu_ps(x + i); acc = _mm512_fmadd_ps(v, v, acc); }
    float ss = _mm512_reduce_add_ps(acc);
    for (; i < dim; i++) ss += x[i] * x[i];
    float inv = 1.0f / sqrtf(ss / (float)dim + eps);
    __m512 vi = _mm512_set1_ps(inv);
    for (i = 0; i + 16 <= dim; i += 16)
        _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), vi), _mm512_loadu_ps(w + i)));
    for (; i < dim; i++) out[i] = x[i] * inv * w[i];
}

AVX512 static void bf16_to_f32_avx512(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(src + i)));
        _mm512_storeu_si512((void *)(dst + i), _mm512_slli_epi32(v, 16));
    }
    uint32_t *out = (uint32_t *)dst;
    for (; i < n; i++) out[i] = ((uint32_t)src[i]) << 16;
}

AVX512 static inline __m512 load_bf16(const uint16_t *p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}

AVX512 static inline __m512 load_bf16_masked(const uint16_t *p, __mmask16 m) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}

/* Weight loads of the one-row kernels below: bf16 widened to fp32, or fp32 as stored. `bf16` is a constant at every
 * call site, so each kernel compiles to its own loop without the branch. */
AVX512 static inline __attribute__((always_inline)) __m512 load_weights(const void *row, size_t c, int bf16) {
    return bf16 ? load_bf16((const uint16_t *)row + c) : _mm512_loadu_ps((const float *)row + c);
}

AVX512 static inline __attribute__((always_inline)) __m512 load_weights_masked(const void *row, size_t c, __mmask16 m,
                                                                             int bf16) {
    return bf16 ? load_bf16_masked((const uint16_t *)row + c, m) : _mm512_maskz_loadu_ps(m, (const float *)row + c);
}

/* One weight row at a time, read front to back. A GEMV is bound by reading the weights once; four rows read side by
 * side are four short streams that each start on a new 4 KiB page (a 2,048-column bf16 row is one page), and the
 * hardware prefetcher restarts on every one of them. One sequential stream measured 1.2–1.35× the four-row kernel,
 * and 1.2–1.3× OpenBLAS's sgemv for fp32 weights (docs/PERFORMANCE.md, "Second pass"). x stays in L1; four
 * accumulators hide the FMA latency. */
AVX512 static inline __attribute__((always_inline)) void gemv_rows_avx512(const void *w, int bf16, size_t ldw,
                                                                          size_t rows, size_t cols, const float *x,
                                                                          float *y, int accumulate) {
    size_t row_bytes = ldw * (bf16 ? 2 : 4);
    for (size_t r = 0; r < rows; r++) {
        const void *wr = (const char *)w + r * row_bytes;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        size_t c = 0;
        for (; c + 64 <= cols; c += 64) {
            a0 = _mm512_fmadd_ps(load_weights(wr, c, bf16), _mm512_loadu_ps(x + c), a0);
            a1 = _mm512_fmadd_ps(load_weights(wr, c + 16, bf16), _mm512_loadu_ps(x + c + 16), a1);
            a2 = _mm512_fmadd_ps(load_weights(wr, c + 32, bf16), _mm512_loadu_ps(x + c + 32), a2);
            a3 = _mm512_fmadd_ps(load_weights(wr, c + 48, bf16), _mm512_loadu_ps(x + c + 48), a3);
        }
        for (; c + 16 <= cols; c += 16) a0 = _mm512_fmadd_ps(load_weights(wr, c, bf16), _mm512_loadu_ps(x + c), a0);
        if (c < cols) {
            __mmask16 m = (__mmask16)((1u << (cols - c)) - 1);
            a1 = _mm512_fmadd_ps(load_weights_masked(wr, c, m, bf16), _mm512_maskz_loadu_ps(m, x + c), a1);
        }
        float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
        y[r] = accumulate ? y[r] + s : s;
    }
}

AVX512 static void gemv_bf16_avx512(const uint16_t *w, size_t ldw, size_t rows, size_t cols, const float *x,
                                    float *y, int accumulate) {
    gemv_rows_avx512(w, 1, ldw, rows, cols, x, y, accumulate);
}

AVX512 static void gemv_f32_avx512(const float *w, size_t ldw, size_t rows, size_t cols, const float *x, float *y,
                                   int accumulate) {
    gemv_rows_avx512(w, 0, ldw, rows, cols, x, y, accumulate);
}

/* y[0..<valid] (+)= one panel's 64 column sums, held as two sets of four accumulators (a: even steps, b: odd). */
AVX512 static inline __attribute__((always_inline)) void store_panel_sums(float *y, size_t valid, const __m512 a[4],
                                                                          const __m512 b[4], int accumulate) {
    for (size_t part = 0; part * 16 < valid; part++) {
        size_t lanes = valid - part * 16 < 16 ? valid - part * 16 : 16;
        __mmask16 m = (__mmask16)(lanes == 16 ? 0xFFFF : ((1u << lanes) - 1));
        float *out = y + part * 16;
        __m512 sum = _mm512_add_ps(a[part], b[part]);
        _mm512_mask_storeu_ps(out, m, accumulate ? _mm512_add_ps(_mm512_maskz_loadu_ps(m, out), sum) : sum);
    }
}

/* acc[i] += x · row[16i ..< 16i + 16]: one k step over a panel's 64 columns. */
AVX512 static inline __attribute__((always_inline)) void panel_row_fma(__m512 acc[4], const float *row, __m512 x) {
    for (int i = 0; i < 4; i++) acc[i] = _mm512_fmadd_ps(x, _mm512_loadu_ps(row + 16 * i), acc[i]);
}

/* One-row product over fp32 weights packed in 64-column panels (moe_pack_f32_panels64): each panel is a `kp × 64`
 * row-major block read front to back, x[k] broadcast against 64 consecutive weights, so one stream per panel and no
 * horizontal sums. Two sets of four accumulators (even and odd k) hide the FMA latency. */
AVX512 static void gemv_panels64_avx512(const float *panels, size_t kp, size_t n, size_t k, const float *x, float *y,
                                        int accumulate) {
    for (size_t first = 0; first < n; first += 64) {
        const float *p = panels + (first / 64) * kp * 64;
        __m512 a[4], b[4];
        for (int i = 0; i < 4; i++) a[i] = b[i] = _mm512_setzero_ps();
        size_t c = 0;
        for (; c + 2 <= k; c += 2) {
            panel_row_fma(a, p + c * 64, _mm512_set1_ps(x[c]));
            panel_row_fma(b, p + c * 64 + 64, _mm512_set1_ps(x[c + 1]));
        }
        if (c < k) panel_row_fma(a, p + c * 64, _mm512_set1_ps(x[c]));
        store_panel_sums(y + first, n - first < 64 ? n - first : 64, a, b, accumulate);
    }
}

#define AVX512BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,avx512bf16")))

/* bf16 × bf16 with fp32 accumulation: one VDPBF16PS multiplies 32 pairs, twice the work per instruction of
 * widen-and-FMA and half the bytes of x per element. One weight row at a time, read front to back, for the
 * prefetcher's sake (see gemv_rows_avx512). */
AVX512BF16 static inline __m512 dot_bf16_step(__m512 acc, const uint16_t *w, __m512i xv) {
    return _mm512_dpbf16_ps(acc, (__m512bh)_mm512_loadu_si512((const void *)w), (__m512bh)xv);
}

AVX512BF16 static inline __m512 dot_bf16_tail(__m512 acc, const uint16_t *w, __m512i xv, __mmask32 m) {
    return _mm512_dpbf16_ps(acc, (__m512bh)_mm512_maskz_loadu_epi16(m, w), (__m512bh)xv);
}

AVX512BF16 static void gemv_bf16_bf16_avx512(const uint16_t *w, size_t ldw, size_t rows, size_t cols,
                                            const uint16_t *x, float *y, int accumulate) {
    size_t full = cols / 32 * 32;
    __mmask32 tail = (__mmask32)((cols - full) == 0 ? 0 : ((1ull << (cols - full)) - 1));
    __m512i xt = _mm512_maskz_loadu_epi16(tail, x + full);
    for (size_t r = 0; r < rows; r++) {
        const uint16_t *wr = w + r * ldw;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        size_t c = 0;
        for (; c + 128 <= full; c += 128) {
            a0 = dot_bf16_step(a0, wr + c, _mm512_loadu_si512((const void *)(x + c)));
            a1 = dot_bf16_step(a1, wr + c + 32, _mm512_loadu_si512((const void *)(x + c + 32)));
            a2 = dot_bf16_step(a2, wr + c + 64, _mm512_loadu_si512((const void *)(x + c + 64)));
            a3 = dot_bf16_step(a3, wr + c + 96, _mm512_loadu_si512((const void *)(x + c + 96)));
        }
        for (; c < full; c += 32) a0 = dot_bf16_step(a0, wr + c, _mm512_loadu_si512((const void *)(x + c)));
        if (tail) a1 = dot_bf16_tail(a1, wr + full, xt, tail);
        float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
        y[r] = accumulate ? y[r] + s : s;
    }
}
#endif

/* ------------------------------------------------------------------ portable bodies */

static void softmax_portable(float *row, size_t n) {
    if (n == 0) return;
    float maxValue = -INFINITY;
    for (size_t i = 0; i < n; i++) if (row[i] > maxValue) maxValue = row[i];
    if (maxValue == -INFINITY) return;
    float sum = 0;
    for (size_t i = 0; i < n; i++) { float e = expf(row[i] - maxValue); row[i] = e; sum += e; }
    float inv = 1.0f / sum;
    for (size_t i = 0; i < n; i++) row[i] *= inv;
}

static void gemv_bf16_portable(const uint16_t *w, size_t ldw, size_t rows, size_t cols, const float *x, float *y,
                               int accumulate) {
    for (size_t r = 0; r < rows; r++) {
        const uint16_t *wr = w + r * ldw;
        float s = 0;
        for (size_t c = 0; c < cols; c++) {
            uint32_t bits = ((uint32_t)wr[c]) << 16;
            float v;
            memcpy(&v, &bits, 4);
            s += v * x[c];
        }
        y[r] = accumulate ? y[r] + s : s;
    }
}

static void gemv_bf16_bf16_portable(const uint16_t *w, size_t ldw, size_t rows, size_t cols, const uint16_t *x,
                                    float *y, int accumulate) {
    for (size_t r = 0; r < rows; r++) {
        const uint16_t *wr = w + r * ldw;
        float s = 0;
        for (size_t c = 0; c < cols; c++) {
            uint32_t wb = ((uint32_t)wr[c]) << 16, xb = ((uint32_t)x[c]) << 16;
            float wv, xv;
            memcpy(&wv, &wb, 4);
            memcpy(&xv, &xb, 4);
            s += wv * xv;
        }
        y[r] = accumulate ? y[r] + s : s;
    }
}

#if MOE_X86
/* acc[i] += the 16 columns × 2 k of pair[32i ..< 32i + 32] · x's broadcast pair: one k pair over a panel. */
AVX512BF16 static inline __attribute__((always_inline)) void panel_pair_dot(__m512 acc[4], const uint16_t *pair,
                                                                           __m512i x) {
    for (int i = 0; i < 4; i++) acc[i] = dot_bf16_step(acc[i], pair + 32 * i, x);
}

/* One-row bf16 × bf16 product over bf16 weights packed in 64-column panels with k pairs interleaved
 * (moe_pack_bf16_panels64): each zmm of a k pair holds 16 columns × 2 k, exactly VDPBF16PS's operand, and x's pair
 * is broadcast as one 32-bit lane. Each panel is one front-to-back stream; no horizontal sums. */
AVX512BF16 static void gemv_bf16_panels64_avx512(const uint16_t *panels, size_t kp, size_t n, size_t k,
                                                const uint16_t *x, float *y, int accumulate) {
    size_t pairs = k / 2;
    for (size_t first = 0; first < n; first += 64) {
        const uint16_t *p = panels + (first / 64) * kp * 64;
        __m512 a[4], b[4];
        for (int i = 0; i < 4; i++) a[i] = b[i] = _mm512_setzero_ps();
        size_t q = 0;
        for (; q + 2 <= pairs; q += 2) {
            uint32_t xa, xb;
            memcpy(&xa, x + 2 * q, 4);
            memcpy(&xb, x + 2 * q + 2, 4);
            panel_pair_dot(a, p + q * 128, _mm512_set1_epi32((int)xa));
            panel_pair_dot(b, p + q * 128 + 128, _mm512_set1_epi32((int)xb));
        }
        /* The last whole pair, then an odd k's last column paired with a zero (never x's next element). */
        for (; q < (k + 1) / 2; q++) {
            uint32_t xa = x[2 * q];
            if (2 * q + 1 < k) xa |= (uint32_t)x[2 * q + 1] << 16;
            panel_pair_dot(a, p + q * 128, _mm512_set1_epi32((int)xa));
        }
        store_panel_sums(y + first, n - first < 64 ? n - first : 64, a, b, accumulate);
    }
}
#endif

static float bf16_value(uint16_t bits) {
    uint32_t wide = ((uint32_t)bits) << 16;
    float value;
    memcpy(&value, &wide, 4);
    return value;
}

/* The panel GEMVs without AVX-512, fp32 or bf16 panels (then x is bf16 too): column by column in k order. */
static void gemv_panels64_portable(const void *panels, int bf16, size_t kp, size_t n, size_t k, const void *x, float *y,
                                   int accumulate) {
    for (size_t first = 0; first < n; first += 64) {
        size_t panel = (first / 64) * kp * 64;
        size_t valid = n - first < 64 ? n - first : 64;
        float sums[64] = {0};
        for (size_t c = 0; c < k; c++) {
            float xv = bf16 ? bf16_value(((const uint16_t *)x)[c]) : ((const float *)x)[c];
            for (size_t j = 0; j < 64; j++) {
                float wv = bf16 ? bf16_value(((const uint16_t *)panels)[panel + (c / 2) * 128 + j * 2 + (c % 2)])
                                : ((const float *)panels)[panel + c * 64 + j];
                sums[j] += xv * wv;
            }
        }
        for (size_t j = 0; j < valid; j++) y[first + j] = accumulate ? y[first + j] + sums[j] : sums[j];
    }
}

/* ------------------------------------------------------------------ dispatch */

void moe_softmax_row(float *row, size_t n) {
#if MOE_X86
    if (isa() == 1) { softmax_avx512(row, n); return; }
#endif
    softmax_portable(row, n);
}

void moe_silu_mul(float *gate, const float *up, size_t n) {
#if MOE_X86
    if (isa() == 1) { silu_mul_avx512(gate, up, n); return; }
#endif
    for (size_t i = 0; i < n; i++) gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

void moe_rmsnorm_row(const float *x, const float *weight, float eps, float *out, size_t dim) {
#if MOE_X86
    if (isa() == 1) { rmsnorm_avx512(x, weight, eps, out, dim); return; }
#endif
    float ss = 0;
    for (size_t i = 0; i < dim; i++) ss += x[i] * x[i];
    float inv = 1.0f / sqrtf(ss / (float)dim + eps);
    for (size_t i = 0; i < dim; i++) out[i] = x[i] * inv * weight[i];
}

void moe_gemv_bf16(const uint16_t *w, size_t ldw, size_t rows, size_t cols, const float *x, float *y, int accumulate) {
#if MOE_X86
    if (isa() == 1) { gemv_bf16_avx512(w, ldw, rows, cols, x, y, accumulate); return; }
#endif
    gemv_bf16_portable(w, ldw, rows, cols, x, y, accumulate);
}

void moe_gemv_f32(const float *w, size_t ldw, size_t rows, size_t cols, const float *x, float *y, int accumulate) {
#if MOE_X86
    if (isa() == 1) { gemv_f32_avx512(w, ldw, rows, cols, x, y, accumulate); return; }
#endif
    for (size_t r = 0; r < rows; r++) {
        const float *wr = w + r * ldw;
        float s = 0;
        for (size_t c = 0; c < cols; c++) s += wr[c] * x[c];
        y[r] = accumulate ? y[r] + s : s;
    }
}

void moe_pack_f32_panels64(const float *w, size_t ldw, size_t rows, size_t cols, float *out) {
    size_t kp = (cols + 15) / 16 * 16;
    for (size_t first = 0; first < rows; first += 64) {
        float *panel = out + (first / 64) * kp * 64;
        size_t valid = rows - first < 64 ? rows - first : 64;
        /* 16 columns of W at a time: 64 short row reads, one 4 KiB block of the panel written (both cached). */
        for (size_t c0 = 0; c0 < kp; c0 += 16) {
            float *block = panel + c0 * 64;
            for (size_t j = 0; j < 64; j++) {
                if (j >= valid) {
                    for (size_t c = 0; c < 16; c++) block[c * 64 + j] = 0.0f;
                    continue;
                }
                const float *wr = w + (first + j) * ldw;
                for (size_t c = 0; c < 16; c++) block[c * 64 + j] = c0 + c < cols ? wr[c0 + c] : 0.0f;
            }
        }
    }
}

void moe_gemv_f32_panels64(const float *panels, size_t kp, size_t n, size_t k, const float *x, float *y,
                           int accumulate) {
#if MOE_X86
    if (isa() == 1) { gemv_panels64_avx512(panels, kp, n, k, x, y, accumulate); return; }
#endif
    gemv_panels64_portable(panels, 0, kp, n, k, x, y, accumulate);
}

void moe_pack_bf16_panels64(const uint16_t *w, size_t ldw, size_t rows, size_t cols, uint16_t *out) {
    size_t kp = (cols + 31) / 32 * 32;
    for (size_t first = 0; first < rows; first += 64) {
        uint16_t *panel = out + (first / 64) * kp * 64;
        size_t valid = rows - first < 64 ? rows - first : 64;
        for (size_t j = 0; j < 64; j++) {
            if (j >= valid) {
                for (size_t c = 0; c < kp; c++) panel[(c / 2) * 128 + j * 2 + (c % 2)] = 0;
                continue;
            }
            const uint16_t *wr = w + (first + j) * ldw;
            for (size_t c = 0; c < kp; c++) panel[(c / 2) * 128 + j * 2 + (c % 2)] = c < cols ? wr[c] : 0;
        }
    }
}

void moe_gemv_bf16_bf16_panels64(const uint16_t *panels, size_t kp, size_t n, size_t k, const uint16_t *x, float *y,
                                 int accumulate) {
#if MOE_X86
    if (moe_kernels_bf16_dot() == 1) { gemv_bf16_panels64_avx512(panels, kp, n, k, x, y, accumulate); return; }
#endif
    gemv_panels64_portable(panels, 1, kp, n, k, x, y, accumulate);
}

void moe_gemv_bf16_bf16(const uint16_t *w, size_t ldw, size_t rows, size_t cols, const uint16_t *x, float *y,
                        int accumulate) {
#if MOE_X86
    if (moe_kernels_bf16_dot() == 1) { gemv_bf16_bf16_avx512(w, ldw, rows, cols, x, y, accumulate); return; }
#endif
    gemv_bf16_bf16_portable(w, ldw, rows, cols, x, y, accumulate);
}

void moe_bf16_to_f32(const uint16_t *src, float *dst, size_t n) {
#if MOE_X86
    if (isa() == 1) { bf16_to_f32_avx512(src, dst, n); return; }
#endif
    uint32_t *out = (uint32_t *)dst;
    for (size_t i = 0; i < n; i++) out[i] = ((uint32_t)src[i]) << 16;
}

/* ------------------------------------------------------------------ per-thread state */

static _Thread_local int moe_parallel_depth_value = 0;
int moe_parallel_depth(void) { return moe_parallel_depth_value; }
void moe_parallel_depth_add(int delta) { moe_parallel_depth_value += delta; }
/* A per-thread compute-thread count that overrides the process-wide one (0: none), so that code running side by
   side in one process (tests) can pick its own without changing anyone else's. */
static _Thread_local int moe_threads_override_value = 0;
int moe_threads_override(void) { return moe_threads_override_value; }
void moe_set_threads_override(int n) { moe_threads_override_value = n; }

#include <stdlib.h>
static _Thread_local float *moe_scratch_base[6];
static _Thread_local size_t moe_scratch_count[6];

float *moe_thread_scratch(int slot, size_t count) {
    if (slot < 0 || slot > 5) return NULL;
    if (moe_scratch_count[slot] < count) {
        free(moe_scratch_base[slot]);
        size_t bytes = ((count * sizeof(float) + 63) / 64) * 64;
        moe_scratch_base[slot] = (float *)aligned_alloc(64, bytes);
        moe_scratch_count[slot] = moe_scratch_base[slot] ? count : 0;
    }
    return moe_scratch_base[slot];
}

#if defined(__GLIBC__)
#include <malloc.h>
#endif
/* Activations are allocated and freed per layer with the same sizes every forward. glibc serves blocks
 * above its mmap threshold with fresh mappings, so each forward would page-fault its buffers in again;
 * raising the thresholds keeps freed activation memory in the heap for the next layer. */
void moe_tune_allocator(void) {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

#if MOE_X86
AVX512 static float sum_avx512(const float *x, size_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(x + i));
        a1 = _mm512_add_ps(a1, _mm512_loadu_ps(x + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_loadu_ps(x + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_loadu_ps(x + i + 48));
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    for (; i < n; i++) s += x[i];
    return s;
}
#endif

float moe_sum_f32(const float *x, size_t n) {
#if MOE_X86
    if (isa() == 1) return sum_avx512(x, n);
#endif
    float s = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    return s;
}
