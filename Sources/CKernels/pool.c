/* A small pool of compute threads that spin briefly between jobs.
 *
 * Why not libdispatch's concurrentPerform: on the virtual machines moe-eval is measured on, waking a parked thread
 * takes tens of microseconds (measured: concurrentPerform over two 17 µs halves took 49 µs, slower than doing both
 * on one thread). A decode step runs a few dozen short products per token, each split across the threads, so that
 * wake-up was paid dozens of times per token. Workers here spin for a short while after each job before parking on
 * a condition variable, so back-to-back jobs start at once, and an idle process costs nothing after the spin.
 *
 * One job at a time: a caller that finds the pool busy (another thread's job, or a job started from inside a job)
 * gets 0 back and runs its loop some other way. */
#include "CKernels.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define SPIN_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define SPIN_PAUSE() __asm__ __volatile__("yield")
#else
#define SPIN_PAUSE() ((void)0)
#endif

#define POOL_MAX_WORKERS 255
#define POOL_SPIN_NANOSECONDS 200000L

static pthread_mutex_t pool_busy = PTHREAD_MUTEX_INITIALIZER;   /* held by the caller of the running job */
static pthread_mutex_t pool_park = PTHREAD_MUTEX_INITIALIZER;   /* guards parking and thread creation */
static pthread_cond_t pool_wake = PTHREAD_COND_INITIALIZER;
static int pool_workers = 0;                                     /* threads started (under pool_park) */

/* The job. `ticket` packs the job's generation (high 32 bits) with the next unclaimed index (low 32 bits), so a
 * worker that read an older job's fields can never claim an index of a newer job. */
static _Atomic(moe_pool_task_fn) job_fn;
static _Atomic(void *) job_context;
static _Atomic uint32_t job_count;
static _Atomic uint64_t ticket;
static _Atomic uint32_t job_done;
static _Atomic uint32_t generation;

static long monotonic_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

/* Claims and runs indices of job `gen` until none are left or a newer job has replaced it. The job's fields are
 * read after the ticket showed `gen`; they are used only when the claim succeeds, which proves the job was still the
 * current one (a newer job rewrites them only after every index of this one has run). */
static void run_claims(uint32_t gen) {
    uint64_t current = atomic_load_explicit(&ticket, memory_order_acquire);
    for (;;) {
        if ((uint32_t)(current >> 32) != gen) return;
        moe_pool_task_fn fn = atomic_load_explicit(&job_fn, memory_order_relaxed);
        void *context = atomic_load_explicit(&job_context, memory_order_relaxed);
        uint32_t count = atomic_load_explicit(&job_count, memory_order_relaxed);
        uint32_t index = (uint32_t)current;
        if (index >= count) return;
        if (!atomic_compare_exchange_weak_explicit(&ticket, &current, current + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        fn(context, (long)index);
        atomic_fetch_add_explicit(&job_done, 1, memory_order_release);
        current = atomic_load_explicit(&ticket, memory_order_acquire);
    }
}

static void *worker_main(void *unused) {
    (void)unused;
    uint32_t seen = atomic_load_explicit(&generation, memory_order_acquire);
    for (;;) {
        uint32_t gen = atomic_load_explicit(&generation, memory_order_acquire);
        if (gen == seen) {
            long start = monotonic_ns();
            int spins = 0;
            while ((gen = atomic_load_explicit(&generation, memory_order_acquire)) == seen) {
                SPIN_PAUSE();
                if (++spins % 64 == 0 && monotonic_ns() - start > POOL_SPIN_NANOSECONDS) break;
            }
            if (gen == seen) {
                pthread_mutex_lock(&pool_park);
                while ((gen = atomic_load_explicit(&generation, memory_order_acquire)) == seen)
                    pthread_cond_wait(&pool_wake, &pool_park);
                pthread_mutex_unlock(&pool_park);
            }
        }
        seen = gen;
        run_claims(gen);
    }
    return NULL;
}

static int ensure_workers(int wanted) {
    if (wanted > POOL_MAX_WORKERS) wanted = POOL_MAX_WORKERS;
    pthread_mutex_lock(&pool_park);
    while (pool_workers < wanted) {
        pthread_t thread;
        pthread_attr_t attributes;
        pthread_attr_init(&attributes);
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&thread, &attributes, worker_main, NULL);
        pthread_attr_destroy(&attributes);
        if (failed) break;
        pool_workers++;
    }
    int available = pool_workers;
    pthread_mutex_unlock(&pool_park);
    return available;
}

int moe_pool_run(long count, long threads, moe_pool_task_fn fn, void *context) {
    if (count <= 0) return 1;
    if (count > UINT32_MAX - 1 || threads < 2) return 0;
    if (pthread_mutex_trylock(&pool_busy) != 0) return 0;
    if (ensure_workers((int)(threads - 1)) < 1) {
        pthread_mutex_unlock(&pool_busy);
        return 0;
    }
    uint32_t gen = atomic_load_explicit(&generation, memory_order_relaxed) + 1;
    atomic_store_explicit(&job_fn, fn, memory_order_relaxed);
    atomic_store_explicit(&job_context, context, memory_order_relaxed);
    atomic_store_explicit(&job_count, (uint32_t)count, memory_order_relaxed);
    atomic_store_explicit(&job_done, 0, memory_order_relaxed);
    atomic_store_explicit(&ticket, (uint64_t)gen << 32, memory_order_release);
    atomic_store_explicit(&generation, gen, memory_order_release);
    pthread_mutex_lock(&pool_park);
    pthread_cond_broadcast(&pool_wake);
    pthread_mutex_unlock(&pool_park);
    run_claims(gen);
    while (atomic_load_explicit(&job_done, memory_order_acquire) < (uint32_t)count) SPIN_PAUSE();
    pthread_mutex_unlock(&pool_busy);
    return 1;
}
