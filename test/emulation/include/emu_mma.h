// The emulator's model of the tensor cores' mma.sync.aligned.m16n8k16.row.col.f32.{f16,bf16} (what
// csrc/cuda/mma.cuh calls when not compiled by nvcc): a warp collective. Each lane posts its
// fragments (a: 4 words, b: 2 words, c: 4 floats) to its warp's row of a table; once all 32 lanes
// have arrived (a full-warp shuffle: lanes that meet at different call sites, or a partial warp,
// are faults as for any collective), each lane reads back the whole A (16 x 16), B (16 x 8) and C
// (16 x 8) through the PTX ISA's fragment layout and computes its own four elements of D; a second
// arrival keeps a fast lane from overwriting the table before the slow ones have read it.
//
// Layout (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"), g = lane >> 2,
// q = lane % 4, element i of a fragment is the low (i even) or high (i odd) half of word i / 2:
//   A: a_i at row g (i in 0-1, 4-5) or g + 8 (i in 2-3, 6-7), column 2q + (i & 1) (+ 8 for i >= 4)
//   B: b_i at row 2q + (i & 1) (+ 8 for i >= 2), column g
//   C, D: c_i at row g (i < 2) or g + 8, column 2q + (i & 1)
// Arithmetic: the products of two 16-bit values are exact in float32; the 16 products and c are
// summed in double and rounded once (the hardware's order and internal width are unspecified; it
// keeps at least float32's precision). Inputs are widened as cvt.f32.f16 / cvt.f32.bf16 do.
#pragma once
#include <cstdint>
#include <cstring>

#include "emu.h"

namespace emu {

// Where a fragment element lives: row and column of the matrix.
struct MmaPlace {
  int row, col;
};
inline MmaPlace mmaPlaceA(int lane, int i) {
  const int g = lane >> 2, q = lane & 3;
  return {g + ((i & 2) ? 8 : 0), 2 * q + (i & 1) + (i >= 4 ? 8 : 0)};
}
inline MmaPlace mmaPlaceB(int lane, int i) {
  const int g = lane >> 2, q = lane & 3;
  return {2 * q + (i & 1) + (i >= 2 ? 8 : 0), g};
}
inline MmaPlace mmaPlaceC(int lane, int i) {
  const int g = lane >> 2, q = lane & 3;
  return {g + (i >= 2 ? 8 : 0), 2 * q + (i & 1)};
}

inline float mmaWiden(uint16_t bits, bool bf16) {
  if (bf16) {
    const uint32_t w = uint32_t(bits) << 16;
    float f;
    std::memcpy(&f, &w, sizeof f);
    return f;
  }
  _Float16 h;
  std::memcpy(&h, &bits, sizeof h);
  return float(h);
}

struct MmaPost {
  uint32_t a[4], b[2];
  float c[4];
  bool bf16;
};

inline void mmaM16N8K16(bool bf16, float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4],
                        const char *file = __builtin_FILE(), int line = __builtin_LINE()) {
  thread_local MmaPost table[kMaxThreadsPerBlock / kWarpSize][kWarpSize];
  const unsigned linear = gThreadIdx.x + gBlockDim.x * (gThreadIdx.y + gBlockDim.y * gThreadIdx.z);
  const unsigned warp = linear / kWarpSize, lane = linear % kWarpSize;
  MmaPost &mine = table[warp][lane];
  std::memcpy(mine.a, a, sizeof mine.a);
  std::memcpy(mine.b, b, sizeof mine.b);
  std::memcpy(mine.c, c, sizeof mine.c);
  mine.bf16 = bf16;
  warpCollective(Collective::ShflIdx, 0xffffffffu, 0, 0, kWarpSize, file, line);  // all lanes posted

  float A[16][16], B[16][8], C[16][8];
  bool mixed = false;
  for (int l = 0; l < kWarpSize; ++l) {
    const MmaPost &p = table[warp][l];
    mixed = mixed || p.bf16 != bf16;
    for (int i = 0; i < 8; ++i) {
      const MmaPlace at = mmaPlaceA(l, i);
      A[at.row][at.col] = mmaWiden(uint16_t(p.a[i / 2] >> (16 * (i & 1))), bf16);
    }
    for (int i = 0; i < 4; ++i) {
      const MmaPlace at = mmaPlaceB(l, i);
      B[at.row][at.col] = mmaWiden(uint16_t(p.b[i / 2] >> (16 * (i & 1))), bf16);
    }
    for (int i = 0; i < 4; ++i) {
      const MmaPlace at = mmaPlaceC(l, i);
      C[at.row][at.col] = p.c[i];
    }
  }
  if (mixed) fault("mma.sync: lanes of one warp disagree on the element type");
  for (int i = 0; i < 4; ++i) {
    const MmaPlace at = mmaPlaceC(int(lane), i);
    double sum = C[at.row][at.col];
    for (int k = 0; k < 16; ++k) sum += double(A[at.row][k]) * double(B[k][at.col]);
    d[i] = float(sum);
  }
  warpCollective(Collective::ShflIdx, 0xffffffffu, 0, 0, kWarpSize, file, line);  // all lanes read
}

}  // namespace emu
