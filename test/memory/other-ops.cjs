// Synchronous cycles of the ops beside the Mamba-1 scan of cycles.cjs (ssdScan forward+backward,
// selectiveScan forward+backward on packed sequences, causalConv1d forward+backward and
// causalConv1dUpdate), every result disposed: prints the peak RSS in MB as JSON.
const {
  Tensor,
  ssdScan,
  ssdScanBackward,
  selectiveScan,
  selectiveScanBackward,
  causalConv1d,
  causalConv1dBackward,
  causalConv1dUpdate,
} = require('../..');
const cycles = +(process.argv[2] ?? 5000);
const [b, L, H, P, G, N] = [1, 64, 4, 8, 1, 16];
const [slots, dim, W] = [4, 64, 4];
const rnd = (n, f = (x) => x) => Float32Array.from({ length: n }, () => f(Math.random() - 0.5));
const xv = rnd(b * L * H * P),
  dtv = rnd(b * L * H),
  Av = rnd(H, (x) => -Math.abs(x) - 0.1),
  Bv = rnd(b * L * G * N),
  Cv = rnd(b * L * G * N);
const cuSeqlens = Int32Array.from([0, 10, 10, 40, L]);
const [uv, deltav, sAv, sBv] = [
  rnd(dim * L),
  rnd(dim * L, Math.abs),
  rnd(dim * N, (x) => -Math.abs(x) - 0.1),
  rnd(N * L),
];
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
  const scanInputs = [Tensor.from(uv, [1, dim, L]), Tensor.from(deltav, [1, dim, L]), Tensor.from(sAv, [dim, N])];
  const sB = Tensor.from(sBv, [1, N, L]);
  const h0 = Tensor.zeros([cuSeqlens.length - 1, dim, N]);
  const scan = selectiveScan(...scanInputs, sB, sB, {
    cuSeqlens,
    initialState: h0,
    returnLastState: true,
    saveForBackward: true,
  });
  const sg = selectiveScanBackward(scan.ctx, scan.out, { dLastState: scan.lastState });
  const scanResults = [...scanInputs, sB, h0, scan.out, scan.lastState, scan.ctx, ...Object.values(sg)];
  for (const t of [x, dt, A, B, C, out, ctx, step, y, ...Object.values(g), ...convResults, ...scanResults]) t.dispose();
  if (i % 500 === 0) peak = Math.max(peak, process.memoryUsage().rss);
}
peak = Math.max(peak, process.memoryUsage().rss);
console.log(JSON.stringify({ peakRssMB: Math.round(peak / 1e6) }));
