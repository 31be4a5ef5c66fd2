// Microbenchmarks for the roofline of bench/: the device's exp2 rate (the compute floor of the
// scan at small N, where every (t, n) costs one exp2 on the special-function unit).
#include <cuda_runtime.h>

#include "microbench.h"

namespace ss::cuda {
namespace {

constexpr int kChains = 8;  // independent chains per thread, like the states of a step
constexpr int kIterations = 256;

__global__ void exp2Kernel(float *sink, float seed) {
  float x[kChains];
#pragma unroll
  for (int c = 0; c < kChains; ++c) x[c] = seed * float(c + 1 + threadIdx.x % 7);
  for (int i = 0; i < kIterations; ++i) {
#pragma unroll
    for (int c = 0; c < kChains; ++c) x[c] = exp2f(x[c]) * 0.999f - 1.0f;  // stays in [-1, 0]
  }
  float sum = 0;
#pragma unroll
  for (int c = 0; c < kChains; ++c) sum += x[c];
  if (sum == 12345.0f) sink[0] = sum;  // never true; keeps the work alive
}

}  // namespace

cudaError_t measureExp2Rate(double *expPerSecond) {
  int device = 0, sms = 0;
  cudaError_t e = cudaGetDevice(&device);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  float *sink = nullptr;
  if (e == cudaSuccess) e = cudaMalloc(&sink, sizeof(float));
  cudaEvent_t start = nullptr, stop = nullptr;
  if (e == cudaSuccess) e = cudaEventCreate(&start);
  if (e == cudaSuccess) e = cudaEventCreate(&stop);
  const int threads = 256, blocks = sms * 64;
  float ms = 0;
  if (e == cudaSuccess) {
    exp2Kernel<<<blocks, threads>>>(sink, -0.001f);  // warm up
    cudaEventRecord(start);
    exp2Kernel<<<blocks, threads>>>(sink, -0.002f);
    cudaEventRecord(stop);
    e = cudaEventSynchronize(stop);
  }
  if (e == cudaSuccess) e = cudaGetLastError();
  if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, start, stop);
  if (start) cudaEventDestroy(start);
  if (stop) cudaEventDestroy(stop);
  if (sink) cudaFree(sink);
  *expPerSecond = e == cudaSuccess ? double(blocks) * threads * kChains * kIterations / (ms * 1e-3) : 0;
  return e;
}

}  // namespace ss::cuda
