// A stand-in for the CUDA runtime, linked (instead of libcudart) into launch-capture: the host code
// of the kernel sources runs unchanged on a machine without a GPU, and every kernel launch is
// printed as one JSON line — the kernel's mangled name, grid, block, dynamic shared memory and the
// bytes of each argument — for ptx-sim.mjs to run. Allocations get addresses that are never
// dereferenced here; memsets and allocations are printed so that the simulator knows the buffers.
//
// Argument sizes come from the kernels' PTX parameter lists, in the file named by
// KERNEL_STATS_PARAM_SIZES (one line per kernel: mangled name, then the size of each parameter).
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::map<const void *, std::string> &kernelNames() {
  static std::map<const void *, std::string> names;
  return names;
}

const std::vector<size_t> *argumentSizes(const std::string &kernel) {
  static std::map<std::string, std::vector<size_t>> sizes;
  static bool loaded = false;
  if (!loaded) {
    loaded = true;
    if (const char *file = std::getenv("KERNEL_STATS_PARAM_SIZES")) {
      std::ifstream in(file);
      std::string line;
      while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::string name;
        fields >> name;
        for (size_t size; fields >> size;) sizes[name].push_back(size);
      }
    }
  }
  const auto it = sizes.find(kernel);
  return it == sizes.end() ? nullptr : &it->second;
}

struct LaunchConfiguration {
  dim3 grid, block;
  size_t sharedBytes = 0;
  void *stream = nullptr;
} pending;

uint64_t nextAddress = 0x7f0000000000ull;  // scratch from cudaMallocAsync / cudaMalloc

}  // namespace

extern "C" {

void **__cudaRegisterFatBinary(void *) {
  static void *handle = nullptr;
  return &handle;
}
void __cudaRegisterFatBinaryEnd(void **) {}
void __cudaUnregisterFatBinary(void **) {}
void __cudaRegisterFunction(void **, const char *hostFunction, char *deviceFunction, const char *, int, uint3 *,
                            uint3 *, dim3 *, dim3 *, int *) {
  kernelNames()[hostFunction] = deviceFunction;
}
void __cudaRegisterVar(void **, char *, char *, const char *, int, size_t, int, int) {}

cudaError_t __cudaGetKernel(cudaKernel_t *kernel, const void *hostFunction) {
  *kernel = reinterpret_cast<cudaKernel_t>(const_cast<void *>(hostFunction));
  return cudaSuccess;
}

unsigned __cudaPushCallConfiguration(dim3 grid, dim3 block, size_t sharedBytes, void *stream) {
  pending = {grid, block, sharedBytes, stream};
  return 0;
}

cudaError_t __cudaPopCallConfiguration(dim3 *grid, dim3 *block, size_t *sharedBytes, void *stream) {
  *grid = pending.grid;
  *block = pending.block;
  *sharedBytes = pending.sharedBytes;
  *static_cast<void **>(stream) = pending.stream;
  return cudaSuccess;
}

cudaError_t __cudaLaunchKernel(cudaKernel_t kernel, dim3 grid, dim3 block, void **args, size_t sharedBytes,
                               cudaStream_t) {
  const std::string &name = kernelNames()[reinterpret_cast<const void *>(kernel)];
  const std::vector<size_t> *sizes = argumentSizes(name);
  std::printf(
      "{\"type\":\"launch\",\"kernel\":\"%s\",\"grid\":[%u,%u,%u],\"block\":[%u,%u,%u],\"sharedBytes\":%zu,"
      "\"args\":",
      name.c_str(), grid.x, grid.y, grid.z, block.x, block.y, block.z, sharedBytes);
  if (!sizes) {
    std::printf("null}\n");
    return cudaSuccess;
  }
  std::printf("[");
  for (size_t i = 0; i < sizes->size(); ++i) {
    std::printf(i ? ",\"" : "\"");
    const auto *bytes = static_cast<const unsigned char *>(args[i]);
    for (size_t j = 0; j < (*sizes)[i]; ++j) std::printf("%02x", bytes[j]);
    std::printf("\"");
  }
  std::printf("]}\n");
  return cudaSuccess;
}

cudaError_t cudaMallocAsync(void **pointer, size_t bytes, cudaStream_t) {
  *pointer = reinterpret_cast<void *>(nextAddress);
  std::printf("{\"type\":\"alloc\",\"address\":%llu,\"bytes\":%zu}\n", static_cast<unsigned long long>(nextAddress),
              bytes);
  nextAddress += (bytes + 0xfffff) & ~uint64_t(0xfffff);
  return cudaSuccess;
}
cudaError_t cudaMalloc(void **pointer, size_t bytes) { return cudaMallocAsync(pointer, bytes, nullptr); }
cudaError_t cudaFreeAsync(void *, cudaStream_t) { return cudaSuccess; }
cudaError_t cudaFree(void *) { return cudaSuccess; }
cudaError_t cudaMemsetAsync(void *pointer, int value, size_t bytes, cudaStream_t) {
  std::printf("{\"type\":\"memset\",\"address\":%llu,\"bytes\":%zu,\"value\":%d}\n",
              static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(pointer)), bytes, value);
  return cudaSuccess;
}
cudaError_t cudaMemset(void *pointer, int value, size_t bytes) {
  return cudaMemsetAsync(pointer, value, bytes, nullptr);
}
cudaError_t cudaFuncSetAttribute(const void *, cudaFuncAttribute, int) { return cudaSuccess; }
cudaError_t cudaGetLastError() { return cudaSuccess; }
cudaError_t cudaPeekAtLastError() { return cudaSuccess; }
cudaError_t cudaGetDevice(int *device) {
  *device = 0;
  return cudaSuccess;
}
// The device the interpreter stands for: an H100/H200 (sm_90, 132 SMs), whose PTX it runs. The
// chunked ssdScan asks for the compute capability to pick its tensor-core path.
cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attribute, int) {
  switch (attribute) {
    case cudaDevAttrComputeCapabilityMajor: *value = 9; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *value = 132; return cudaSuccess;
    default: return cudaErrorInvalidValue;
  }
}

}  // extern "C"
