/* GEMM engine comparison for Linear (issue 15), out of CI: OpenBLAS (whatever core OPENBLAS_CORETYPE selects),
 * oneDNN fp32 and bf16 matmul, and moe-eval's own CKernels (compiled from Sources/CKernels), on the shape classes
 * of the forward pass. Engines alternate inside each round so a busy machine slows them alike; the best time of
 * the rounds is kept. Threading mirrors Linear: OpenBLAS single-threaded per worker on a share of the output
 * columns; oneDNN with its OpenMP team set to the same worker count. Build and run with run.sh. */
#define _GNU_SOURCE
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>
#include "CKernels.h"

void openblas_set_num_threads(int);
char *openblas_get_corename(void);

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}
#define CHECK(x) do { dnnl_status_t s_ = (x); if (s_ != dnnl_success) { fprintf(stderr, "%s: %d\n", #x, s_); exit(1); } } while (0)

static dnnl_engine_t engine;
typedef struct { dnnl_primitive_t p; dnnl_memory_desc_t a, b, c, scratch; void *scratchBuffer; } matmul;

static matmul make_matmul_ld(int m, int n, int k, int ldc, dnnl_data_type_t type) {
    matmul r;
    dnnl_dims_t da = {m, k}, sa = {k, 1}, db = {k, n}, sb = {1, k}, dc = {m, n}, sc = {ldc, 1};
    CHECK(dnnl_memory_desc_init_by_strides(&r.a, 2, da, type, sa));
    CHECK(dnnl_memory_desc_init_by_strides(&r.b, 2, db, type, sb));
    CHECK(dnnl_memory_desc_init_by_strides(&r.c, 2, dc, dnnl_f32, sc));
    dnnl_matmul_desc_t d;
    CHECK(dnnl_matmul_desc_init(&d, &r.a, &r.b, NULL, &r.c));
    dnnl_primitive_attr_t attr;
    CHECK(dnnl_primitive_attr_create(&attr));
    CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    dnnl_primitive_desc_t pd;
    CHECK(dnnl_primitive_desc_create(&pd, &d, attr, engine, NULL));
    r.scratch = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t bytes = dnnl_memory_desc_get_size(&r.scratch);
    r.scratchBuffer = bytes ? aligned_alloc(64, (bytes + 63) / 64 * 64) : NULL;
    CHECK(dnnl_primitive_create(&r.p, pd));
    dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_attr_destroy(attr);
    return r;
}

static matmul make_matmul(int m, int n, int k, dnnl_data_type_t type) { return make_matmul_ld(m, n, k, n, type); }

/* As OneDNNMatmul.multiply does it: a stream and memory objects per call. */
static void run_matmul(matmul *mm, void *a, void *b, float *c) {
    dnnl_stream_t stream;
    CHECK(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));
    dnnl_memory_t ma, mb, mc, ms = NULL;
    CHECK(dnnl_memory_create(&ma, &mm->a, engine, a));
    CHECK(dnnl_memory_create(&mb, &mm->b, engine, b));
    CHECK(dnnl_memory_create(&mc, &mm->c, engine, c));
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}};
    int count = 3;
    if (mm->scratchBuffer) {
        CHECK(dnnl_memory_create(&ms, &mm->scratch, engine, mm->scratchBuffer));
        args[3].arg = DNNL_ARG_SCRATCHPAD;
        args[3].memory = ms;
        count = 4;
    }
    CHECK(dnnl_primitive_execute(mm->p, stream, count, args));
    CHECK(dnnl_stream_wait(stream));
    dnnl_memory_destroy(ma); dnnl_memory_destroy(mb); dnnl_memory_destroy(mc);
    if (ms) dnnl_memory_destroy(ms);
    dnnl_stream_destroy(stream);
}

static int threads = 2;

static void share(int n, int w, int *lo, int *hi) {
    *lo = w == 0 ? 0 : (n * w / threads) / 16 * 16;
    *hi = w == threads - 1 ? n : (n * (w + 1) / threads) / 16 * 16;
}

/* Linear.apply with fp32 weights. */
static void openblas_fp32(int m, int n, int k, const float *x, const float *w, float *y) {
#pragma omp parallel num_threads(threads)
    {
        int lo, hi;
        share(n, omp_get_thread_num(), &lo, &hi);
        if (m == 1) cblas_sgemv(CblasRowMajor, CblasNoTrans, hi - lo, k, 1, w + (long)lo * k, k, x, 1, 0, y + lo, 1);
        else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, hi - lo, k, 1, x, k, w + (long)lo * k, k, 0, y + lo, n);
    }
}

/* Linear.apply with bf16 weights, fp32 compute: 128-row panels widened then sgemm; one row: moe_gemv_bf16. */
static void widen_fp32(int m, int n, int k, const float *x, const uint16_t *w, float *y) {
#pragma omp parallel num_threads(threads)
    {
        int lo, hi;
        share(n, omp_get_thread_num(), &lo, &hi);
        if (m == 1) moe_gemv_bf16(w + (long)lo * k, k, hi - lo, k, x, y + lo, 0);
        else {
            float *panel = moe_thread_scratch(0, 128L * k);
            for (int s = lo; s < hi; s += 128) {
                int rows = hi - s < 128 ? hi - s : 128;
                moe_bf16_to_f32(w + (long)s * k, panel, (size_t)rows * k);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, rows, k, 1, x, k, panel, k, 0, y + s, n);
            }
        }
    }
}

/* applyBF16Compute, one row: round x, then bf16 pairs (AVX512_BF16 where present). */
static void gemv_bf16_compute(int n, int k, const float *x, uint16_t *xb, const uint16_t *w, float *y) {
    moe_f32_to_bf16(x, xb, k);
#pragma omp parallel num_threads(threads)
    {
        int lo, hi;
        share(n, omp_get_thread_num(), &lo, &hi);
        moe_gemv_bf16_bf16(w + (long)lo * k, k, hi - lo, k, xb, y + lo, 0);
    }
}

/* oneDNN bf16 the way OpenBLAS runs: each worker a single-threaded primitive on its share of the columns. */
static void dnnl_bf16_split(matmul *shares, int m, int n, int k, const float *x, uint16_t *xb, uint16_t *w, float *y) {
    moe_f32_to_bf16(x, xb, (size_t)m * k);
#pragma omp parallel num_threads(threads)
    {
        int lo, hi;
        share(n, omp_get_thread_num(), &lo, &hi);
        run_matmul(&shares[omp_get_thread_num()], xb, w + (long)lo * k, y + lo);
    }
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 5;
    if (getenv("THREADS")) threads = atoi(getenv("THREADS"));
    openblas_set_num_threads(1);
    omp_set_num_threads(threads);
    CHECK(dnnl_engine_create(&engine, dnnl_cpu, 0));
    printf("OpenBLAS core %s, oneDNN ISA %d, AVX512_BF16 kernels %d, %d threads, best of %d alternating rounds\n",
           openblas_get_corename(), (int)dnnl_get_effective_cpu_isa(), moe_kernels_bf16_dot(), threads, rounds);
    /* The decode roofline: read bandwidth of a plain sum over a buffer far larger than the caches. */
    size_t probeCount = (size_t)1 << 27;
    float *probe = malloc(probeCount * sizeof(float));
    for (size_t i = 0; i < probeCount; i++) probe[i] = 1;
    double probeBest = 1e9;
    for (int round = 0; round < 3; round++) {
        double t = now();
        float sums[64] = {0};
#pragma omp parallel num_threads(threads)
        {
            int w = omp_get_thread_num();
            size_t lo = probeCount * w / threads, hi = probeCount * (w + 1) / threads;
            sums[w] = moe_sum_f32(probe + lo, hi - lo);
        }
        t = now() - t;
        if (sums[0] < 0) printf(" ");
        if (t < probeBest) probeBest = t;
    }
    free(probe);
    double bandwidth = probeCount * 4.0 / probeBest / 1e9;
    printf("read bandwidth (sum of 512 MB, %d threads): %.1f GB/s\n", threads, bandwidth);
    /* Prefill dense/attention GEMMs (16B-shaped), debugmodel (B·T = 8·256, dim 256), expert GEMMs of small m,
     * odd sizes, decode GEMV. */
    int shapes[][3] = {{512, 1408, 2048}, {512, 2048, 1408}, {2048, 256, 256}, {2048, 1024, 256}, {128, 1408, 2048},
                       {64, 1408, 2048}, {16, 1408, 2048}, {4, 1408, 2048}, {2, 1408, 2048}, {37, 257, 130},
                       {1, 1408, 2048}, {1, 10944, 2048}, {1, 2048, 10944}};
    int count = sizeof shapes / sizeof shapes[0];
    printf("%6s %6s %6s | %9s %9s %10s | %9s %10s %9s  (GFLOP/s; m=1 also GB/s of weights)\n", "m", "n", "k",
           "blas-f32", "dnnl-f32", "widen-bf16", "dnnl-bf16", "dnnl-split", "ours-bf16");
    for (int si = 0; si < count; si++) {
        int m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
        float *x = malloc(4L * m * k), *w = malloc(4L * n * k), *y = malloc(4L * m * n);
        uint16_t *xb = malloc(2L * m * k), *wb = malloc(2L * n * k);
        for (long i = 0; i < (long)m * k; i++) x[i] = (float)(rand() % 2001 - 1000) / 1000;
        for (long i = 0; i < (long)n * k; i++) w[i] = (float)(rand() % 2001 - 1000) / 1000;
        moe_f32_to_bf16(w, wb, (size_t)n * k);
        double flops = 2.0 * m * n * k;
        int reps = (int)(1e9 / flops) + 2;
        if (reps > 3000) reps = 3000;
        matmul f32 = make_matmul(m, n, k, dnnl_f32), b16 = make_matmul(m, n, k, dnnl_bf16), shares[16];
        omp_set_num_threads(1);
        for (int t = 0; t < threads; t++) {
            int lo, hi;
            share(n, t, &lo, &hi);
            shares[t] = make_matmul_ld(m, hi - lo, k, n, dnnl_bf16);
        }
        omp_set_num_threads(threads);
        double best[6] = {1e9, 1e9, 1e9, 1e9, 1e9, 1e9};
        for (int round = 0; round < rounds; round++) {
            for (int engineIndex = 0; engineIndex < 6; engineIndex++) {
                if (engineIndex == 4 && m != 1) continue;
                double t = now();
                for (int r = 0; r < reps; r++) {
                    switch (engineIndex) {
                    case 0: openblas_fp32(m, n, k, x, w, y); break;
                    case 1: run_matmul(&f32, x, w, y); break;
                    case 2: widen_fp32(m, n, k, x, wb, y); break;
                    case 3: moe_f32_to_bf16(x, xb, (size_t)m * k); run_matmul(&b16, xb, wb, y); break;
                    case 4: gemv_bf16_compute(n, k, x, xb, wb, y); break;
                    case 5: dnnl_bf16_split(shares, m, n, k, x, xb, wb, y); break;
                    }
                }
                t = (now() - t) / reps;
                if (t < best[engineIndex]) best[engineIndex] = t;
            }
        }
        printf("%6d %6d %6d | %9.1f %9.1f %10.1f | %9.1f %10.1f ", m, n, k, flops / best[0] / 1e9, flops / best[1] / 1e9,
               flops / best[2] / 1e9, flops / best[3] / 1e9, flops / best[5] / 1e9);
        if (m == 1)
            printf("%9.1f   weights GB/s (%% of read bandwidth): blas-f32 %.1f (%.0f%%) widen-bf16 %.1f (%.0f%%) "
                   "ours-bf16 %.1f (%.0f%%)", flops / best[4] / 1e9,
                   4.0 * n * k / best[0] / 1e9, 400.0 * n * k / best[0] / 1e9 / bandwidth,
                   2.0 * n * k / best[2] / 1e9, 200.0 * n * k / best[2] / 1e9 / bandwidth,
                   2.0 * n * k / best[4] / 1e9, 200.0 * n * k / best[4] / 1e9 / bandwidth);
        printf("\n");
        fflush(stdout);
        free(x); free(w); free(y); free(xb); free(wb);
    }
    return 0;
}
