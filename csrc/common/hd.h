// Marks functions shared by the CPU backend (g++) and the CUDA kernels (nvcc).
#pragma once

#if defined(__CUDACC__)
#include <cuda_runtime.h>  // the qualifiers (nvcc has them anyway; the emulator's header defines them)
#define SS_HD __host__ __device__ __forceinline__
#else
#define SS_HD inline
#endif
