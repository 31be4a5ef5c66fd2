// A Mamba language model in TypeScript: the dense parts (projections, norms) are TensorFlow.js ops,
// the causal convolution and the selective scan are selective-scan's, so tfjs's autograd and
// optimizers train it. Defaults and initialisation follow mamba_ssm's Mamba block (d_state 16, d_conv 4,
// expand 2, dt_rank ceil(d_model / 16), dt log-uniform in [1e-3, 0.1] through the inverse
// softplus, A_log = log(1..N), D = 1), with a residual and an RMSNorm around each block.
import fs from 'node:fs/promises';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { causalConv1d, selectiveScan } from 'selective-scan/tfjs';

export interface MambaConfig {
  vocabSize: number;
  dModel: number;
  nLayer: number;
  dState: number;
  dConv: number;
  expand: number;
  dtRank: number;
  dtMin: number;
  dtMax: number;
  dtInitFloor: number;
  /**
   * false: the control without selectivity. Δ, B and C are parameters (per channel) rather than
   * projections of the input; the rest of the block (convolution, gate, D) is unchanged.
   */
  selective: boolean;
}

export type MambaOptions = Pick<MambaConfig, 'vocabSize' | 'dModel' | 'nLayer'> & Partial<MambaConfig>;

export function mambaConfig(options: MambaOptions): MambaConfig {
  return {
    dState: 16,
    dConv: 4,
    expand: 2,
    dtRank: Math.ceil(options.dModel / 16),
    dtMin: 0.001,
    dtMax: 0.1,
    dtInitFloor: 1e-4,
    selective: true,
    ...options,
  };
}

/** A seeded generator (mulberry32), so that a model's initialisation and a run are reproducible. */
export class Rng {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }
  normal(): number {
    return Math.sqrt(-2 * Math.log(1 - this.next())) * Math.cos(2 * Math.PI * this.next());
  }
  /** An integer in [lo, hi). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo));
  }
}

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

// The initial values of every parameter, by name, as mamba_ssm draws them.
function initialValues(c: MambaConfig, rng: Rng): Map<string, { shape: number[]; values: Float32Array }> {
  const params = new Map<string, { shape: number[]; values: Float32Array }>();
  const add = (name: string, shape: number[], draw: (i: number) => number) => {
    params.set(name, { shape, values: Float32Array.from({ length: size(shape) }, (_, i) => draw(i)) });
  };
  // nn.Linear and nn.Conv1d's default: uniform in ±1/sqrt(fan_in).
  const uniform = (fanIn: number) => () => rng.uniform(-1, 1) / Math.sqrt(fanIn);
  const dInner = c.expand * c.dModel;
  const N = c.dState;
  add('embedding', [c.vocabSize, c.dModel], () => 0.02 * rng.normal());
  for (let l = 0; l < c.nLayer; l++) {
    const p = `layers.${l}.`;
    add(`${p}norm`, [c.dModel], () => 1);
    add(`${p}inProj`, [c.dModel, 2 * dInner], uniform(c.dModel));
    add(`${p}convWeight`, [dInner, c.dConv], uniform(c.dConv));
    add(`${p}convBias`, [dInner], uniform(c.dConv));
    if (c.selective) {
      add(`${p}xProj`, [dInner, c.dtRank + 2 * N], uniform(dInner));
      const dtInitStd = c.dtRank ** -0.5;
      add(`${p}dtProj`, [c.dtRank, dInner], () => rng.uniform(-dtInitStd, dtInitStd));
    } else {
      add(`${p}B`, [dInner, N], () => 1);
      add(`${p}C`, [dInner, N], () => rng.normal());
    }
    // dt log-uniform in [dtMin, dtMax], stored as its inverse softplus (the scan's deltaBias).
    add(`${p}dtBias`, [dInner], () => {
      const dt = Math.max(Math.exp(rng.uniform(Math.log(c.dtMin), Math.log(c.dtMax))), c.dtInitFloor);
      return dt + Math.log(-Math.expm1(-dt));
    });
    add(`${p}Alog`, [dInner, N], (i) => Math.log((i % N) + 1));
    add(`${p}D`, [dInner], () => 1);
    // The residual branch's last projection, scaled by 1/sqrt(nLayer) (rescale_prenorm_residual).
    add(`${p}outProj`, [dInner, c.dModel], () => uniform(dInner)() / Math.sqrt(c.nLayer));
  }
  add('normF', [c.dModel], () => 1);
  return params;
}

/**
 * x (tokens, in) times w (in, out). tf.matMul's own gradient multiplies by transposed operands,
 * which tfjs-backend-wasm 4.22 runs 10-15 times slower than a transpose followed by a plain
 * product; this gradient does the latter.
 */
export const linear = tf.customGrad((x, w, save) => {
  (save as tf.GradSaveFunc)([x, w] as tf.Tensor[]);
  return {
    value: tf.matMul(x as tf.Tensor, w as tf.Tensor),
    gradFunc: (dy, [xs, ws]) => [
      tf.matMul(dy as tf.Tensor, tf.transpose(ws!)),
      tf.matMul(tf.transpose(xs!), dy as tf.Tensor),
    ],
  };
}) as (x: tf.Tensor, w: tf.Tensor) => tf.Tensor;

export function rmsNorm(x: tf.Tensor, weight: tf.Tensor, eps = 1e-5): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps))), weight));
}

/** (batch, L, d) <-> (batch, d, L), the layout of the convolution and the scan. */
const toChannelsFirst = (x: tf.Tensor) => tf.transpose(x, [0, 2, 1]);
const toChannelsLast = toChannelsFirst;

export class MambaModel {
  readonly config: MambaConfig;
  readonly params: Map<string, tf.Variable>;

  constructor(options: MambaOptions, seed = 0) {
    this.config = mambaConfig(options);
    this.params = new Map();
    for (const [name, { shape, values }] of initialValues(this.config, new Rng(seed))) {
      this.params.set(
        name,
        tf.tidy(() => tf.variable(tf.tensor(values, shape))),
      );
    }
  }

  param(name: string): tf.Variable {
    const p = this.params.get(name);
    if (!p) throw new Error(`MambaModel: no parameter ${name}`);
    return p;
  }

  /** Block l's mixer on normalised hidden states h (batch, L, dModel). */
  mixer(l: number, h: tf.Tensor): tf.Tensor {
    const c = this.config;
    const p = (name: string) => this.param(`layers.${l}.${name}`);
    return tf.tidy(() => {
      const [batch, L] = h.shape as [number, number];
      const dInner = c.expand * c.dModel;
      const tokens = (x: tf.Tensor) => tf.reshape(x, [batch * L, x.shape.at(-1)!]);
      const sequences = (x: tf.Tensor) => tf.reshape(x, [batch, L, x.shape.at(-1)!]);
      const [xIn, z] = tf.split(linear(tokens(h), p('inProj')), 2, -1) as [tf.Tensor, tf.Tensor];
      // The causal depthwise convolution and its silu, fused: xc is (batch, dInner, L).
      const xc = causalConv1d(toChannelsFirst(sequences(xIn)), p('convWeight'), {
        bias: p('convBias'),
        activation: 'silu',
      }).out;
      const x = toChannelsLast(xc);
      let delta: tf.Tensor;
      let B: tf.Tensor;
      let C: tf.Tensor;
      if (c.selective) {
        const [dtLow, Bt, Ct] = tf.split(linear(tokens(x), p('xProj')), [c.dtRank, c.dState, c.dState], -1) as [
          tf.Tensor,
          tf.Tensor,
          tf.Tensor,
        ];
        delta = toChannelsFirst(sequences(linear(dtLow, p('dtProj'))));
        B = toChannelsFirst(sequences(Bt));
        C = toChannelsFirst(sequences(Ct));
      } else {
        delta = tf.zeros([batch, dInner, L]); // Δ = softplus(dtBias), the same at every step
        B = p('B');
        C = p('C');
      }
      const { out } = selectiveScan(xc, delta, tf.neg(tf.exp(p('Alog'))), B, C, {
        D: p('D'),
        z: toChannelsFirst(sequences(z)),
        deltaBias: p('dtBias'),
        deltaSoftplus: true,
      });
      return sequences(linear(tokens(toChannelsFirst(out)), p('outProj')));
    });
  }

  /** Block l: the mixer around an RMSNorm, plus the residual. */
  block(l: number, x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.add(x, this.mixer(l, rmsNorm(x, this.param(`layers.${l}.norm`)))));
  }

  /** Hidden states (batch, L, dModel) after every block and the final norm. */
  hidden(tokens: tf.Tensor2D): tf.Tensor {
    return tf.tidy(() => {
      // The embedding as a product with one-hot rows: differentiable on every tfjs backend. (The
      // cast, not oneHot's dtype argument: tfjs-backend-wasm 4.22 writes integer bits into float32.)
      const [batch, L] = tokens.shape;
      const oneHot = tf.cast(tf.oneHot(tf.reshape(tokens, [batch * L]), this.config.vocabSize), 'float32');
      let h = tf.reshape(linear(oneHot, this.param('embedding')), [batch, L, this.config.dModel]);
      for (let l = 0; l < this.config.nLayer; l++) h = this.block(l, h);
      return rmsNorm(h, this.param('normF'));
    });
  }

  /** Logits (batch, L, vocabSize) of integer tokens (batch, L); the head is the embedding's transpose. */
  logits(tokens: tf.Tensor2D): tf.Tensor3D {
    return tf.tidy(() => {
      const h = this.hidden(tokens);
      const [batch, L, d] = h.shape as [number, number, number];
      const flat = linear(tf.reshape(h, [batch * L, d]), tf.transpose(this.param('embedding')));
      return tf.reshape(flat, [batch, L, this.config.vocabSize]) as tf.Tensor3D;
    });
  }

  variables(): tf.Variable[] {
    return [...this.params.values()];
  }

  parameterCount(): number {
    return this.variables().reduce((n, v) => n + v.size, 0);
  }

  /** Writes dir/model.json (config and weight manifest) and dir/weights.bin. */
  async save(dir: string): Promise<void> {
    const { data, specs } = await tf.io.encodeWeights(Object.fromEntries(this.params));
    await fs.mkdir(dir, { recursive: true });
    await fs.writeFile(path.join(dir, 'weights.bin'), new Uint8Array(data));
    const manifest = { format: 'selective-scan-mamba', version: 1, config: this.config, weights: specs };
    await fs.writeFile(path.join(dir, 'model.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  }

  /** A model with the configuration and weights that save() wrote to dir. */
  static async load(dir: string): Promise<MambaModel> {
    const manifest = JSON.parse(await fs.readFile(path.join(dir, 'model.json'), 'utf8'));
    if (manifest.format !== 'selective-scan-mamba') throw new Error(`MambaModel.load: ${dir} holds no saved model`);
    const bytes = await fs.readFile(path.join(dir, 'weights.bin'));
    const weights = tf.io.decodeWeights(
      bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength),
      manifest.weights,
    );
    const model = new MambaModel(manifest.config);
    for (const [name, variable] of model.params) {
      const saved = weights[name];
      if (!saved) throw new Error(`MambaModel.load: ${dir} lacks the weights of ${name}`);
      variable.assign(saved);
    }
    tf.dispose(Object.values(weights));
    return model;
  }

  dispose(): void {
    tf.dispose(this.variables());
  }
}
