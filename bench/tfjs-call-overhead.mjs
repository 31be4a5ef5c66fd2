// The fixed cost of one call through the TensorFlow.js adapter (selective-scan/tfjs), on the tfjs
// 'cpu' backend at one thread of ours, at a tiny shape where the kernels take next to nothing:
//
//   node bench/tfjs-call-overhead.mjs [--calls 500] [--batches 15]
//
// Rows, each the minimum over batches of the process CPU time per call (the machine is shared: the
// minimum is the least disturbed batch):
//   <op> forward          the tfjs op, its outputs disposed (no gradient recorded)
//   <op> forward+backward tf.grads of its output (dy = ones) with respect to every input
//   selectiveScan, our ops  our selectiveScan + selectiveScanBackward on our tensors, same shape:
//                         what the adapter adds is the difference
// bench/tfjs-overhead.mjs measures the adapter at a training step's sizes, in ms; this one the
// per-call part (argument and attribute objects, tfjs's engine, data in and out).
import os from 'node:os';
import { execSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { Tensor, selectiveScan, selectiveScanBackward, setNumThreads } from '../dist/index.js';
import * as tfss from '../dist/tfjs/index.js';

const { values: args } = parseArgs({
  options: {
    calls: { type: 'string', default: '500' },
    batches: { type: 'string', default: '15' },
  },
});
const CALLS = Number(args.calls);
const BATCHES = Number(args.batches);

await tf.setBackend('cpu');
setNumThreads(1);

// Tiny shapes: batch 1, dim 4, L 8, N 4; conv width 4.
const [batch, dim, L, N, W] = [1, 4, 8, 4, 4];
const fill = (n, f) => Float32Array.from({ length: n }, (_, i) => f(i));
const v = {
  u: fill(batch * dim * L, (i) => Math.sin(i)),
  delta: fill(batch * dim * L, (i) => 0.1 + 0.05 * Math.cos(i)),
  A: fill(dim * N, (i) => -1 - (i % 5) / 5),
  B: fill(batch * N * L, (i) => Math.cos(2 * i)),
  C: fill(batch * N * L, (i) => Math.sin(3 * i)),
  D: fill(dim, (i) => 0.5 + i / dim),
  w: fill(dim * W, (i) => 0.25 * Math.cos(i)),
};
const shapes = { u: [batch, dim, L], delta: [batch, dim, L], A: [dim, N], B: [batch, N, L], C: [batch, N, L] };
const t = Object.fromEntries(Object.entries(shapes).map(([k, s]) => [k, tf.tensor(v[k], s)]));
const D = tf.tensor(v.D, [dim]);
const weight = tf.tensor(v.w, [dim, W]);
const ours = Object.fromEntries(Object.entries(shapes).map(([k, s]) => [k, Tensor.from(v[k], s)]));
const oursD = Tensor.from(v.D, [dim]);
const dout = Tensor.from(
  fill(batch * dim * L, () => 1),
  shapes.u,
);

const scanFwd = () => {
  const r = tfss.selectiveScan(t.u, t.delta, t.A, t.B, t.C, { D, deltaSoftplus: true, returnLastState: true });
  r.out.dispose();
  r.lastState.dispose();
};
const scanLoss = (u, delta, A, B, C, D_) => tfss.selectiveScan(u, delta, A, B, C, { D: D_, deltaSoftplus: true }).out;
const scanGrads = tf.grads(scanLoss);
const dy = tf.ones(shapes.u);
const scanFwdBwd = () => tf.dispose(scanGrads([t.u, t.delta, t.A, t.B, t.C, D], dy));
const convGrads = tf.grads((x, w) => tfss.causalConv1d(x, w, { activation: 'silu' }).out);
const convFwdBwd = () => tf.dispose(convGrads([t.u, weight], dy));
const direct = () => {
  const { out, ctx } = selectiveScan(ours.u, ours.delta, ours.A, ours.B, ours.C, {
    D: oursD,
    deltaSoftplus: true,
    saveForBackward: true,
  });
  const g = selectiveScanBackward(ctx, dout);
  for (const x of [out, ...Object.values(g)]) x?.dispose();
  ctx.dispose();
};

function time(fn) {
  for (let i = 0; i < Math.min(CALLS, 200); i++) fn(); // warm-up, the JIT
  let best = Number.POSITIVE_INFINITY;
  for (let b = 0; b < BATCHES; b++) {
    const c0 = process.cpuUsage();
    for (let i = 0; i < CALLS; i++) fn();
    const c = process.cpuUsage(c0);
    best = Math.min(best, (c.user + c.system) / CALLS);
  }
  return best;
}

const load0 = os.loadavg()[0];
const rows = [
  ['selectiveScan forward', time(scanFwd)],
  ['selectiveScan forward+backward', time(scanFwdBwd)],
  ['causalConv1d forward+backward', time(convFwdBwd)],
  ['selectiveScan forward+backward, our ops', time(direct)],
];
const tensorsLeft = tf.memory().numTensors;
let commit = 'unknown';
try {
  const root = new URL('..', import.meta.url).pathname;
  commit = execSync('git rev-parse --short=12 HEAD', { cwd: root }).toString().trim();
  if (execSync('git status --porcelain -- lib csrc', { cwd: root }).toString().trim()) commit += ' (modified)';
} catch {}
console.log(`## tfjs adapter call overhead (tfjs 'cpu', 1 thread of ours, batch 1, dim 4, L 8, N 4)\n`);
console.log(`- ${os.cpus()[0]?.model}, node ${process.version}, tfjs ${tf.version_core}, commit ${commit}`);
console.log(`- load average ${load0.toFixed(2)} at the start, ${os.loadavg()[0].toFixed(2)} at the end`);
console.log(`- ${BATCHES} batches of ${CALLS} calls; min over batches of process CPU time per call`);
console.log(`- tfjs tensors alive at the end: ${tensorsLeft} (the inputs and dy: 8)\n`);
console.log('| case | CPU µs/call |');
console.log('| --- | ---: |');
for (const [name, us] of rows) console.log(`| ${name} | ${us.toFixed(1)} |`);
