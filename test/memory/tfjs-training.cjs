// A synchronous tfjs training loop through selective-scan/tfjs (causalConv1d then selectiveScan,
// Adam on the cpu backend, every step's tensors left to tf.tidy inside optimizer.minimize): prints
// the RSS in MB after a warm-up and at the end, and tf.memory()'s tensor count at both, as JSON.
const tf = require('@tensorflow/tfjs-core');
require('@tensorflow/tfjs-backend-cpu');
require('@tensorflow/tfjs-layers'); // the gradients of tfjs's own ops
const { causalConv1d, selectiveScan } = require('../../dist/tfjs/index.js');

const steps = +(process.argv[2] ?? 3000);
const warmup = Math.min(300, Math.floor(steps / 10));
const [batch, dim, L, N, W] = [2, 64, 512, 8, 4];
let seed = 7;
const random = (shape, scale = 1) =>
  tf.tensor(
    Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => {
      seed = (seed * 1664525 + 1013904223) >>> 0;
      return scale * (seed / 2 ** 32 - 0.5);
    }),
    shape,
  );

tf.setBackend('cpu').then(() => {
  const x = random([batch, dim, L]);
  const [B, C, target] = [random([batch, N, L]), random([batch, N, L]), random([batch, dim, L])];
  const weight = tf.variable(random([dim, W]));
  const Alog = tf.variable(tf.zeros([dim, N]));
  const D = tf.variable(tf.ones([dim]));
  const deltaBias = tf.variable(tf.fill([dim], -2));
  const optimizer = tf.train.adam(1e-3);
  const step = () => {
    const loss = optimizer.minimize(() => {
      const xc = causalConv1d(x, weight, { activation: 'silu' }).out;
      const { out } = selectiveScan(xc, xc, tf.neg(tf.exp(Alog)), B, C, { D, deltaBias, deltaSoftplus: true });
      return tf.losses.meanSquaredError(target, out);
    }, true);
    loss.dispose();
  };
  const mb = () => process.memoryUsage().rss / 2 ** 20;
  for (let i = 0; i < warmup; i++) step();
  const afterWarmup = { rssMB: mb(), tensors: tf.memory().numTensors };
  let peakRssMB = afterWarmup.rssMB;
  for (let i = warmup; i < steps; i++) {
    step();
    if (i % 100 === 0) peakRssMB = Math.max(peakRssMB, mb());
  }
  const end = { rssMB: mb(), tensors: tf.memory().numTensors };
  console.log(JSON.stringify({ steps, warmup, afterWarmup, end, peakRssMB: Math.max(peakRssMB, end.rssMB) }));
});
