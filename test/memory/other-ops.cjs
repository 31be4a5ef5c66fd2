// Synchronous cycles of the ops beside the Mamba-1 scan (ssdScan forward+backward, causalConv1d
// forward+backward and causalConv1dUpdate), every result disposed: prints the peak RSS in MB as JSON.
const { Tensor, ssdScan, ssdScanBackward, causalConv1d, causalConv1dBackward, causalConv1dUpdate } = require('../..');
const cycles = +(process.argv[2] ?? 5000);
const [b, L, H, P, G, N] = [1, 64, 4, 8, 1, 16];
const [slots, dim, W] = [4, 64, 4];
const rnd = (n, f = (x) => x) => Float32Array.from({ length: n }, () => f(Math.random() - 0.5));
const xv = rnd(b * L * H * P),
  dtv = rnd(b * L * H),
  Av = rnd(H, (x) => -Math.abs(x) - 0.1),
  Bv = rnd(b * L * G * N),
  Cv = rnd(b * L * G * N);
const convState = Tensor.zeros([slots, dim, W - 1]);
const weight = Tensor.from(rnd(dim * W), [dim, W]);
let peak = 0;
for (let i = 0; i < cycles; i++) {
  const x = Tensor.from(xv, [b, L, H, P]),
    dt = Tensor.from(dtv, [b, L, H]),
    A = Tensor.from(Av, [H]);
  const B = Tensor.from(Bv, [b, L, G, N]),
    C = Tensor.from(Cv, [b, L, G, N]);
  const { out, ctx } = ssdScan(x, dt, A, B, C, { saveForBackward: true, dtSoftplus: true });
  const g = ssdScanBackward(ctx, out);
  const step = Tensor.from(rnd(slots * dim), [slots, dim]);
  const y = causalConv1dUpdate(convState, step, weight, { activation: 'silu' });
  const seq = Tensor.from(rnd(2 * dim * L), [2, dim, L]);
  const conv = causalConv1d(seq, weight, { activation: 'silu', returnFinalState: true, saveForBackward: true });
  const cg = causalConv1dBackward(conv.ctx, conv.out, { dFinalState: conv.finalState });
  const convResults = [seq, conv.out, conv.finalState, conv.ctx, ...Object.values(cg)];
  for (const t of [x, dt, A, B, C, out, ctx, step, y, ...Object.values(g), ...convResults]) t.dispose();
  if (i % 500 === 0) peak = Math.max(peak, process.memoryUsage().rss);
}
peak = Math.max(peak, process.memoryUsage().rss);
console.log(JSON.stringify({ peakRssMB: Math.round(peak / 1e6) }));
