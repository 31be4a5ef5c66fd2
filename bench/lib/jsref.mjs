// The straightforward comparison: the recurrence as a plain JavaScript loop (float32 arrays,
// double arithmetic, one thread), forward and forward+backward, with z, D and softplus on delta,
// input-dependent B and C of shape (batch, N, L). No chunking and no SIMD: what someone would write
// first. The backward keeps each row's L*N states from its forward (the simple way), then walks time
// in reverse (docs/ARCHITECTURE.md's formulas).

function softplus(x) {
  return x > 20 ? x : Math.log1p(Math.exp(x));
}

/** Forward. Returns out (batch, dim, L). */
export function jsForward(s, x) {
  const { batch, dim, L, N } = s;
  const { u, delta, A, B, C, D, z } = x;
  const out = new Float32Array(batch * dim * L);
  const h = new Float32Array(N);
  for (let b = 0; b < batch; b++) {
    for (let d = 0; d < dim; d++) {
      h.fill(0);
      const row = (b * dim + d) * L;
      const Dd = D[d];
      for (let t = 0; t < L; t++) {
        const ut = u[row + t];
        const dt = softplus(delta[row + t]);
        let y = 0;
        for (let n = 0; n < N; n++) {
          const bc = (b * N + n) * L + t;
          const hn = Math.exp(dt * A[d * N + n]) * h[n] + dt * B[bc] * ut;
          h[n] = hn;
          y += C[bc] * hn;
        }
        y += Dd * ut;
        const zt = z[row + t];
        out[row + t] = (y * zt) / (1 + Math.exp(-zt));
      }
    }
  }
  return out;
}

/** Forward and backward (dLastState = 0). Returns out and the gradients. */
export function jsForwardBackward(s, x) {
  const { batch, dim, L, N } = s;
  const { u, delta, A, B, C, D, z, dout } = x;
  const out = new Float32Array(batch * dim * L);
  const du = new Float32Array(batch * dim * L);
  const ddelta = new Float32Array(batch * dim * L);
  const dz = new Float32Array(batch * dim * L);
  const dA = new Float32Array(dim * N);
  const dB = new Float32Array(batch * N * L);
  const dC = new Float32Array(batch * N * L);
  const dD = new Float32Array(dim);
  const H = new Float32Array(L * N); // the row's states h_t
  const Y = new Float32Array(L); // y before the gate
  const g = new Float64Array(N); // adjoint g_{t+1}, then g_t
  const aNext = new Float64Array(N); // a_{t+1}
  for (let b = 0; b < batch; b++) {
    for (let d = 0; d < dim; d++) {
      const row = (b * dim + d) * L;
      const Dd = D[d];
      for (let t = 0; t < L; t++) {
        const ut = u[row + t];
        const dt = softplus(delta[row + t]);
        let y = 0;
        for (let n = 0; n < N; n++) {
          const bc = (b * N + n) * L + t;
          const prev = t > 0 ? H[(t - 1) * N + n] : 0;
          const hn = Math.exp(dt * A[d * N + n]) * prev + dt * B[bc] * ut;
          H[t * N + n] = hn;
          y += C[bc] * hn;
        }
        y += Dd * ut;
        Y[t] = y;
        const zt = z[row + t];
        out[row + t] = (y * zt) / (1 + Math.exp(-zt));
      }
      g.fill(0);
      aNext.fill(1);
      let dDd = 0;
      for (let t = L - 1; t >= 0; t--) {
        const ut = u[row + t];
        const xt = delta[row + t];
        const dt = softplus(xt);
        const zt = z[row + t];
        const sg = 1 / (1 + Math.exp(-zt));
        const go = dout[row + t];
        const dy = go * zt * sg;
        dz[row + t] = go * Y[t] * sg * (1 + zt * (1 - sg));
        dDd += dy * ut;
        let dut = Dd * dy;
        let ddt = 0;
        for (let n = 0; n < N; n++) {
          const bc = (b * N + n) * L + t;
          const An = A[d * N + n];
          const gn = C[bc] * dy + aNext[n] * g[n];
          const hn = H[t * N + n];
          const dtBu = dt * B[bc] * ut;
          dut += gn * dt * B[bc];
          ddt += gn * (B[bc] * ut + An * (hn - dtBu));
          dA[d * N + n] += gn * dt * (hn - dtBu);
          dB[bc] += gn * dt * ut;
          dC[bc] += dy * hn;
          g[n] = gn;
          aNext[n] = Math.exp(dt * An);
        }
        du[row + t] = dut;
        ddelta[row + t] = xt > 20 ? ddt : ddt / (1 + Math.exp(-xt));
      }
      dD[d] += dDd;
    }
  }
  return { out, du, ddelta, dz, dA, dB, dC, dD };
}
