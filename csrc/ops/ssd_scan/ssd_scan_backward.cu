// The backward state space dual scan (Mamba-2) on the GPU, in the recurrent form.
//
// Kernel design (ssdBackwardKernel<DT, NPL>; layout in ssd_scan_cuda.cuh):
//  - A block owns one (batch row, head, tile) and walks its checkpoint intervals from the last to
//    the first. Per interval it stages B, C, dt and a = exp2(dt A log2 e) in shared memory,
//    recomputes the interval's states from the checkpoint before it (or from a sequence's initial
//    state where one starts) into shared memory, and, with dy = dout silu(z), writes dz.
//  - Then the reverse sweep, with the adjoint g_t = C_t dy_t + a_{t+1} g_{t+1} in registers
//    (carried across intervals; replaced by the sequence's dLastState, or zeros, at its last step):
//    dx = dt sum_n g B + D dy, the step's part of ddt (sum_p x sum_n g B + A sum g a h_{t-1}) and
//    of dA; g overwrites the stored state, and at a sequence's first step a g is its dInitialState.
//  - Sums over positions of one interval (dC_t = sum_p dy h_t, dB_t = dt sum_p x g) are taken
//    after each pass by one thread per (t, n) over the tile's positions in a fixed order.
//  - Across blocks: dB, dC and ddt of a step gather the tiles (and for dB, dC the heads of a
//    group). By default each block adds its sums to float32 accumulators with atomics, the tiles
//    of a head run in parallel; with `deterministic` one block walks all the tiles of a head in
//    turn and owns its rows of per-head partials, which a second kernel sums over the heads of each
//    group in a fixed order. dA, dD, ddtBias are per-block partials summed in a fixed order by a
//    last kernel, in both modes.
//  - This is the first GPU path: the chunked dual form on tensor cores will replace it.
#include <algorithm>

#include "ssd_scan_cuda.cuh"

namespace ss::cuda {
namespace {

constexpr int kSsdWarps = kSsdThreads / kWarpSize;

// Float32 scratch of one backward.
struct Scratch {
  float *dB = nullptr, *dC = nullptr;  // default: (batch, L, G, N); deterministic: (batch, L, H, N)
  float *ddt = nullptr;                // (batch, L, H): the sum over positions, before dtGrad; then ddt
  float *dA = nullptr;                 // (batch, H, tiles of the layout)
  float *dD = nullptr;                 // (batch, H, P)
};

struct BackwardArgs {
  SsdBackwardParams p;
  SsdLayout layout;           // work: batch x H x blocksPerHead; tiles: tiles of positions of a head
  int64_t blocksPerHead = 1;  // tiles (default) or 1 (deterministic)
  int64_t passes = 1;         // tiles each block walks: 1 or tiles
  Scratch s;
};

// The sequence (segment) of batch row b that holds step t (0 <= t < L): with cuSeqlens, the
// last i with cuSeqlens[i] <= t (empty sequences before it are skipped by construction).
__device__ SsdSegment segmentAt(const SsdForwardParams &p, int64_t b, int64_t t) {
  if (!p.cuSeqlens) return {0, p.shape.seqlen, b};
  int64_t lo = 0, hi = p.sequences - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (p.cuSeqlens[mid] <= t)
      lo = mid;
    else
      hi = mid - 1;
  }
  return segmentOf(p, b, lo);
}

// A fixed-order sum over the block (every thread gets it); `red` is kSsdThreads floats.
__device__ float blockSum(float v, float *red) {
  __syncthreads();
  red[threadIdx.x] = v;
  __syncthreads();
  for (int stride = kSsdThreads / 2; stride > 0; stride /= 2) {
    if (int(threadIdx.x) < stride) red[threadIdx.x] += red[threadIdx.x + stride];
    __syncthreads();
  }
  const float sum = red[0];
  __syncthreads();
  return sum;
}

template <DType DT, int NPL>
__global__ void __launch_bounds__(kSsdThreads) ssdBackwardKernel(const BackwardArgs args) {
  extern __shared__ float sharedMemory[];
  const SsdBackwardParams &bp = args.p;
  const SsdForwardParams &p = bp.fwd;
  const SsdLayout &lay = args.layout;
  const int64_t L = p.shape.seqlen, H = p.shape.heads, P = p.shape.headDim, G = p.shape.groups;
  const int N = int(p.shape.dstate), T = int(p.chunkLength), width = lay.width, positions = lay.positions;
  const int64_t stateSize = P * int64_t(N), headsPerGroup = H / G;
  const bool deterministic = bp.deterministic;

  // Shared memory: B, C [T][N]; dt, a [T]; states, then adjoints [T][NPL][threads]; dy
  // [T][positions]; per-warp ddt sums [T][warps]; a block reduction [threads].
  float *const Bs = sharedMemory;
  float *const Cs = Bs + T * N;
  float *const dts = Cs + T * N;
  float *const as = dts + T;
  float *const hs = as + T;
  float *const dys = hs + T * NPL * kSsdThreads;
  float *const ddtw = dys + T * positions;
  float *const red = ddtw + T * kSsdWarps;

  const int tid = int(threadIdx.x), laneInGroup = tid % width, pos = tid / width;
  const int lane = laneIndex(), warp = warpIndex();
  auto slot = [&](int i, int j) { return (i * NPL + j) * kSsdThreads + tid; };

  for (int64_t item = blockIdx.x; item < lay.work; item += gridDim.x) {
    const int64_t blockTile = item % args.blocksPerHead, bh = item / args.blocksPerHead, h = bh % H, b = bh / H;
    const int64_t g = h / headsPerGroup;
    const float A = p.A[h], A2 = A * kLog2e, bias = p.dtBias ? p.dtBias[h] : 0.0f;

    for (int64_t pass = 0; pass < args.passes; ++pass) {
      const int64_t tile = blockTile * args.passes + pass, q0 = tile * positions, q = q0 + pos;
      const bool real = q < P;
      const float Dq = p.D && real ? p.D[p.dPerHead ? h : h * P + q] : 0.0f;
      auto stateRow = [&](const float *base, int64_t row) {
        return base && real ? base + (row * H + h) * stateSize + q * N : nullptr;
      };

      // An empty sequence: its last state is its initial state, so dInitialState is dLastState.
      if (bp.dInitialState && p.cuSeqlens && real) {
        for (int64_t si = 0; si < p.sequences; ++si) {
          const SsdSegment seg = segmentOf(p, b, si);
          if (seg.end > seg.start) continue;
          const float *src = stateRow(bp.dLastState, seg.row);
          float *dst = bp.dInitialState + (seg.row * H + h) * stateSize + q * N;
          for (int n = laneInGroup; n < N; n += width) dst[n] = src ? src[n] : 0.0f;
        }
      }

      float carry[NPL];
#pragma unroll
      for (int j = 0; j < NPL; ++j) carry[j] = 0.0f;
      float dA = 0.0f, dD = 0.0f;

      for (int64_t c = lay.chunks - 1; c >= 0; --c) {
        const int64_t t0 = c * T;
        const int len = int(std::min<int64_t>(T, L - t0));
        __syncthreads();  // the previous interval's reads of shared memory are done
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

        // Recompute the states, from the checkpoint before the interval or a sequence's start.
        SsdSegment seg = segmentAt(p, b, t0);
        float state[NPL];
        {
          const float *from = seg.start == t0 ? stateRow(p.initialState, seg.row)
                              : real          ? p.checkpoints + ((b * H + h) * lay.chunks + c - 1) * stateSize + q
                                              : nullptr;
          const int64_t stride = seg.start == t0 ? 1 : P;
#pragma unroll
          for (int j = 0; j < NPL; ++j) {
            const int n = laneInGroup + j * width;
            state[j] = from && n < N ? from[n * stride] : 0.0f;
          }
        }
        for (int i = 0; i < len; ++i) {
          const int64_t t = t0 + i, at = ((b * L + t) * H + h) * P + q;
          if (t == seg.end) {  // a later sequence starts here (empty ones lie between)
            seg = segmentAt(p, b, t);
            const float *init = stateRow(p.initialState, seg.row);
#pragma unroll
            for (int j = 0; j < NPL; ++j) {
              const int n = laneInGroup + j * width;
              state[j] = init && n < N ? init[n] : 0.0f;
            }
          }
          const float x = real ? loadElement<DT>(p.x, at) : 0.0f;
          const float a = as[i], dtx = dts[i] * x;
          float y = 0.0f;
#pragma unroll
          for (int j = 0; j < NPL; ++j) {
            const int n = laneInGroup + j * width;
            if (n < N) {
              state[j] = stateStep(a, state[j], dtx, Bs[i * N + n]);
              y += Cs[i * N + n] * state[j];
            }
            hs[slot(i, j)] = state[j];
          }
          // The gate: dy = dout silu(z), dz = dout y siluGrad(z) with y = C h + D x before it.
          if (p.z) y = groupSum(y, width);
          if (real && laneInGroup == 0) {
            const float dout = loadElement<DT>(bp.dout, at);
            float dy = dout;
            if (p.z) {
              const float z = loadElement<DT>(p.z, at);
              storeElement<DT>(bp.dz, at, dout * (y + Dq * x) * siluGrad(z));
              dy = dout * silu(z);
            }
            dys[i * positions + pos] = dy;
          }
        }
        __syncthreads();

        // dC_t[n] = sum over the tile's positions of dy h_t.
        auto positionSum = [&](int i, int n, bool withDy) {
          const int j = n / width, l = n % width;
          float sum = 0.0f;
          for (int r = 0; r < positions && q0 + r < P; ++r) {
            const float v = hs[(i * NPL + j) * kSsdThreads + r * width + l];
            sum +=
                withDy ? dys[i * positions + r] * v : v * loadElement<DT>(p.x, ((b * L + t0 + i) * H + h) * P + q0 + r);
          }
          return sum;
        };
        auto addStep = [&](float *acc, int i, int n, float v) {
          const int64_t t = t0 + i;
          if (deterministic)
            acc[((b * L + t) * H + h) * N + n] += v;
          else
            atomicAdd(acc + ((b * L + t) * G + g) * N + n, v);
        };
        for (int k = tid; k < len * N; k += kSsdThreads)
          addStep(args.s.dC, k / N, k % N, positionSum(k / N, k % N, true));
        __syncthreads();

        // The reverse sweep.
        for (int i = len - 1; i >= 0; --i) {
          const int64_t t = t0 + i, at = ((b * L + t) * H + h) * P + q;
          if (t < seg.start) seg = segmentAt(p, b, t);
          if (t == seg.end - 1) {
            const float *dLast = stateRow(bp.dLastState, seg.row);
#pragma unroll
            for (int j = 0; j < NPL; ++j) {
              const int n = laneInGroup + j * width;
              carry[j] = dLast && n < N ? dLast[n] : 0.0f;
            }
          }
          const float x = real ? loadElement<DT>(p.x, at) : 0.0f;
          const float dy = real ? dys[i * positions + pos] : 0.0f;
          const float dt = dts[i], a = as[i], dtx = dt * x;
          float gB = 0.0f, decayed = 0.0f;
#pragma unroll
          for (int j = 0; j < NPL; ++j) {
            const int n = laneInGroup + j * width;
            if (n < N) {
              const float Bn = Bs[i * N + n];
              const float gj = Cs[i * N + n] * dy + carry[j];
              const float hj = hs[slot(i, j)];
              gB += gj * Bn;
              decayed += gj * (hj - dtx * Bn);  // g a_t h_{t-1}
              hs[slot(i, j)] = gj;
              carry[j] = a * gj;
            }
          }
          dA += dt * decayed;
          gB = groupSum(gB, width);
          float ddtPart = A * decayed;
          if (real && laneInGroup == 0) {
            ddtPart += gB * x;
            storeElement<DT>(bp.dx, at, dt * gB + Dq * dy);
            dD += dy * x;
          }
          ddtPart = warpSum(ddtPart);
          if (lane == 0) ddtw[i * kSsdWarps + warp] = ddtPart;
          if (t == seg.start && bp.dInitialState && real) {
            float *dst = bp.dInitialState + (seg.row * H + h) * stateSize + q * N;
#pragma unroll
            for (int j = 0; j < NPL; ++j) {
              const int n = laneInGroup + j * width;
              if (n < N) dst[n] = carry[j];
            }
          }
        }
        __syncthreads();

        // dB_t[n] = dt_t sum over the tile's positions of x g; the step's ddt over the warps.
        for (int k = tid; k < len * N; k += kSsdThreads)
          addStep(args.s.dB, k / N, k % N, dts[k / N] * positionSum(k / N, k % N, false));
        for (int i = tid; i < len; i += kSsdThreads) {
          float sum = 0.0f;
          for (int w = 0; w < kSsdWarps; ++w) sum += ddtw[i * kSsdWarps + w];
          float *acc = args.s.ddt + (b * L + t0 + i) * H + h;
          if (deterministic)
            *acc += sum;
          else
            atomicAdd(acc, sum);
        }
      }

      dA = blockSum(dA, red);
      if (tid == 0) args.s.dA[(b * H + h) * lay.tiles + tile] = dA;
      if (real && laneInGroup == 0) args.s.dD[(b * H + h) * P + q] = dD;
    }
  }
}

// dB, dC in the dtype: the accumulators (default) or the per-head partials summed over the
// heads of each group in increasing order (deterministic).
template <DType DT>
__global__ void __launch_bounds__(kSsdThreads) ssdFinishProjections(const BackwardArgs args) {
  const SsdBackwardParams &bp = args.p;
  const SsdShape &s = bp.fwd.shape;
  const int64_t N = s.dstate, G = s.groups, headsPerGroup = s.heads / G, total = s.batch * s.seqlen * G * N;
  for (int64_t i = int64_t(blockIdx.x) * kSsdThreads + threadIdx.x; i < total; i += int64_t(gridDim.x) * kSsdThreads) {
    float sumB, sumC;
    if (bp.deterministic) {
      const int64_t n = i % N, g = (i / N) % G, bt = i / (N * G);
      sumB = sumC = 0.0f;
      for (int64_t h = g * headsPerGroup; h < (g + 1) * headsPerGroup; ++h) {
        sumB += args.s.dB[(bt * s.heads + h) * N + n];
        sumC += args.s.dC[(bt * s.heads + h) * N + n];
      }
    } else {
      sumB = args.s.dB[i];
      sumC = args.s.dC[i];
    }
    storeElement<DT>(bp.dB, i, sumB);
    storeElement<DT>(bp.dC, i, sumC);
  }
}

// ddt = (its sum over positions) x d dt / d raw (0 where dtLimit clamps), in the dtype and, as a
// float, back into the scratch for ddtBias.
template <DType DT>
__global__ void __launch_bounds__(kSsdThreads) ssdFinishDt(const BackwardArgs args) {
  const SsdForwardParams &p = args.p.fwd;
  const int64_t H = p.shape.heads, total = p.shape.batch * p.shape.seqlen * H;
  for (int64_t i = int64_t(blockIdx.x) * kSsdThreads + threadIdx.x; i < total; i += int64_t(gridDim.x) * kSsdThreads) {
    const int64_t h = i % H;
    const float bias = p.dtBias ? p.dtBias[h] : 0.0f;
    const SsdDt d = ssdDt(loadElement<DT>(p.dt, i), bias, p.dtSoftplus, p.dtLow, p.dtHigh);
    const float ddt = args.s.ddt[i] * d.grad;
    args.s.ddt[i] = ddt;
    storeElement<DT>(args.p.ddt, i, ddt);
  }
}

// Per head (one block each): dA, dD and ddtBias, summed over the batch rows, tiles, positions and
// steps in a fixed order.
__global__ void __launch_bounds__(kSsdThreads) ssdFinishHeads(const BackwardArgs args) {
  __shared__ float red[kSsdThreads];
  const SsdBackwardParams &bp = args.p;
  const SsdShape &s = bp.fwd.shape;
  const int64_t H = s.heads, P = s.headDim, tiles = args.layout.tiles, steps = s.batch * s.seqlen;
  for (int64_t h = blockIdx.x; h < H; h += gridDim.x) {
    if (bp.ddtBias) {
      float sum = 0.0f;
      for (int64_t bt = threadIdx.x; bt < steps; bt += kSsdThreads) sum += args.s.ddt[bt * H + h];
      sum = blockSum(sum, red);
      if (threadIdx.x == 0) bp.ddtBias[h] = sum;
    }
    if (threadIdx.x == 0) {
      float dA = 0.0f;
      for (int64_t b = 0; b < s.batch; ++b)
        for (int64_t k = 0; k < tiles; ++k) dA += args.s.dA[(b * H + h) * tiles + k];
      bp.dA[h] = dA;
    }
    if (bp.dD) {
      for (int64_t q = threadIdx.x; q < P; q += kSsdThreads) {
        float sum = 0.0f;
        for (int64_t b = 0; b < s.batch; ++b) sum += args.s.dD[(b * H + h) * P + q];
        if (!bp.fwd.dPerHead) bp.dD[h * P + q] = sum;
      }
      if (bp.fwd.dPerHead) {
        __syncthreads();
        if (threadIdx.x == 0) {
          float sum = 0.0f;
          for (int64_t q = 0; q < P; ++q) {
            float v = 0.0f;
            for (int64_t b = 0; b < s.batch; ++b) v += args.s.dD[(b * H + h) * P + q];
            sum += v;
          }
          bp.dD[h] = sum;
        }
      }
    }
    __syncthreads();
  }
}

template <DType DT, int NPL>
cudaError_t launchBackward(BackwardArgs &args, cudaStream_t stream) {
  const SsdForwardParams &p = args.p.fwd;
  const int64_t T = p.chunkLength, N = p.shape.dstate;
  const size_t sharedFloats =
      size_t(2 * T * N + 2 * T + T * NPL * kSsdThreads + T * args.layout.positions + T * kSsdWarps + kSsdThreads);
  const size_t sharedBytes = sharedFloats * sizeof(float);
  const void *kernel = reinterpret_cast<const void *>(&ssdBackwardKernel<DT, NPL>);
  SS_CUDA_TRY(allowSharedMemory(kernel, sharedBytes));
  ssdBackwardKernel<DT, NPL><<<gridBlocks(args.layout.work), kSsdThreads, sharedBytes, stream>>>(args);
  SS_CUDA_TRY(cudaGetLastError());
  const SsdShape &s = p.shape;
  ssdFinishProjections<DT>
      <<<gridBlocks(ceilDiv(s.batch * s.seqlen * s.groups * s.dstate, kSsdThreads)), kSsdThreads, 0, stream>>>(args);
  SS_CUDA_TRY(cudaGetLastError());
  ssdFinishDt<DT><<<gridBlocks(ceilDiv(s.batch * s.seqlen * s.heads, kSsdThreads)), kSsdThreads, 0, stream>>>(args);
  SS_CUDA_TRY(cudaGetLastError());
  ssdFinishHeads<<<gridBlocks(s.heads), kSsdThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace

gpu::Status ssdBackward(const SsdBackwardParams &bp, gpu::Stream stream) {
  const SsdForwardParams &p = bp.fwd;
  SS_CUDA_TRY(checkSsdShape(p));
  const SsdShape &s = p.shape;
  if (s.batch == 0 || s.heads == 0) return cudaSuccess;

  BackwardArgs args;
  args.p = bp;
  args.layout = ssdLayout(p);
  SsdLayout &lay = args.layout;
  if (s.headDim == 0) lay.tiles = 0;
  args.passes = bp.deterministic ? lay.tiles : 1;
  args.blocksPerHead = bp.deterministic ? 1 : lay.tiles;
  lay.work = s.batch * s.heads * args.blocksPerHead;

  // Scratch: dB, dC, ddt (zeroed: the blocks add to them), dA, dD (every element written).
  const int64_t projections = s.batch * s.seqlen * (bp.deterministic ? s.heads : s.groups) * s.dstate;
  const int64_t ddt = s.batch * s.seqlen * s.heads, dA = s.batch * s.heads * lay.tiles,
                dD = s.batch * s.heads * s.headDim;
  const int64_t floats = 2 * projections + ddt + dA + dD;
  float *scratch = nullptr;
  SS_CUDA_TRY(cudaMallocAsync(reinterpret_cast<void **>(&scratch), size_t(std::max<int64_t>(floats, 1)) * 4, stream));
  args.s.dB = scratch;
  args.s.dC = scratch + projections;
  args.s.ddt = args.s.dC + projections;
  args.s.dA = args.s.ddt + ddt;
  args.s.dD = args.s.dA + dA;
  cudaError_t status = cudaMemsetAsync(scratch, 0, size_t(2 * projections + ddt) * 4, stream);
  if (status == cudaSuccess) {
    status = dispatchDType(p.dtype, [&](auto dtype) {
      constexpr DType DT = decltype(dtype)::value;
      switch (ssdStatesPerLane(s.dstate)) {
        case 1: return launchBackward<DT, 1>(args, stream);
        case 2: return launchBackward<DT, 2>(args, stream);
        case 4: return launchBackward<DT, 4>(args, stream);
        case 8: return launchBackward<DT, 8>(args, stream);
      }
      return cudaErrorInvalidValue;
    });
  }
  const cudaError_t freed = cudaFreeAsync(scratch, stream);
  return status != cudaSuccess ? status : freed;
}

}  // namespace ss::cuda
