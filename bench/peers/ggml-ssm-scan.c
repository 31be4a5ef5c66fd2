// A timing harness for llama.cpp's ggml `ssm_scan` in its Mamba-2 form (A one scalar per head, one
// exp per (token, head); softplus on dt; the initial state read and the last state written; no z,
// D or dt bias), for bench/ops/ssd-scan.mjs (the `ggml ssm_scan` rows, SELECTIVE_SCAN_GGML_SSM).
// ggml is not part of this repository: build it from a checkout, then this file against it:
//
//   cmake -S $GGML -B $GGML/build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON
//         -DBUILD_SHARED_LIBS=OFF -DGGML_BUILD_TESTS=OFF -DGGML_BUILD_EXAMPLES=OFF
//   cmake --build $GGML/build
//   cc -O2 bench/peers/ggml-ssm-scan.c -I$GGML/include -L$GGML/build/src -lggml -lggml-cpu
//         -lggml-base -fopenmp -lstdc++ -lm -lpthread -o ggml-ssm-scan
//
// Usage: ggml-ssm-scan batch L H P G N threads reps. It runs the graph `reps` times after one
// warm-up and prints one JSON line: { samplesMs, minMs, medianMs, cpuMinMs, threads, reps }, wall
// times per call, and cpuMinMs the least process CPU time of a call (all threads), which a shared
// machine disturbs less than the wall clock. L = 1 is the decoding step.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ggml-cpu.h"
#include "ggml.h"

static double seconds(clockid_t clock) {
  struct timespec t;
  clock_gettime(clock, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int compareDoubles(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

// Fills t with uniform values in [lo, hi) from a fixed linear congruential sequence.
static void fill(struct ggml_tensor *t, float lo, float hi, uint32_t *seed) {
  float *v = (float *)t->data;
  for (int64_t i = 0; i < ggml_nelements(t); ++i) {
    *seed = *seed * 1664525u + 1013904223u;
    v[i] = lo + (hi - lo) * (float)(*seed >> 8) / 16777216.0f;
  }
}

int main(int argc, char **argv) {
  if (argc != 9) {
    fprintf(stderr, "usage: %s batch L H P G N threads reps\n", argv[0]);
    return 2;
  }
  int64_t a[8];
  for (int i = 0; i < 8; ++i) {
    a[i] = strtoll(argv[i + 1], NULL, 10);
    if (a[i] < 1) {
      fprintf(stderr, "%s: argument %d must be a positive integer, got %s\n", argv[0], i + 1, argv[i + 1]);
      return 2;
    }
  }
  const int64_t batch = a[0], L = a[1], H = a[2], P = a[3], G = a[4], N = a[5];
  const int threads = (int)a[6], reps = (int)a[7];

  const size_t floats =
      (size_t)(N * P * H * batch * 2 + P * H * L * batch * 2 + H * L * batch + H + 2 * N * G * L * batch);
  struct ggml_init_params params = {floats * sizeof(float) + ((size_t)64 << 20), NULL, false};
  struct ggml_context *ctx = ggml_init(params);
  struct ggml_tensor *s = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, N, P, H, batch);
  struct ggml_tensor *x = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, P, H, L, batch);
  struct ggml_tensor *dt = ggml_new_tensor_3d(ctx, GGML_TYPE_F32, H, L, batch);
  struct ggml_tensor *A = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, 1, H);
  struct ggml_tensor *B = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, N, G, L, batch);
  struct ggml_tensor *C = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, N, G, L, batch);
  struct ggml_tensor *ids = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, batch);
  uint32_t seed = 1;
  fill(s, -1, 1, &seed);
  fill(x, -1, 1, &seed);
  fill(dt, -3, 0, &seed);  // softplus of these: 0.05 to 0.7
  fill(A, -2, -0.5f, &seed);
  fill(B, -1, 1, &seed);
  fill(C, -1, 1, &seed);
  for (int64_t i = 0; i < batch; ++i) ((int32_t *)ids->data)[i] = (int32_t)i;

  struct ggml_tensor *out = ggml_ssm_scan(ctx, s, x, dt, A, B, C, ids, 1);
  struct ggml_cgraph *graph = ggml_new_graph(ctx);
  ggml_build_forward_expand(graph, out);
  struct ggml_threadpool_params poolParams = ggml_threadpool_params_default(threads);
  struct ggml_threadpool *pool = ggml_threadpool_new(&poolParams);
  struct ggml_cplan plan = ggml_graph_plan(graph, threads, pool);
  plan.work_data = plan.work_size ? malloc(plan.work_size) : NULL;

  if (ggml_graph_compute(graph, &plan) != GGML_STATUS_SUCCESS) {
    fprintf(stderr, "%s: ggml_graph_compute failed\n", argv[0]);
    return 1;
  }
  double *samples = malloc(sizeof(double) * (size_t)reps);
  double cpuMin = 1e300;
  for (int r = 0; r < reps; ++r) {
    const double w0 = seconds(CLOCK_MONOTONIC), c0 = seconds(CLOCK_PROCESS_CPUTIME_ID);
    ggml_graph_compute(graph, &plan);
    const double c1 = seconds(CLOCK_PROCESS_CPUTIME_ID), w1 = seconds(CLOCK_MONOTONIC);
    samples[r] = (w1 - w0) * 1e3;
    if ((c1 - c0) * 1e3 < cpuMin) cpuMin = (c1 - c0) * 1e3;
  }
  printf("{\"samplesMs\":[");
  for (int r = 0; r < reps; ++r) printf("%s%.6f", r ? "," : "", samples[r]);
  qsort(samples, (size_t)reps, sizeof(double), compareDoubles);
  printf("],\"minMs\":%.6f,\"medianMs\":%.6f,\"cpuMinMs\":%.6f,\"threads\":%d,\"reps\":%d}\n", samples[0],
         samples[reps / 2], cpuMin, threads, reps);

  ggml_threadpool_free(pool);
  free(plan.work_data);
  free(samples);
  ggml_free(ctx);
  return 0;
}
