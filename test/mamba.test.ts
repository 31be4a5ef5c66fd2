// The example Mamba model (examples/mamba.ts): a block's forward against a float64 reference of
// the same layer, mamba_ssm's initialisation, weights that survive save and load.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-layers';
import { beforeAll, describe, expect, it } from 'vitest';
import { MambaModel } from '../examples/mamba.js';
import { Rng as TestRng } from './helpers/random.js';
import { scanRef, silu } from './helpers/reference.js';
import { expectBitsEqual, expectRelClose } from './helpers/run.js';

beforeAll(async () => {
  expect(await tf.setBackend('cpu')).toBe(true);
});

const values = (model: MambaModel, name: string) => Float64Array.from(model.param(name).dataSync());

/** Block l of the model on x (batch, L, dModel), in float64 from the model's weights. */
function blockReference(model: MambaModel, l: number, x: Float64Array, batch: number, L: number): Float64Array {
  const c = model.config;
  const p = (name: string) => values(model, `layers.${l}.${name}`);
  const [d, dInner, N, R, W] = [c.dModel, c.expand * c.dModel, c.dState, c.dtRank, c.dConv];
  const T = batch * L;
  // rows (T, n) times w (n, m)
  const matmul = (rows: Float64Array, n: number, w: Float64Array, m: number) => {
    const out = new Float64Array(T * m);
    for (let t = 0; t < T; t++)
      for (let j = 0; j < m; j++) {
        let s = 0;
        for (let k = 0; k < n; k++) s += rows[t * n + k]! * w[k * m + j]!;
        out[t * m + j] = s;
      }
    return out;
  };
  const columns = (rows: Float64Array, width: number, from: number, count: number) => {
    const out = new Float64Array(T * count);
    for (let t = 0; t < T; t++) for (let j = 0; j < count; j++) out[t * count + j] = rows[t * width + from + j]!;
    return out;
  };
  // (batch, L, n) -> (batch, n, L)
  const channelsFirst = (rows: Float64Array, n: number) => {
    const out = new Float64Array(T * n);
    for (let b = 0; b < batch; b++)
      for (let t = 0; t < L; t++) for (let j = 0; j < n; j++) out[(b * n + j) * L + t] = rows[(b * L + t) * n + j]!;
    return out;
  };
  const norm = p('norm');
  const h = new Float64Array(T * d);
  for (let t = 0; t < T; t++) {
    let ms = 0;
    for (let j = 0; j < d; j++) ms += x[t * d + j]! ** 2;
    const scale = 1 / Math.sqrt(ms / d + 1e-5);
    for (let j = 0; j < d; j++) h[t * d + j] = x[t * d + j]! * scale * norm[j]!;
  }
  const xz = matmul(h, d, p('inProj'), 2 * dInner);
  const xIn = columns(xz, 2 * dInner, 0, dInner);
  const z = columns(xz, 2 * dInner, dInner, dInner);
  const [convWeight, convBias] = [p('convWeight'), p('convBias')];
  const u = new Float64Array(T * dInner);
  for (let b = 0; b < batch; b++)
    for (let t = 0; t < L; t++)
      for (let j = 0; j < dInner; j++) {
        let s = convBias[j]!;
        for (let k = 0; k < W; k++) {
          const ts = t - (W - 1) + k;
          if (ts >= 0) s += convWeight[j * W + k]! * xIn[(b * L + ts) * dInner + j]!;
        }
        u[(b * L + t) * dInner + j] = silu(s);
      }
  const scanInputs = c.selective
    ? (() => {
        const proj = matmul(u, dInner, p('xProj'), R + 2 * N);
        return {
          delta: channelsFirst(matmul(columns(proj, R + 2 * N, 0, R), R, p('dtProj'), dInner), dInner),
          B: channelsFirst(columns(proj, R + 2 * N, R, N), N),
          Blayout: { kind: 'varying' as const },
          C: channelsFirst(columns(proj, R + 2 * N, R + N, N), N),
          Clayout: { kind: 'varying' as const },
        };
      })()
    : {
        delta: new Float64Array(T * dInner),
        B: p('B'),
        Blayout: { kind: 'fixed' as const },
        C: p('C'),
        Clayout: { kind: 'fixed' as const },
      };
  const { out } = scanRef({
    batch,
    dim: dInner,
    L,
    N,
    u: channelsFirst(u, dInner),
    A: p('Alog').map((v) => -Math.exp(v)),
    D: p('D'),
    z: channelsFirst(z, dInner),
    deltaBias: p('dtBias'),
    deltaSoftplus: true,
    ...scanInputs,
  });
  const y = new Float64Array(T * dInner); // back to (batch, L, dInner)
  for (let b = 0; b < batch; b++)
    for (let t = 0; t < L; t++)
      for (let j = 0; j < dInner; j++) y[(b * L + t) * dInner + j] = out[(b * dInner + j) * L + t]!;
  const mixed = matmul(y, dInner, p('outProj'), d);
  return x.map((v, i) => v + mixed[i]!);
}

describe('the Mamba block', () => {
  it.each([
    ['selective', true],
    ['control (no selectivity)', false],
  ])('%s: forward equals a float64 reference of the same layer', (_, selective) => {
    const [batch, L] = [2, 11];
    const model = new MambaModel({ vocabSize: 16, dModel: 24, nLayer: 2, dState: 4, selective }, 5);
    // Non-trivial weights everywhere (the initialisation leaves some at 0 or 1).
    const rng = new TestRng(1701);
    for (const v of model.variables())
      v.assign(
        tf.add(
          v,
          tf.tensor(
            Float32Array.from(rng.normalArray(v.size), (n) => 0.3 * n),
            v.shape,
          ),
        ),
      );
    const x = Float32Array.from(rng.normalArray(batch * L * 24));
    const got = tf.tidy(() => model.block(1, tf.tensor(x, [batch, L, 24])).dataSync());
    expectRelClose(got, blockReference(model, 1, Float64Array.from(x), batch, L), 1e-5, 'block output');
    model.dispose();
  });

  it("initialises as mamba_ssm's Mamba does", () => {
    const model = new MambaModel({ vocabSize: 16, dModel: 64, nLayer: 2 }, 3);
    const c = model.config;
    expect([c.dState, c.dConv, c.expand, c.dtRank]).toEqual([16, 4, 2, 4]);
    expect(model.param('layers.0.inProj').shape).toEqual([64, 256]);
    expect(model.param('layers.0.xProj').shape).toEqual([128, 4 + 32]);
    const Alog = values(model, 'layers.1.Alog');
    for (let i = 0; i < Alog.length; i++) expect(Alog[i]).toBeCloseTo(Math.log((i % 16) + 1), 6);
    expect(values(model, 'layers.1.D').every((v) => v === 1)).toBe(true);
    // dt = softplus(dtBias), log-uniform in [1e-3, 0.1]: its logarithm's mean is about the middle.
    const dt = values(model, 'layers.0.dtBias').map((v) => Math.log1p(Math.exp(v)));
    expect(Math.min(...dt)).toBeGreaterThanOrEqual(1e-3 * (1 - 1e-5));
    expect(Math.max(...dt)).toBeLessThanOrEqual(0.1 * (1 + 1e-5));
    const meanLog = dt.reduce((s, v) => s + Math.log10(v), 0) / dt.length;
    expect(Math.abs(meanLog + 2)).toBeLessThan(0.15);
    model.dispose();
  });

  it('saves and loads its configuration and weights exactly', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mamba-'));
    const model = new MambaModel({ vocabSize: 16, dModel: 16, nLayer: 2, selective: false }, 9);
    try {
      await model.save(dir);
      const loaded = await MambaModel.load(dir);
      expect(loaded.config).toEqual(model.config);
      expect([...loaded.params.keys()]).toEqual([...model.params.keys()]);
      for (const name of model.params.keys()) {
        expectBitsEqual(
          loaded.param(name).dataSync() as Float32Array,
          model.param(name).dataSync() as Float32Array,
          name,
        );
      }
      const tokens = tf.tensor2d([1, 2, 3, 15, 0, 4], [1, 6], 'int32');
      expectBitsEqual(
        loaded.logits(tokens).dataSync() as Float32Array,
        model.logits(tokens).dataSync() as Float32Array,
        'logits',
      );
      loaded.dispose();
    } finally {
      model.dispose();
      await fs.rm(dir, { recursive: true });
    }
  });
});
