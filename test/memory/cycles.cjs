// 10,000 synchronous forward+backward cycles (issue #10): prints the peak RSS in MB as JSON.
const ss = require('../..');
const { Tensor, selectiveScan, selectiveScanBackward } = ss;
const cycles = +(process.argv[2] ?? 10000),
  doDispose = process.argv[3] !== 'nodispose';
const [b, d, L, N] = [2, 64, 128, 16];
const rnd = (n) => {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.random() - 0.5;
  return a;
};
const uv = rnd(b * d * L),
  dv = rnd(b * d * L).map(Math.abs),
  Av = rnd(d * N).map((x) => -Math.abs(x) - 0.1),
  Bv = rnd(b * N * L),
  Cv = rnd(b * N * L);
let peak = 0;
for (let i = 0; i < cycles; i++) {
  const u = Tensor.from(uv, [b, d, L]),
    delta = Tensor.from(dv, [b, d, L]),
    A = Tensor.from(Av, [d, N]);
  const B = Tensor.from(Bv, [b, N, L]),
    C = Tensor.from(Cv, [b, N, L]);
  const { out, ctx } = selectiveScan(u, delta, A, B, C, { saveForBackward: true, deltaSoftplus: true });
  const g = selectiveScanBackward(ctx, out);
  if (doDispose) {
    for (const t of [u, delta, A, B, C, out, ctx, ...Object.values(g)]) t.dispose();
  }
  if (i % 500 === 0) peak = Math.max(peak, process.memoryUsage().rss);
}
peak = Math.max(peak, process.memoryUsage().rss);
console.log(JSON.stringify({ peakRssMB: Math.round(peak / 1e6) }));
