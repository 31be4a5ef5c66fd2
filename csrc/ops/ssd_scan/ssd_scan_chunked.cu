// The forward state space dual scan (Mamba-2) on the GPU in the chunked ("state space dual") form,
// for float16 and bfloat16 inputs, with the intra-chunk products on the tensor cores
// (mma.sync m16n8k16, float32 accumulation; csrc/cuda/mma.cuh). float32 inputs stay on the
// recurrent kernel (ssd_scan.cu): they would need TF32, which rounds the inputs to 10 bits.
//
// The algebra. Within a chunk of Q = 64 steps, with cum_t = sum_{s <= t} dt_s A (from the chunk's
// start) and h the state before the chunk (P x N per head):
//   y_t  = exp(cum_t) C_t h^T                                    (the state passed in: Y_off)
//        + sum_{s <= t} exp(cum_t - cum_s) dt_s (C_t . B_s) x_s   (inside the chunk: Y_diag)
//   h_e  = exp(cum_e - cum_u) h_u + sum_{u < s <= e} exp(cum_e - cum_s) dt_s x_s B_s^T
// Y_diag is (L o C B^T) X with L the causal decay mask: two matrix products per chunk. The state is
// carried from chunk to chunk inside the block (the "state passing" pass runs in the same kernel:
// one block walks its row's chunks in order), so nothing goes through device memory between them.
//
// Kernel design (ssdChunkedKernel<DT, Packed>): one block of 4 warps per (batch row, head, tile of 16
// positions p), a grid-stride loop over them. The block walks the sequences of its row in order
// (packed sequences with cuSeqlens, else the whole row), each from its initial state (or zeros),
// and writes each one's last state. A sequence is walked in "logical chunks": the pieces of the
// 64-step chunks [64 k, 64 k + 64) that lie inside it, each run as a chunk cut short (as the one at
// the end of L is). Per (logical) chunk:
//  1. Stage B_t, C_t (raw 16-bit, N padded with zeros to a multiple of 16), x_t of the tile, dt_t
//     (bias, softplus, clamp) and the inclusive sum cum_t (log2 units) in shared memory; steps past
//     the piece's end are zeros (dt 0: no decay, no input).
//  2. The state (float32, in the warps' mma accumulators: warp w holds the n-columns 8j..8j+7 for
//     j = w, w + 4, ...) is rounded to the dtype into shared memory as the B operand of Y_off.
//  3. Warp w computes the output rows t = 16w..16w+15: Y_off = C h^T (K = N), scaled by
//     exp2(cum_t); then for each 16-step window m <= w of s: G = C B^T (K = N), masked and weighted
//     by exp2(cum_t - cum_s) dt_s (s <= t only), rounded to the dtype and reused straight from the
//     accumulator fragments as the A operand of G X (the m16n8 accumulator layout of two adjacent
//     8-column tiles is the m16k16 A layout). Then y + D x, times silu(z), rounded once.
//  4. The state walks the chunk one checkpoint interval (the backward's chunkLength T) at a time:
//     h = exp2(cum_e - cum_u) h + (x w)^T B over the interval's 16-step windows (K = steps), with
//     w_s = exp2(cum_e - cum_s) dt_s inside the interval and 0 outside; after each interval's last
//     step the state is the checkpoint (N-major, the contract of ssd_scan.h that ssdBackward reads),
//     after the sequence's last step its last state. An interval that a sequence boundary cuts
//     gets its checkpoint from the sequence holding its last step (the recurrent kernel's pieces).
//
// Packed sequences, why logical chunks (as vLLM's Triton kernels do) rather than masks by sequence
// id inside a chunk: a piece never holds two sequences, so no decay, input or state crosses a
// boundary by construction, and the hot loops (Y_off, Y_diag's mask, the state update) are the
// ones without cuSeqlens, not one comparison more; without cuSeqlens the pieces are the chunks.
// Masks would also need, for the rows of a sequence that starts inside a chunk, a Y_off product
// with that sequence's initial state. The cost: one more pass per boundary inside a chunk, at most
// ceil(L / 64) + sequences - 1 passes, each costing a whole chunk's products: many sequences much
// shorter than 64 steps would be cheaper with masks (or on the recurrent kernel). The kernel is
// instantiated twice: Packed = false walks the one sequence {0, L, b} the compiler sees, and
// compiles as the kernel did before cuSeqlens (sm_90: at most 128 registers, no spill, the
// same PTX count or fewer in every inner loop); the loop over packed sequences keeps more values
// live across a chunk (sm_90: 168 registers, 3 blocks per SM where 128 allow 4, and 64 / 40 bytes
// of spill stores, f16 / bf16; one flat loop over the pieces of both forms, tried, took 146 to 154
// registers in both).
//
// Numerics: every accumulation is float32 (tensor-core accumulators, inputs exact). The state
// update's weighted inputs x_s w_s enter their product as 2 (f16) or 3 (bf16) 16-bit terms, each
// the rounding of what the previous ones leave: the state, its checkpoints and the last state are
// float32-accurate (the emulator holds them to the float32 tolerance against the CPU backend). What
// is rounded once to the 16-bit dtype, as the reference Triton kernels of mamba_ssm do, goes only
// into the 16-bit output: the masked decay matrix (Y_diag) and the state before the chunk (Y_off). A float16 state
// beyond 65504 would become infinite as an operand of Y_off (the recurrent kernel has no such
// limit; the states of a stable model are far below it). Non-finite inputs: a NaN or Inf in x at
// step s reaches the outputs of position p at the earlier steps of its 16-step window (of its
// piece: never another sequence's) too (the causal mask is a zero in G', and the tensor core
// computes 0 x NaN = NaN), where the recurrent kernel and the CPU backend keep it to steps >= s;
// masks elsewhere are selections, not products.
//
// Supported here: N <= 128 (shared memory under the 48 KB default on every architecture), L > 0,
// packed sequences or not; bf16 needs sm_80 (ssdForward checks the device: sm_75 runs bf16
// recurrently).
// Everything else runs on the recurrent kernel.
#include <algorithm>

#include "../../cuda/mma.cuh"
#include "ssd_scan_cuda.cuh"

namespace ss::cuda {
namespace {

constexpr int kQ = 64;              // steps per chunk
constexpr int kChunkThreads = 128;  // 4 warps: 16 output rows each
constexpr int kTileP = 16;          // positions per block
constexpr int kMaxN = 128;
constexpr int kMaxStateTiles = kMaxN / 8 / 4;  // 8-column state tiles per warp
// 16-bit terms of the state update's weighted inputs: 2 x 11 bits (f16), 3 x 8 bits (bf16).
template <DType DT>
constexpr int kTerms = DT == DType::BFloat16 ? 3 : 2;

struct ChunkedArgs {
  SsdForwardParams p;
  int64_t tiles, work, chunks;  // P tiles, batch * H * tiles, checkpoint intervals
  int nPad;                     // N rounded up to 16
};

template <DType DT>
__device__ __forceinline__ uint16_t toBits16(float v) {
  return Element<DT>::store(v);
}
template <DType DT>
__device__ __forceinline__ float fromBits16(uint16_t v) {
  return Element<DT>::load(v);
}

template <DType DT, bool Packed>
__global__ void __launch_bounds__(kChunkThreads) ssdChunkedKernel(const ChunkedArgs args) {
  extern __shared__ float sharedMemory[];
  const SsdForwardParams &p = args.p;
  const int64_t L = p.shape.seqlen, H = p.shape.heads, P = p.shape.headDim, G = p.shape.groups;
  const int N = int(p.shape.dstate), NP = args.nPad, T = int(p.chunkLength);
  const int64_t stateSize = P * int64_t(N);

  // Shared memory: cum [Q], dt [Q] (float); B [Q][NP], C [Q][NP], x [Q][16], h [16][NP] (16-bit).
  float *const cum = sharedMemory;
  float *const dts = cum + kQ;
  uint16_t *const Bs = reinterpret_cast<uint16_t *>(dts + kQ);
  uint16_t *const Cs = Bs + kQ * NP;
  uint16_t *const xs = Cs + kQ * NP;
  uint16_t *const hs = xs + kQ * kTileP;

  const int tid = int(threadIdx.x), warp = tid / kWarpSize, lane = tid % kWarpSize;
  const int g = lane >> 2, q = lane & 3;
  const int stateTiles = NP / 8;  // 8-column tiles of the state; warp w owns w, w + 4, ...

  for (int64_t item = blockIdx.x; item < args.work; item += gridDim.x) {
    const int64_t tile = item % args.tiles, bh = item / args.tiles, h = bh % H, b = bh / H;
    const int64_t g0 = h / (H / G), p0 = tile * kTileP;
    const float A2 = p.A[h] * kLog2e, bias = p.dtBias ? p.dtBias[h] : 0.0f;

    for (int64_t si = 0; si < (Packed ? p.sequences : 1); ++si) {
      const SsdSegment seg = Packed ? segmentOf(p, b, si) : SsdSegment{0, L, b};
      // The state: rows p0 + g (+ 8), columns n = 8 j + 2 q (+ 1) of tile j = warp + 4 i; the
      // sequence's initial state, or zeros.
      const float *init = p.initialState ? p.initialState + (seg.row * H + h) * stateSize : nullptr;
      float state[kMaxStateTiles][4];
#pragma unroll
      for (int i = 0; i < kMaxStateTiles; ++i)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int64_t pp = p0 + g + (e >> 1) * 8;
          const int n = 8 * (warp + 4 * i) + 2 * q + (e & 1);
          state[i][e] = init && pp < P && n < N ? init[pp * N + n] : 0.0f;
        }

      // The sequence's logical chunks: the pieces of the 64-step chunks [64 k, 64 k + 64) that lie
      // inside it, each walked as a chunk of len steps from c0.
      for (int64_t c0 = seg.start; c0 < seg.end;) {
        const int64_t c1 = std::min(seg.end, (c0 / kQ + 1) * kQ);
        const int len = int(c1 - c0);
        __syncthreads();  // the previous piece's reads of shared memory are done
        // 1. Stage the piece.
        for (int i = tid; i < kQ * NP; i += kChunkThreads) {
          const int t = i / NP, n = i % NP;
          uint16_t bv = 0, cv = 0;
          if (t < len && n < N) {
            const int64_t src = ((b * L + c0 + t) * G + g0) * N + n;
            bv = static_cast<const uint16_t *>(p.B)[src];
            cv = static_cast<const uint16_t *>(p.C)[src];
          }
          Bs[i] = bv;
          Cs[i] = cv;
        }
        for (int i = tid; i < kQ * kTileP; i += kChunkThreads) {
          const int t = i / kTileP, pp = i % kTileP;
          xs[i] =
              t < len && p0 + pp < P ? static_cast<const uint16_t *>(p.x)[((b * L + c0 + t) * H + h) * P + p0 + pp] : 0;
        }
        if (warp == 0) {
          // dt and its inclusive sum (a warp scan of two steps per lane).
          float d2[2], a2[2];
#pragma unroll
          for (int k = 0; k < 2; ++k) {
            const int t = 2 * lane + k;
            d2[k] = 0.0f;
            if (t < len)
              d2[k] = ssdDt(loadElement<DT>(p.dt, (b * L + c0 + t) * H + h), bias, p.dtSoftplus, p.dtLow, p.dtHigh).dt;
            a2[k] = d2[k] * A2;
          }
          float run = a2[0] + a2[1];
          for (int offset = 1; offset < kWarpSize; offset *= 2) {
            const float before = __shfl_up_sync(kFullMask, run, offset);
            if (lane >= offset) run += before;
          }
          cum[2 * lane] = run - a2[1];
          cum[2 * lane + 1] = run;
          dts[2 * lane] = d2[0];
          dts[2 * lane + 1] = d2[1];
        }
        // 2. The state before the chunk, rounded, as [p][n].
#pragma unroll
        for (int i = 0; i < kMaxStateTiles; ++i) {
          const int j = warp + 4 * i;
          if (j < stateTiles)
#pragma unroll
            for (int e = 0; e < 4; ++e)
              hs[(g + (e >> 1) * 8) * NP + 8 * j + 2 * q + (e & 1)] = toBits16<DT>(state[i][e]);
        }
        __syncthreads();

        // 3. Outputs of rows t0..t0+15.
        const int t0 = 16 * warp;
        if (t0 < len) {
          float y[2][4];
          const int rowLo = t0 + g, rowHi = t0 + g + 8;
          // Y_off = C h^T, K = n.
#pragma unroll
          for (int nt = 0; nt < 2; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) y[nt][e] = 0.0f;
          for (int k0 = 0; k0 < NP; k0 += 16) {
            uint32_t a[4], bb[2];
            loadFragmentA(a, Cs + t0 * NP, NP, k0, g, q);
#pragma unroll
            for (int nt = 0; nt < 2; ++nt) {
              loadFragmentB(bb, hs + 8 * nt * NP, NP, k0, g, q);  // the operand h^T, held as h[p][n]
              mmaM16N8K16<DT>(y[nt], a, bb, y[nt]);
            }
          }
          const float decayLo = exp2Ftz(cum[rowLo]), decayHi = exp2Ftz(cum[rowHi]);
#pragma unroll
          for (int nt = 0; nt < 2; ++nt) {
            y[nt][0] *= decayLo;
            y[nt][1] *= decayLo;
            y[nt][2] *= decayHi;
            y[nt][3] *= decayHi;
          }
          // Y_diag, one 16-step window of s at a time (s <= t: windows 0..warp).
          for (int m = 0; m <= warp; ++m) {
            float gm[2][4];
#pragma unroll
            for (int st = 0; st < 2; ++st)
#pragma unroll
              for (int e = 0; e < 4; ++e) gm[st][e] = 0.0f;
            for (int k0 = 0; k0 < NP; k0 += 16) {
              uint32_t a[4], bb[2];
              loadFragmentA(a, Cs + t0 * NP, NP, k0, g, q);
#pragma unroll
              for (int st = 0; st < 2; ++st) {
                loadFragmentB(bb, Bs + (16 * m + 8 * st) * NP, NP, k0, g, q);  // the operand B^T, held as B[s][n]
                mmaM16N8K16<DT>(gm[st], a, bb, gm[st]);
              }
            }
            // Mask and weight: G'[t][s] = G exp2(cum_t - cum_s) dt_s for s <= t, else 0; rounded.
            uint16_t w[2][4];
#pragma unroll
            for (int st = 0; st < 2; ++st)
#pragma unroll
              for (int e = 0; e < 4; ++e) {
                const int t = (e >> 1) ? rowHi : rowLo, s = 16 * m + 8 * st + 2 * q + (e & 1);
                w[st][e] = s <= t ? toBits16<DT>(gm[st][e] * (exp2Ftz(cum[t] - cum[s]) * dts[s])) : 0;
              }
            // The accumulators of the two 8-column tiles are the A fragment of the window.
            const uint32_t a[4] = {packPair(w[0][0], w[0][1]), packPair(w[0][2], w[0][3]), packPair(w[1][0], w[1][1]),
                                   packPair(w[1][2], w[1][3])};
#pragma unroll
            for (int nt = 0; nt < 2; ++nt) {
              const int col = 8 * nt + g, s0 = 16 * m + 2 * q;  // X[s][p]
              const uint32_t bb[2] = {packPair(xs[s0 * kTileP + col], xs[(s0 + 1) * kTileP + col]),
                                      packPair(xs[(s0 + 8) * kTileP + col], xs[(s0 + 9) * kTileP + col])};
              mmaM16N8K16<DT>(y[nt], a, bb, y[nt]);
            }
          }
          // y + D x, times silu(z), rounded once.
#pragma unroll
          for (int nt = 0; nt < 2; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const int t = (e >> 1) ? rowHi : rowLo, pp = 8 * nt + 2 * q + (e & 1);
              const int64_t pos = p0 + pp;
              if (t < len && pos < P) {
                const int64_t at = ((b * L + c0 + t) * H + h) * P + pos;
                float v = y[nt][e];
                if (p.D) v += p.D[p.dPerHead ? h : h * P + pos] * fromBits16<DT>(xs[t * kTileP + pp]);
                if (p.z) v *= silu(loadElement<DT>(p.z, at));
                storeElement<DT>(p.out, at, v);
              }
            }
        }

        // 4. The state, one checkpoint interval [u0, u1) at a time.
        for (int u0 = 0; u0 < len;) {
          const int64_t intervalEnd = ((c0 + u0) / T + 1) * T;
          const int u1 = int(std::min<int64_t>(len, intervalEnd - c0));
          const float cumEnd = cum[u1 - 1];
          const float decay = exp2Ftz(cumEnd - (u0 > 0 ? cum[u0 - 1] : 0.0f));
#pragma unroll
          for (int i = 0; i < kMaxStateTiles; ++i)
#pragma unroll
            for (int e = 0; e < 4; ++e) state[i][e] *= decay;
          for (int k0 = u0 & ~15; k0 < u1; k0 += 16) {
            // A[p][s] = x[s][p] w_s, w_s = exp2(cumEnd - cum_s) dt_s for s in [u0, u1), as a sum of
            // kTerms 16-bit values (each the rounding of what the previous ones leave): the state's
            // products are then float32-accurate, as the recurrent kernel's.
            uint32_t a[kTerms<DT>][4];
#pragma unroll
            for (int e = 0; e < 8; e += 2) {
              float v[2];
#pragma unroll
              for (int k = 0; k < 2; ++k) {
                const int s = k0 + 2 * q + k + (e >= 4 ? 8 : 0), pp = g + ((e & 2) ? 8 : 0);
                v[k] = s >= u0 && s < u1 ? fromBits16<DT>(xs[s * kTileP + pp]) * (exp2Ftz(cumEnd - cum[s]) * dts[s])
                                         : 0.0f;
              }
#pragma unroll
              for (int term = 0; term < kTerms<DT>; ++term) {
                const uint16_t lo = toBits16<DT>(v[0]), hi = toBits16<DT>(v[1]);
                a[term][e / 2] = packPair(lo, hi);
                v[0] -= fromBits16<DT>(lo);
                v[1] -= fromBits16<DT>(hi);
              }
            }
#pragma unroll
            for (int i = 0; i < kMaxStateTiles; ++i) {
              const int j = warp + 4 * i;
              if (j < stateTiles) {
                // B[s][n], zero outside the interval too: a NaN or Inf of another step must not
                // reach this interval's state through 0 x NaN.
                const int n = 8 * j + g, s = k0 + 2 * q;
                const auto bAt = [&](int r) -> uint16_t { return r >= u0 && r < u1 ? Bs[r * NP + n] : 0; };
                const uint32_t bb[2] = {packPair(bAt(s), bAt(s + 1)), packPair(bAt(s + 8), bAt(s + 9))};
#pragma unroll
                for (int term = kTerms<DT> - 1; term >= 0; --term) mmaM16N8K16<DT>(state[i], a[term], bb, state[i]);
              }
            }
          }
          if (p.checkpoints && (c0 + u1 == intervalEnd || c0 + u1 == L)) {
            const int64_t interval = (c0 + u1 - 1) / T;
            float *ckpt = p.checkpoints + ((b * H + h) * args.chunks + interval) * stateSize;
#pragma unroll
            for (int i = 0; i < kMaxStateTiles; ++i)
#pragma unroll
              for (int e = 0; e < 4; ++e) {
                const int64_t pp = p0 + g + (e >> 1) * 8;
                const int n = 8 * (warp + 4 * i) + 2 * q + (e & 1);
                if (pp < P && n < N) ckpt[int64_t(n) * P + pp] = state[i][e];
              }
          }
          u0 = u1;
        }
        c0 = c1;
      }

      if (p.lastState) {
        float *last = p.lastState + (seg.row * H + h) * stateSize;
#pragma unroll
        for (int i = 0; i < kMaxStateTiles; ++i)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int64_t pp = p0 + g + (e >> 1) * 8;
            const int n = 8 * (warp + 4 * i) + 2 * q + (e & 1);
            if (pp < P && n < N) last[pp * N + n] = state[i][e];
          }
      }
    }
  }
}

template <DType DT, bool Packed>
cudaError_t launchChunked(const SsdForwardParams &p, cudaStream_t stream) {
  ChunkedArgs args;
  args.p = p;
  args.nPad = int(ceilDiv(p.shape.dstate, 16) * 16);
  args.tiles = ceilDiv(p.shape.headDim, kTileP);
  args.work = p.shape.batch * p.shape.heads * args.tiles;
  args.chunks = ceilDiv(p.shape.seqlen, p.chunkLength);
  const size_t sharedBytes = 2 * kQ * sizeof(float) + size_t(2 * kQ * args.nPad + kQ * kTileP + kTileP * args.nPad) * 2;
  const void *kernel = reinterpret_cast<const void *>(&ssdChunkedKernel<DT, Packed>);
  SS_CUDA_TRY(allowSharedMemory(kernel, sharedBytes));
  ssdChunkedKernel<DT, Packed><<<gridBlocks(args.work), kChunkThreads, sharedBytes, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace

bool ssdChunkedSupports(const SsdForwardParams &p) {
  return (p.dtype == DType::Float16 || p.dtype == DType::BFloat16) && p.shape.dstate <= kMaxN && p.shape.seqlen > 0 &&
         deviceHasMma(p.dtype);
}

gpu::Status ssdChunkedForward(const SsdForwardParams &p, gpu::Stream stream) {
  const bool packed = p.cuSeqlens != nullptr;
  if (p.dtype == DType::Float16)
    return packed ? launchChunked<DType::Float16, true>(p, stream) : launchChunked<DType::Float16, false>(p, stream);
  if (p.dtype == DType::BFloat16)
    return packed ? launchChunked<DType::BFloat16, true>(p, stream) : launchChunked<DType::BFloat16, false>(p, stream);
  return cudaErrorInvalidValue;
}

}  // namespace ss::cuda
