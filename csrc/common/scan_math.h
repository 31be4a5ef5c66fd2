// The scalar math of the selective scan, in one place for the CPU backend and the CUDA kernels.
//
// Everything here is a formula of docs/API.md or of the backward in docs/ARCHITECTURE.md. Functions templated on
// T work for float and for the CPU backend's SIMD vector types (GCC vector extensions), so the
// vectorised CPU loops and the CUDA kernels evaluate literally the same expressions.
//
// Notation, for one row (batch b, channel d) and one state channel n:
//   x_t  = delta_t + deltaBias          dt_t = softplus(x_t) or x_t
//   a_t  = exp(dt_t A) = exp2(dt_t A log2(e))        (A is pre-scaled once: A2 = A * log2(e))
//   h_t  = a_t h_{t-1} + dt_t B_t u_t
//   y_t  = sum_n C_t h_t + D u_t,   out_t = y_t silu(z_t)
// Backward, with g_t = dL/dh_t and dy_t = dL/dy_t:
//   g_t  = C_t dy_t + a_{t+1} g_{t+1}
#pragma once
#include <cmath>

#include "hd.h"

namespace ss {

constexpr float kLog2e = 1.4426950408889634f;
// softplus(x) = x above this threshold (as PyTorch and mamba_ssm do).
constexpr float kSoftplusThreshold = 20.0f;

// The elementary functions the formulas below need, per value type: float here (the CUDA kernels
// and scalar CPU code); the CPU backend specialises it for its SIMD vectors (cpu/simd.h), so the
// same formulas run vectorised. select(c, a, b) is c ? a : b, lane-wise for vectors.
template <class T>
struct MathOps;
template <>
struct MathOps<float> {
  static SS_HD float splat(float x) { return x; }
  static SS_HD float exp(float x) { return expf(x); }
  static SS_HD float log1p(float x) { return log1pf(x); }
  static SS_HD float select(bool c, float a, float b) { return c ? a : b; }
};

template <class T>
SS_HD T sigmoid(T x) {
  return 1.0f / (1.0f + MathOps<T>::exp(-x));
}

template <class T>
SS_HD T softplus(T x) {
  using M = MathOps<T>;
  return M::select(x > kSoftplusThreshold, x, M::log1p(M::exp(x)));
}

// d softplus(x) / dx, consistent with the threshold above.
template <class T>
SS_HD T softplusGrad(T x) {
  return MathOps<T>::select(x > kSoftplusThreshold, MathOps<T>::splat(1.0f), sigmoid(x));
}

template <class T>
SS_HD T silu(T z) {
  return z * sigmoid(z);
}

// d silu(z) / dz = s (1 + z (1 - s)), s = sigmoid(z).
template <class T>
SS_HD T siluGrad(T z) {
  const T s = sigmoid(z);
  return s * (1.0f + z * (1.0f - s));
}

// dt from the raw delta: bias, then softplus when asked.
template <class T>
SS_HD T deltaToDt(T delta, T bias, bool useSoftplus) {
  const T x = delta + bias;
  return useSoftplus ? softplus(x) : x;
}

// The chain rule back through deltaToDt.
template <class T>
SS_HD T dtGradToDeltaGrad(T ddt, T delta, T bias, bool useSoftplus) {
  return useSoftplus ? ddt * softplusGrad(delta + bias) : ddt;
}

// The state space dual scan's dt (Mamba-2, one per step and head): bias, softplus when asked, then
// clamped to [lo, hi]. grad is d dt / d raw: 0 where the clamp applies (strictly below lo or above
// hi), else the chain rule back through softplus. NaN stays NaN (and is not "clamped").
struct SsdDt {
  float dt, grad;
};
SS_HD SsdDt ssdDt(float raw, float bias, bool useSoftplus, float lo, float hi) {
  const float v = raw + bias;
  const float s = useSoftplus ? softplus(v) : v;
  if (s < lo) return {lo, 0.0f};
  if (s > hi) return {hi, 0.0f};
  return {s, useSoftplus ? softplusGrad(v) : 1.0f};
}

// One step of the recurrence for one state: h_t = a_t h_{t-1} + (dt_t u_t) B_t.
template <class T>
SS_HD T stateStep(T a, T hPrev, T dtu, T b) {
  return a * hPrev + dtu * b;
}

// The scan operator on pairs (a, b) meaning h -> a h + b. Composing `earlier` then `later` gives
// (a_later a_earlier, a_later b_earlier + b_later). Associative, so any bracketing is exact in
// real arithmetic; the identity is (1, 0).
template <class T>
struct ScanPair {
  T a, b;
};
template <class T>
SS_HD ScanPair<T> scanCombine(ScanPair<T> earlier, ScanPair<T> later) {
  return {later.a * earlier.a, later.a * earlier.b + later.b};
}

// The per-state terms of the backward at one time step, given the adjoint g_t of h_t.
// With dtbu = dt_t B_t u_t (so h_t - dtbu = a_t h_{t-1}):
//   d dt_t += g (B u + A (h_t - dtbu))
//   dA     += g dt (h_t - dtbu)
//   dB_t    = g dt u
//   du_t   += g dt B
//   dC_t    = dy h_t
template <class T>
struct StateGrads {
  T ddt, dA, dB, du, dC;
};
template <class T>
SS_HD StateGrads<T> stateGrads(T g, T h, T dt, T u, T A, T B, T dy) {
  const T dtb = dt * B;
  const T decayed = h - dtb * u;  // a_t h_{t-1}
  StateGrads<T> r;
  r.ddt = g * (B * u + A * decayed);
  r.dA = g * dt * decayed;
  r.dB = g * dt * u;
  r.du = g * dtb;
  r.dC = dy * h;
  return r;
}

}  // namespace ss
