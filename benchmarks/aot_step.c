/* Times NAME_train_step of an exported library from C: median microseconds per step over rotating
 * distinct random batches (random labels). Built by benchmarks/aot_step.py against "bench.h".
 * usage: aot_step STEPS NBATCHES */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench.h"

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    long steps = argc > 1 ? atol(argv[1]) : 200, nb = argc > 2 ? atol(argv[2]) : 32, s, i;
    size_t xs = (size_t)BENCH_BATCH * BENCH_IN_FEATURES;
    float *x = malloc(sizeof(float) * xs * (size_t)nb), loss;
    int32_t *y = malloc(sizeof(int32_t) * BENCH_BATCH * (size_t)nb);
    double *t = malloc(sizeof(double) * (size_t)steps);
    uint64_t r = 88172645463325252ull;
    bench_state *st;
    if (!x || !y || !t || bench_create(&st) != MLPC_OK)
        return 1;
    for (i = 0; i < (long)xs * nb; i++) {
        r ^= r << 13; r ^= r >> 7; r ^= r << 17;
        x[i] = (float)((double)(r >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
    for (i = 0; i < BENCH_BATCH * nb; i++) {
        r ^= r << 13; r ^= r >> 7; r ^= r << 17;
        y[i] = (int32_t)(r % BENCH_OUT_FEATURES);
    }
    for (s = -10; s < steps; s++) {
        struct timespec a, b;
        long j = (s + 10) % nb;
        clock_gettime(CLOCK_MONOTONIC, &a);
        if (bench_train_step(st, x + (size_t)j * xs, y + (size_t)j * BENCH_BATCH, &loss) != MLPC_OK) {
            fprintf(stderr, "%s\n", bench_last_error());
            return 1;
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
        if (s >= 0)
            t[s] = (double)(b.tv_sec - a.tv_sec) * 1e6 + (double)(b.tv_nsec - a.tv_nsec) / 1e3;
    }
    qsort(t, (size_t)steps, sizeof *t, cmp);
    printf("%.2f\n", t[steps / 2]);
    bench_destroy(st);
    return 0;
}
