// Packed sequences (cuSeqlens) on the CPU: the steps of a batch row as segments, each run from one
// state. Include only from *_cpu.cc files (the functions live in the instruction set's namespace,
// as simd.h explains).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

namespace ss::cpu::SS_CPU_ISA {

// Steps [start, end) of one row that run from one state: the whole row, or a packed sequence.
// `row` is its row of initialState, lastState and their gradients.
struct Segment {
  int64_t start, end, row;
};

// The segments of batch row b: one per sequence of cuSeqlens (empty ones included; cuSeqlens has
// sequences + 1 offsets), else the whole row [0, L) as row b.
inline std::vector<Segment> segmentsOf(const int32_t *cuSeqlens, int64_t sequences, int64_t L, int64_t b) {
  if (!cuSeqlens) return {{0, L, b}};
  std::vector<Segment> segments;
  segments.reserve(size_t(sequences));
  for (int64_t i = 0; i < sequences; ++i) segments.push_back({cuSeqlens[i], cuSeqlens[i + 1], i});
  return segments;
}

inline std::vector<Segment> nonEmptyOf(const std::vector<Segment> &segments) {
  std::vector<Segment> r;
  for (const Segment &s : segments)
    if (s.end > s.start) r.push_back(s);
  return r;
}

// The non-empty segment holding step t (the non-empty segments cover [0, L) in order).
inline size_t segmentAt(const std::vector<Segment> &nonEmpty, int64_t t) {
  size_t lo = 0, hi = nonEmpty.size() - 1;
  while (lo < hi) {
    const size_t mid = (lo + hi + 1) / 2;
    if (nonEmpty[mid].start <= t)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

// Steps [from, to) of a chunk (counted from the chunk's first step) that belong to one sequence,
// its state row `row`; `starts` / `ends`: the sequence's first / last step is among them.
struct Piece {
  int64_t from, to, row;
  bool starts, ends;
};

// The pieces of the chunk of steps [t0, t0 + len), in order (one when no sequence boundary falls
// inside the chunk), into `pieces` (reused from chunk to chunk).
inline void piecesOf(const std::vector<Segment> &nonEmpty, int64_t t0, int64_t len, std::vector<Piece> &pieces) {
  pieces.clear();
  for (size_t si = segmentAt(nonEmpty, t0); si < nonEmpty.size() && nonEmpty[si].start < t0 + len; ++si) {
    const Segment &seg = nonEmpty[si];
    const int64_t from = std::max(seg.start, t0), to = std::min(seg.end, t0 + len);
    pieces.push_back({from - t0, to - t0, seg.row, seg.start == from, seg.end == to});
  }
}

}  // namespace ss::cpu::SS_CPU_ISA
