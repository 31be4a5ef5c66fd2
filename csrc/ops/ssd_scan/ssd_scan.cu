// The forward state space dual scan (Mamba-2) on the GPU, in the recurrent form.
//
// Kernel design (ssdForwardKernel<DT, NPL>; layout in ssd_scan_cuda.cuh):
//  - One block per (batch row, head, tile of positions), a grid-stride loop over them (no grid
//    dimension limits). The tile's P x N state lives in registers: NPL states per thread.
//  - Time is walked one checkpoint interval (chunkLength steps) at a time, cut further at sequence
//    boundaries. Per piece, the block stages B_t and C_t (the N values of the head's group) and
//    dt_t (bias, softplus, clamp) and a_t = exp2(dt_t A log2 e) in shared memory: one exp2 per
//    (t, head), not per state.
//  - Per step: h = a h + (dt x_p) B_n, y_p = sum_n C_n h (a butterfly over the group's lanes),
//    and the group's lane 0 writes out = (y + D x) silu(z), rounded once to the dtype.
//  - After each interval's last step, the state is the checkpoint (N-major, as the CPU backend
//    stores it). At a sequence's first step the state is replaced by that sequence's initial state
//    (or zeros); after its last, it is its last state.
//  - float16 and bfloat16 inputs run the chunked dual form on tensor cores instead
//    (ssd_scan_chunked.cu) where it supports the call; this kernel covers the rest.
#include <algorithm>

#include "ssd_scan_cuda.cuh"

namespace ss::cuda {
namespace {

struct ForwardArgs {
  SsdForwardParams p;
  SsdLayout layout;
};

template <DType DT, int NPL>
__global__ void __launch_bounds__(kSsdThreads) ssdForwardKernel(const ForwardArgs args) {
  extern __shared__ float sharedMemory[];
  const SsdForwardParams &p = args.p;
  const SsdLayout &lay = args.layout;
  const int64_t L = p.shape.seqlen, H = p.shape.heads, P = p.shape.headDim, G = p.shape.groups;
  const int N = int(p.shape.dstate), T = int(p.chunkLength), width = lay.width;
  const int64_t stateSize = P * int64_t(N);

  // Shared memory of one piece: B [T][N], C [T][N], dt [T], a [T].
  float *const Bs = sharedMemory;
  float *const Cs = Bs + T * N;
  float *const dts = Cs + T * N;
  float *const as = dts + T;

  const int tid = int(threadIdx.x), laneInGroup = tid % width;

  for (int64_t item = blockIdx.x; item < lay.work; item += gridDim.x) {
    const int64_t tile = item % lay.tiles, bh = item / lay.tiles, h = bh % H, b = bh / H;
    const int64_t g = h / (H / G), q = tile * lay.positions + tid / width;
    const bool real = q < P;  // groups past P compute on zeros and write nothing
    const float A2 = p.A[h] * kLog2e, bias = p.dtBias ? p.dtBias[h] : 0.0f;
    const float Dq = p.D && real ? p.D[p.dPerHead ? h : h * P + q] : 0.0f;

    for (int64_t si = 0; si < segmentCount(p); ++si) {
      const SsdSegment seg = segmentOf(p, b, si);
      const float *init = p.initialState ? p.initialState + (seg.row * H + h) * stateSize + q * N : nullptr;
      float state[NPL];
#pragma unroll
      for (int j = 0; j < NPL; ++j) {
        const int n = laneInGroup + j * width;
        state[j] = init && real && n < N ? init[n] : 0.0f;
      }

      for (int64_t t0 = seg.start; t0 < seg.end;) {
        const int64_t c = t0 / T, t1 = std::min(seg.end, (c + 1) * T);
        const int len = int(t1 - t0);
        __syncthreads();  // the previous piece's reads of shared memory are done
        for (int i = tid; i < len * N; i += kSsdThreads) {
          const int64_t src = ((b * L + t0 + i / N) * G + g) * N + i % N;
          Bs[i] = loadElement<DT>(p.B, src);
          Cs[i] = loadElement<DT>(p.C, src);
        }
        for (int i = tid; i < len; i += kSsdThreads) {
          const SsdDt d = ssdDt(loadElement<DT>(p.dt, (b * L + t0 + i) * H + h), bias, p.dtSoftplus, p.dtLow, p.dtHigh);
          dts[i] = d.dt;
          as[i] = exp2f(d.dt * A2);
        }
        __syncthreads();

        for (int i = 0; i < len; ++i) {
          const int64_t at = ((b * L + t0 + i) * H + h) * P + q;  // of x, z, out
          const float x = real ? loadElement<DT>(p.x, at) : 0.0f;
          const float a = as[i], dtx = dts[i] * x;
          const float *Bt = Bs + i * N, *Ct = Cs + i * N;
          float y = 0.0f;
#pragma unroll
          for (int j = 0; j < NPL; ++j) {
            const int n = laneInGroup + j * width;
            if (n < N) {
              state[j] = stateStep(a, state[j], dtx, Bt[n]);
              y += Ct[n] * state[j];
            }
          }
          y = groupSum(y, width);
          if (real && laneInGroup == 0) {
            y += Dq * x;
            if (p.z) y *= silu(loadElement<DT>(p.z, at));
            storeElement<DT>(p.out, at, y);
          }
        }

        if (p.checkpoints && real && (t1 == (c + 1) * T || t1 == L)) {
          float *ckpt = p.checkpoints + ((b * H + h) * lay.chunks + c) * stateSize + q;
#pragma unroll
          for (int j = 0; j < NPL; ++j) {
            const int n = laneInGroup + j * width;
            if (n < N) ckpt[int64_t(n) * P] = state[j];
          }
        }
        t0 = t1;
      }

      if (p.lastState && real) {
        float *last = p.lastState + (seg.row * H + h) * stateSize + q * N;
#pragma unroll
        for (int j = 0; j < NPL; ++j) {
          const int n = laneInGroup + j * width;
          if (n < N) last[n] = state[j];
        }
      }
    }
  }
}

template <DType DT, int NPL>
cudaError_t launchForward(const SsdForwardParams &p, cudaStream_t stream) {
  ForwardArgs args;
  args.p = p;
  args.layout = ssdLayout(p);
  const size_t sharedBytes = size_t(2 * p.chunkLength * (p.shape.dstate + 1)) * sizeof(float);
  const void *kernel = reinterpret_cast<const void *>(&ssdForwardKernel<DT, NPL>);
  SS_CUDA_TRY(allowSharedMemory(kernel, sharedBytes));
  ssdForwardKernel<DT, NPL><<<gridBlocks(args.layout.work), kSsdThreads, sharedBytes, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace

int64_t ssdChunkLength(const SsdShape &s) {
  // The backward keeps one interval's states in shared memory: kSsdStepsTimesStates / NPL steps.
  const int64_t steps = kSsdStepsTimesStates / ssdStatesPerLane(s.dstate);
  return std::max<int64_t>(1, std::min(steps, s.seqlen));
}

gpu::Status ssdForward(const SsdForwardParams &p, gpu::Stream stream) {
  SS_CUDA_TRY(checkSsdShape(p));
  const SsdShape &s = p.shape;
  if (s.batch == 0 || s.heads == 0 || s.headDim == 0) return cudaSuccess;
  if (ssdChunkedSupports(p)) return ssdChunkedForward(p, stream);
  return dispatchDType(p.dtype, [&](auto dtype) {
    constexpr DType DT = decltype(dtype)::value;
    switch (ssdStatesPerLane(s.dstate)) {
      case 1: return launchForward<DT, 1>(p, stream);
      case 2: return launchForward<DT, 2>(p, stream);
      case 4: return launchForward<DT, 4>(p, stream);
      case 8: return launchForward<DT, 8>(p, stream);
    }
    return cudaErrorInvalidValue;
  });
}

}  // namespace ss::cuda
