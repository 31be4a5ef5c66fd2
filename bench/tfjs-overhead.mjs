// The tfjs adapter's own cost, as a fraction of a training step of the Selective Copying example
// (npm run bench:tfjs). For each tfjs backend: the time of a full training step of the example's
// model, and, at one block's scan shape, the time of the forward and backward kernels through
// tfjs (engine, data in and out, our ops) against our ops called directly on our tensors. The
// difference, times the number of blocks, is the adapter's overhead per step.
//
//   node bench/tfjs-overhead.mjs [--backends wasm,cpu] [--reps 15] [--batch 8] [--seq-len 256]
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import '@tensorflow/tfjs-layers';
import { Tensor, selectiveScan, selectiveScanBackward } from '../dist/index.js';
import * as tfss from '../dist/tfjs/index.js';
import { MambaModel, Rng } from '../examples/dist/mamba.js';
import { DATA_TOKENS, copyingBatch, copyingLoss } from '../examples/dist/selective-copying.js';

const { values: args } = parseArgs({
  options: {
    backends: { type: 'string', default: 'wasm,cpu' },
    reps: { type: 'string', default: '15' },
    batch: { type: 'string', default: '8' },
    'seq-len': { type: 'string', default: '256' },
  },
});
const reps = Number(args.reps);
const batch = Number(args.batch);
const seqLen = Number(args['seq-len']);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ms = (f) => {
  const t0 = performance.now();
  f();
  return performance.now() - t0;
};

function stepTime(model) {
  const optimizer = tf.train.adam(1e-3);
  const rng = new Rng(1);
  const step = () => {
    const data = copyingBatch(rng, batch, seqLen);
    const tokens = tf.tensor2d(data.tokens, [batch, seqLen], 'int32');
    const targets = tf.tensor2d(data.targets, [batch, DATA_TOKENS], 'int32');
    const loss = optimizer.minimize(() => copyingLoss(model, tokens, targets).loss, true, model.variables());
    loss.dataSync();
    tf.dispose([tokens, targets, loss]);
  };
  for (let i = 0; i < 3; i++) step();
  const times = Array.from({ length: reps }, () => ms(step));
  optimizer.dispose();
  return median(times);
}

// One block's scan: u, delta, z (batch, dInner, L); B, C (batch, N, L); A (dInner, N); D, deltaBias.
function scanTimes(config) {
  const dInner = config.expand * config.dModel;
  const N = config.dState;
  const rng = new Rng(2);
  const shapes = {
    u: [batch, dInner, seqLen],
    delta: [batch, dInner, seqLen],
    A: [dInner, N],
    B: [batch, N, seqLen],
    C: [batch, N, seqLen],
    D: [dInner],
    z: [batch, dInner, seqLen],
    deltaBias: [dInner],
  };
  const values = Object.fromEntries(
    Object.entries(shapes).map(([name, shape]) => {
      const n = shape.reduce((a, b) => a * b, 1);
      const v = Float32Array.from({ length: n }, () => (name === 'A' ? -rng.uniform(0.5, 2) : rng.uniform(-1, 1)));
      return [name, v];
    }),
  );
  const dout = Float32Array.from({ length: batch * dInner * seqLen }, () => rng.uniform(-1, 1));
  const ours = Object.fromEntries(Object.entries(shapes).map(([k, s]) => [k, Tensor.from(values[k], s)]));
  const doutOurs = Tensor.from(dout, shapes.u);
  const direct = () => {
    const { out, ctx } = selectiveScan(ours.u, ours.delta, ours.A, ours.B, ours.C, {
      D: ours.D,
      z: ours.z,
      deltaBias: ours.deltaBias,
      deltaSoftplus: true,
      saveForBackward: true,
    });
    const grads = selectiveScanBackward(ctx, doutOurs);
    for (const t of [out, ...Object.values(grads)]) t.dispose();
    ctx.dispose();
  };
  const inputs = Object.entries(shapes).map(([k, s]) => tf.tensor(values[k], s));
  const doutTf = tf.tensor(dout, shapes.u);
  // What a training step runs for the scan, through the public adapter: the forward kernel, then
  // the backward kernel its gradient calls, with dout as the output's gradient.
  const scanGrads = tf.grads(
    (u, delta, A, B, C, D, z, deltaBias) =>
      tfss.selectiveScan(u, delta, A, B, C, { D, z, deltaBias, deltaSoftplus: true }).out,
  );
  const viaTfjs = () => tf.dispose(scanGrads(inputs, doutTf));
  for (let i = 0; i < 3; i++) {
    direct();
    viaTfjs();
  }
  const directTimes = [];
  const tfjsTimes = [];
  for (let i = 0; i < reps * 2; i++) {
    directTimes.push(ms(direct));
    tfjsTimes.push(ms(viaTfjs));
  }
  tf.dispose([...inputs, doutTf]);
  for (const t of [...Object.values(ours), doutOurs]) t.dispose();
  return { direct: median(directTimes), tfjs: median(tfjsTimes) };
}

console.log(
  `tfjs adapter overhead at the Selective Copying example's sizes: batch ${batch}, L ${seqLen}, ` +
    `d_model 64, 2 layers (${reps} reps, medians)\n`,
);
console.log(
  '| tfjs backend | training step | scan fwd+bwd, our ops | through tfjs | overhead per step | share of the step |',
);
console.log('| --- | --- | --- | --- | --- | --- |');
for (const backend of args.backends.split(',')) {
  await tf.setBackend(backend);
  const model = new MambaModel({ vocabSize: 16, dModel: 64, nLayer: 2 }, 1);
  const step = stepTime(model);
  const scan = scanTimes(model.config);
  const overhead = model.config.nLayer * (scan.tfjs - scan.direct);
  console.log(
    `| ${backend} | ${step.toFixed(0)} ms | ${scan.direct.toFixed(1)} ms | ${scan.tfjs.toFixed(1)} ms | ` +
      `${overhead.toFixed(1)} ms | ${((100 * overhead) / step).toFixed(1)} % |`,
  );
  model.dispose();
}
