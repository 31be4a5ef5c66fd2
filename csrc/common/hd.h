// Marks functions shared by the CPU backend (g++) and the CUDA kernels (nvcc).
#pragma once

#if defined(__CUDACC__)
#define SS_HD __host__ __device__ __forceinline__
#else
#define SS_HD inline
#endif
