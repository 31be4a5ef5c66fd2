// selective-scan/tfjs: selectiveScan as a tfjs kernel. Its outputs and the gradients tfjs computes
// through it equal our ops' own (forward and selectiveScanBackward) on the 'cpu' and 'wasm'
// backends and match finite differences of the float64 reference; tf.grad, tf.variableGrads and
// an optimizer train through it without leaking tensors; bad input gets clear errors.
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
// tfjs-core's Node build registers no gradients of its own ops; tfjs-layers' (like @tensorflow/tfjs) does.
import '@tensorflow/tfjs-layers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { liveTensorCount } from '../dist/internal.js';
import { SUPPORTED_BACKENDS, causalConv1d, selectiveScan } from '../dist/tfjs/index.js';
import {
  EVERY_OPTION,
  FIXED,
  VARYING,
  bcShapeOf,
  grouped,
  makeScanCase,
  specName,
  type ScanCase,
} from './helpers/cases.js';
import { type ConvRefInputs, convRef, convRefBackward, convStateRows } from './helpers/conv-reference.js';
import { expectCode, expectThrow } from './helpers/expect-code.js';
import { Rng } from './helpers/random.js';
import { scanRef, type ScanRefInputs, stateRowCount } from './helpers/reference.js';
import { GRAD_INPUT, expectRelClose, runAddon } from './helpers/run.js';

const INPUT_NAMES = ['u', 'delta', 'A', 'B', 'C', 'D', 'z', 'deltaBias', 'initialState'] as const;
type InputName = (typeof INPUT_NAMES)[number];

/** The case's inputs as tfjs tensors (float32), by name, and the selectiveScan call on them. */
function tfInputs(c: ScanCase): Map<InputName, tf.Tensor> {
  const { batch, dim, L, N } = c.ref;
  const shapes: Record<InputName, number[]> = {
    u: [batch, dim, L],
    delta: [batch, dim, L],
    A: [dim, N],
    B: bcShapeOf(c, 'B'),
    C: bcShapeOf(c, 'C'),
    D: [dim],
    z: [batch, dim, L],
    deltaBias: [dim],
    initialState: [stateRowCount(c.ref), dim, N],
  };
  const inputs = new Map<InputName, tf.Tensor>();
  for (const name of INPUT_NAMES) {
    const values = c.ref[name];
    if (values) inputs.set(name, tf.tensor(Float32Array.from(values), shapes[name]));
  }
  return inputs;
}

function scanOn(c: ScanCase, x: Map<InputName, tf.Tensor>) {
  const opts: Record<string, unknown> = {};
  for (const name of ['D', 'z', 'deltaBias', 'initialState'] as const) if (x.has(name)) opts[name] = x.get(name);
  if (c.ref.deltaSoftplus) opts.deltaSoftplus = true;
  if (c.spec.lastState) opts.returnLastState = true;
  if (c.ref.cuSeqlens) opts.cuSeqlens = c.ref.cuSeqlens;
  return selectiveScan(x.get('u')!, x.get('delta')!, x.get('A')!, x.get('B')!, x.get('C')!, opts);
}

/**
 * Forward and tf.grads of loss = sum(out * dout) + sum(lastState * dLastState) (whose gradient
 * with respect to out is dout, so that the results compare with our backward given dout).
 */
function viaTfjs(c: ScanCase) {
  const inputs = tfInputs(c);
  const names = [...inputs.keys()];
  const { batch, dim, L, N } = c.ref;
  const dout = tf.tensor(Float32Array.from(c.dout), [batch, dim, L]);
  const dLastState = c.dLastState
    ? tf.tensor(Float32Array.from(c.dLastState), [stateRowCount(c.ref), dim, N])
    : undefined;
  const forward = scanOn(c, inputs);
  const loss = (...xs: tf.Tensor[]) => {
    const r = scanOn(c, new Map(names.map((n, i) => [n, xs[i]!])));
    const outTerm = tf.sum(tf.mul(r.out, dout));
    return dLastState ? tf.add(outTerm, tf.sum(tf.mul(r.lastState!, dLastState))) : outTerm;
  };
  const grads = tf.grads(loss)(names.map((n) => inputs.get(n)!));
  const result = {
    out: forward.out.dataSync() as Float32Array,
    lastState: forward.lastState?.dataSync() as Float32Array | undefined,
    grads: new Map(names.map((n, i) => [n, grads[i]!.dataSync() as Float32Array])),
  };
  tf.dispose([...inputs.values(), dout, dLastState, forward.out, forward.lastState, ...grads]);
  return result;
}

const CASES = [
  { batch: 2, dim: 3, L: 5, N: 4, seed: 1501 },
  {
    batch: 2,
    dim: 4,
    L: 300, // several checkpoint chunks
    N: 16,
    B: VARYING,
    ...EVERY_OPTION,
    seed: 1502,
  },
  { batch: 1, dim: 6, L: 33, N: 8, B: grouped(3), C: VARYING, D: true, lastState: true, seed: 1503 },
  { batch: 3, dim: 4, L: 17, N: 5, B: FIXED, C: grouped(2), z: true, initialState: true, seed: 1504 },
  // Packed sequences (one empty, one across a checkpoint chunk): states and gradients per sequence.
  { batch: 1, dim: 3, L: 300, N: 4, B: VARYING, ...EVERY_OPTION, cuSeqlens: [0, 7, 7, 290, 300], seed: 1505 },
].map(makeScanCase);

beforeAll(async () => {
  expect(await tf.setBackend('cpu')).toBe(true);
});

describe.each(SUPPORTED_BACKENDS)('selectiveScan on the tfjs %s backend', (backend) => {
  beforeAll(async () => {
    expect(await tf.setBackend(backend)).toBe(true);
  });
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  it.each(CASES.map((c) => [specName(c.spec), c] as const))('outputs and every gradient equal our ops: %s', (_, c) => {
    const before = tf.memory().numTensors;
    const got = viaTfjs(c);
    const ours = runAddon(c);
    expectRelClose(got.out, ours.out, 1e-7, 'out');
    if (c.spec.lastState) expectRelClose(got.lastState!, ours.lastState!, 1e-7, 'lastState');
    expect([...got.grads.keys()].sort()).toEqual(
      Object.keys(ours.grads)
        .map((g) => GRAD_INPUT[g])
        .sort(),
    );
    for (const [g, values] of Object.entries(ours.grads)) {
      expectRelClose(got.grads.get(GRAD_INPUT[g] as InputName)!, values, 1e-6, g);
    }
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('selectiveScan gradients against finite differences', () => {
  // loss(inputs) = sum(out * dout) + sum(lastState * dLastState), in float64.
  function referenceLoss(c: ScanCase, ref: ScanRefInputs): number {
    const r = scanRef(ref);
    let loss = 0;
    for (let i = 0; i < r.out.length; i++) loss += r.out[i]! * c.dout[i]!;
    for (let i = 0; i < r.lastState.length; i++) loss += r.lastState[i]! * c.dLastState![i]!;
    return loss;
  }
  const c = makeScanCase({
    batch: 2,
    dim: 3,
    L: 9,
    N: 4,
    B: VARYING,
    C: grouped(3),
    ...EVERY_OPTION,
    seed: 1511,
  });

  it('for every input, at a few coordinates each', () => {
    const got = viaTfjs(c);
    const rng = new Rng(1512);
    const eps = 1e-5;
    for (const name of INPUT_NAMES) {
      const values = c.ref[name]!;
      for (let k = 0; k < 4; k++) {
        const i = Math.floor(rng.uniform(0, values.length));
        const shifted = (h: number) => {
          const v = Float64Array.from(values);
          v[i]! += h;
          return referenceLoss(c, { ...c.ref, [name]: v });
        };
        const fd = (shifted(eps) - shifted(-eps)) / (2 * eps);
        const g = got.grads.get(name)![i]!;
        expect(Math.abs(g - fd), `d loss / d ${name}[${i}]: ${g} vs ${fd}`).toBeLessThan(1e-3 * (1 + Math.abs(fd)));
      }
    }
  });
});

// A student learns a teacher's selective scan: A, D and the projection that makes delta
// input-dependent, with delta = softplus(x W + deltaBias), as in a Mamba block.
function scanRegression(seed: number) {
  const [batch, dim, L, N] = [2, 8, 32, 4];
  const rng = new Rng(seed);
  const normal = (shape: number[], std = 1) =>
    tf.tensor(
      Float32Array.from(rng.normalArray(shape.reduce((a, b) => a * b, 1)), (v) => v * std),
      shape,
    );
  const x = normal([batch, dim, L]);
  const B = normal([batch, N, L]);
  const C = normal([batch, N, L]);
  const xT = tf.reshape(tf.transpose(x, [0, 2, 1]), [batch * L, dim]);
  type Params = [Alog: tf.Tensor, D: tf.Tensor, W: tf.Tensor, bias: tf.Tensor];
  const model = (...[Alog, D, W, bias]: Params) => {
    const delta = tf.transpose(tf.reshape(tf.matMul(xT, W), [batch, L, dim]), [0, 2, 1]);
    return selectiveScan(x, delta, tf.neg(tf.exp(Alog)), B, C, { D, deltaBias: bias, deltaSoftplus: true }).out;
  };
  const teacher: Params = [normal([dim, N], 0.5), normal([dim]), normal([dim, dim], 0.5), tf.fill([dim], -1)];
  const target = model(...teacher);
  const student: [tf.Variable, tf.Variable, tf.Variable, tf.Variable] = [
    tf.variable(tf.zeros([dim, N])),
    tf.variable(tf.zeros([dim])),
    tf.variable(normal([dim, dim], 0.1)),
    tf.variable(tf.fill([dim], -2)),
  ];
  const lossOf = (...params: Params): tf.Scalar => tf.mean(tf.squaredDifference(model(...params), target));
  const dispose = () => tf.dispose([x, B, C, xT, target, ...teacher, ...student]);
  return { student, lossOf, loss: () => lossOf(...student), dispose };
}

describe('training through selectiveScan', () => {
  it('tf.grads, tf.grad and tf.variableGrads agree', () => {
    const { student, lossOf, loss, dispose } = scanRegression(1521);
    const viaGrads = tf.grads((...params: tf.Tensor[]) =>
      lossOf(...(params as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor])),
    )(student);
    const { value, grads } = tf.variableGrads(loss);
    student.forEach((v, i) => {
      expectRelClose(grads[v.name]!.dataSync(), viaGrads[i]!.dataSync(), 1e-6, v.name);
    });
    const [Alog, D, W, bias] = student;
    const dD = tf.grad((d: tf.Tensor) => lossOf(Alog, d, W, bias))(D);
    expectRelClose(dD.dataSync(), viaGrads[1]!.dataSync(), 1e-6, 'tf.grad D');
    tf.dispose([...viaGrads, value, ...Object.values(grads), dD]);
    dispose();
  });

  it('an optimizer lowers the loss in a few dozen steps, without leaking tfjs tensors or memory', () => {
    const { loss, dispose } = scanRegression(1522);
    const optimizer = tf.train.adam(0.05);
    const losses: number[] = [];
    const memory: tf.MemoryInfo[] = [];
    for (let step = 0; step < 60; step++) {
      const value = optimizer.minimize(loss, true)!;
      losses.push(value.dataSync()[0]!);
      value.dispose();
      memory.push(tf.memory());
    }
    expect(losses.at(-1)!, `losses ${losses.map((l) => l.toFixed(3)).join(' ')}`).toBeLessThan(losses[0]! / 4);
    // Adam's moments exist from the first step on; from then on nothing accumulates.
    expect(memory.at(-1)!.numTensors).toBe(memory[1]!.numTensors);
    expect(memory.at(-1)!.numBytes).toBe(memory[1]!.numBytes);
    optimizer.dispose();
    dispose();
  });

  it('1,000 training steps leave tf.memory() and our tensors where the first step left them', () => {
    const rng = new Rng(1523);
    const [batch, dim, L, N] = [1, 4, 16, 4];
    const constant = (shape: number[]) =>
      tf.tensor(Float32Array.from(rng.normalArray(shape.reduce((a, b) => a * b))), shape);
    const [x, B, C] = [constant([batch, dim, L]), constant([batch, N, L]), constant([batch, N, L])];
    const Alog = tf.variable(tf.zeros([dim, N]));
    const D = tf.variable(tf.zeros([dim]));
    const h0 = tf.variable(tf.zeros([batch, dim, N]));
    const optimizer = tf.train.sgd(0.01);
    const step = () => {
      const loss = optimizer.minimize(() => {
        const r = selectiveScan(x, x, tf.neg(tf.exp(Alog)), B, C, { D, initialState: h0, returnLastState: true });
        return tf.add(tf.mean(tf.square(r.out)), tf.mean(r.lastState!));
      }, true)!;
      loss.dispose();
    };
    step();
    const after1 = tf.memory();
    const ours = liveTensorCount();
    for (let i = 1; i < 1000; i++) step();
    expect(tf.memory().numTensors).toBe(after1.numTensors);
    expect(tf.memory().numBytes).toBe(after1.numBytes);
    expect(liveTensorCount()).toBe(ours);
    tf.dispose([x, B, C, Alog, D, h0]);
    optimizer.dispose();
  });

  it('without a gradient, tfjs frees the checkpoints with everything else a tf.tidy made', () => {
    const c = CASES[1]!;
    const inputs = tfInputs(c);
    const before = tf.memory();
    tf.tidy(() => {
      scanOn(c, inputs);
    });
    expect(tf.memory().numTensors).toBe(before.numTensors);
    expect(tf.memory().numBytes).toBe(before.numBytes);
    // Under a tape that does not differentiate through the scan: freed when the gradient is done.
    const y = tf.tidy(() => tf.variable(tf.scalar(2)));
    const { value, grads } = tf.variableGrads(() => {
      scanOn(c, inputs);
      return tf.square(y);
    }, [y]);
    tf.dispose([value, ...Object.values(grads), y]);
    expect(tf.memory().numTensors).toBe(before.numTensors);
    tf.dispose([...inputs.values()]);
  });
});

describe('selective-scan/tfjs is optional', () => {
  it('the root entry loads no tfjs module', () => {
    const script =
      "require('./dist/index.js'); console.log(Object.keys(require.cache).filter((k) => k.includes('@tensorflow')).length)";
    const run = spawnSync(process.execPath, ['-e', script], { cwd: path.join(__dirname, '..'), encoding: 'utf8' });
    expect(run.stderr).toBe('');
    expect(run.stdout.trim()).toBe('0');
  });

  it('the ES module entry shares the CommonJS one', async () => {
    const esm = await import('../dist/tfjs/index.mjs');
    expect(esm.selectiveScan).toBe(selectiveScan);
  });
});

describe('the README', () => {
  it("runs the training loop of 'Training from TypeScript' as written", async () => {
    const readme = readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('## Training from TypeScript'));
    const example = /```ts\n([\s\S]*?)```/.exec(section)?.[1] ?? '';
    expect(example).toContain("from 'selective-scan/tfjs'");
    const file = path.join(__dirname, `.readme-training-${process.pid}.ts`);
    writeFileSync(file, `${example}\nexport { Alog, D, dtBias };\n`);
    try {
      const m = await import(file);
      // The variables moved away from where they started.
      expect(tf.any(tf.notEqual(m.D, 1)).dataSync()[0]).toBe(1);
      expect(tf.any(tf.notEqual(m.Alog, 0)).dataSync()[0]).toBe(1);
    } finally {
      rmSync(file, { force: true });
    }
  });
});

describe('selectiveScan on tfjs: errors', () => {
  const x = () => tf.ones([1, 2, 3]);
  const A = () => tf.neg(tf.ones([2, 4]));
  const BC = () => tf.ones([2, 4]);

  it('names the argument and what it expected', () => {
    const before = tf.memory().numTensors;
    const oursBefore = liveTensorCount();
    tf.tidy(() => {
      expectThrow(
        () => selectiveScan([1] as never, x(), A(), BC(), BC()),
        TypeError,
        /^selectiveScan: u must be a tf\.Tensor, got \[1\]/,
      );
      expectThrow(
        () => selectiveScan(x(), tf.ones([1, 2, 3], 'int32'), A(), BC(), BC()),
        TypeError,
        /^selectiveScan: delta must be float32, got int32/,
      );
      expectThrow(
        () => selectiveScan(x(), x(), A(), BC(), BC(), { D: 'x' as never }),
        TypeError,
        /^selectiveScan: D must be a tf\.Tensor/,
      );
      expectThrow(
        () => selectiveScan(x(), x(), A(), BC(), BC(), { saveForBackward: true } as never),
        TypeError,
        /^selectiveScan: unknown option 'saveForBackward'/,
      );
      expectThrow(
        () => selectiveScan(x(), x(), A(), BC(), BC(), { deltaSoftplus: 1 as never }),
        TypeError,
        /^selectiveScan: deltaSoftplus must be a boolean, got 1/,
      );
      expectThrow(
        () => selectiveScan(x(), x(), A(), BC(), BC(), { cuSeqlens: [0, 3] as never }),
        TypeError,
        /^selectiveScan: cuSeqlens must be an Int32Array, got \[0, 3\]/,
      );
      // Shapes are checked by the op itself, inside the kernel.
      expectThrow(
        () => selectiveScan(x(), x(), A(), BC(), BC(), { cuSeqlens: Int32Array.from([0, 4]) }),
        RangeError,
        /^selectiveScan: cuSeqlens must end at L=3, got 4/,
      );
      expectThrow(
        () => selectiveScan(x(), x(), A(), tf.ones([1, 4, 2]), BC()),
        RangeError,
        /^selectiveScan: B must have shape .*got \[1, 4, 2\]/,
      );
      const disposed = x();
      disposed.dispose();
      expectCode(
        () => selectiveScan(x(), disposed, A(), BC(), BC()),
        'ERR_DISPOSED',
        /^selectiveScan: delta was disposed/,
      );
    });
    expect(tf.memory().numTensors).toBe(before);
    expect(liveTensorCount(), 'selective-scan tensors left by the failed calls').toBe(oursBefore);
  });

  it('says which backends it supports when used on another', async () => {
    const { MathBackendCPU } = await import('@tensorflow/tfjs-backend-cpu');
    tf.registerBackend('not-supported', () => new MathBackendCPU());
    const inputs = [x(), x(), A(), BC(), BC()] as const;
    await tf.setBackend('not-supported');
    try {
      expectThrow(
        () => selectiveScan(...inputs),
        Error,
        /^selectiveScan: the tfjs backend 'not-supported' is not supported; selective-scan\/tfjs runs on 'cpu' and 'wasm'/,
      );
    } finally {
      await tf.setBackend('cpu');
      tf.removeBackend('not-supported');
      tf.dispose([...inputs]);
    }
  });
});

// ---- causalConv1d ------------------------------------------------------------------------------

interface TfConvCase {
  ref: ConvRefInputs;
  dout: Float64Array;
  dFinalState: Float64Array;
}

function tfConvCase(
  seed: number,
  spec: { batch: number; dim: number; L: number; W: number; cuSeqlens?: number[] },
): TfConvCase {
  const rng = new Rng(seed);
  const f32 = (n: number) => Float64Array.from(rng.normalArray(n), Math.fround);
  const { batch, dim, L, W } = spec;
  const ref: ConvRefInputs = {
    batch,
    dim,
    L,
    W,
    x: f32(batch * dim * L),
    weight: f32(dim * W),
    bias: f32(dim),
    silu: true,
  };
  if (spec.cuSeqlens) ref.cuSeqlens = Int32Array.from(spec.cuSeqlens);
  const rows = convStateRows(ref);
  ref.initialState = f32(rows * dim * (W - 1));
  return { ref, dout: f32(batch * dim * L), dFinalState: f32(rows * dim * (W - 1)) };
}

describe.each(SUPPORTED_BACKENDS)('causalConv1d on the tfjs %s backend', (backend) => {
  beforeAll(async () => {
    expect(await tf.setBackend(backend)).toBe(true);
  });
  afterAll(async () => {
    await tf.setBackend('cpu');
  });

  const cases = [
    tfConvCase(1601, { batch: 2, dim: 3, L: 9, W: 4 }),
    tfConvCase(1602, { batch: 2, dim: 3, L: 2, W: 5 }), // L < W - 1
    tfConvCase(1603, { batch: 1, dim: 2, L: 12, W: 3, cuSeqlens: [0, 4, 4, 12] }),
  ];
  it.each(cases.map((c) => [`L ${c.ref.L} W ${c.ref.W}${c.ref.cuSeqlens ? ' cuSeqlens' : ''}`, c] as const))(
    'out, finalState and every gradient (through tf.grads) equal the reference: %s',
    (_, c) => {
      const before = tf.memory().numTensors;
      const oursBefore = liveTensorCount();
      const { batch, dim, L, W, cuSeqlens } = c.ref;
      const rows = convStateRows(c.ref);
      const t = (values: Float64Array, shape: number[]) => tf.tensor(Float32Array.from(values), shape);
      const inputs = [
        t(c.ref.x, [batch, dim, L]),
        t(c.ref.weight, [dim, W]),
        t(c.ref.bias!, [dim]),
        t(c.ref.initialState!, [rows, dim, W - 1]),
      ];
      const dout = t(c.dout, [batch, dim, L]);
      const dFinalState = t(c.dFinalState, [rows, dim, W - 1]);
      const run = (x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor, initialState: tf.Tensor) =>
        causalConv1d(x, weight, { bias, initialState, activation: 'silu', returnFinalState: true, cuSeqlens });
      const forward = run(...(inputs as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]));
      // loss = sum(out * dout) + sum(finalState * dFinalState): its gradients are the backward's given dout, dFinalState.
      const grads = tf.grads((x, weight, bias, initialState) => {
        const r = run(x!, weight!, bias!, initialState!);
        return tf.add(tf.sum(tf.mul(r.out, dout)), tf.sum(tf.mul(r.finalState!, dFinalState)));
      })(inputs);
      const fwd = convRef(c.ref);
      const ref = convRefBackward(c.ref, c.dout, c.dFinalState);
      expectRelClose(forward.out.dataSync(), fwd.out, 1e-5, 'out');
      expect(Array.from(forward.finalState!.dataSync())).toEqual(Array.from(fwd.finalState));
      const names = ['dx', 'dweight', 'dbias', 'dInitialState'] as const;
      names.forEach((name, i) => {
        expectRelClose(grads[i]!.dataSync(), ref[name], 1e-4, name);
      });
      tf.dispose([...inputs, dout, dFinalState, forward.out, forward.finalState, ...grads]);
      expect(tf.memory().numTensors).toBe(before);
      expect(liveTensorCount()).toBe(oursBefore);
    },
  );
});

describe('training through causalConv1d', () => {
  it('an optimizer fits a convolution to a teacher, without leaking tfjs tensors or ours', () => {
    const rng = new Rng(1611);
    const [batch, dim, L, W] = [2, 4, 24, 4];
    const normal = (shape: number[]) =>
      tf.tensor(Float32Array.from(rng.normalArray(shape.reduce((a, b) => a * b))), shape);
    const x = normal([batch, dim, L]);
    const [teacherWeight, teacherBias] = [normal([dim, W]), normal([dim])];
    const target = causalConv1d(x, teacherWeight, { bias: teacherBias, activation: 'silu' }).out;
    const weight = tf.variable(tf.zeros([dim, W]));
    const bias = tf.variable(tf.zeros([dim]));
    const optimizer = tf.train.adam(0.05);
    const lossOf = () =>
      tf.mean(tf.squaredDifference(causalConv1d(x, weight, { bias, activation: 'silu' }).out, target)) as tf.Scalar;
    const first = tf.tidy(() => lossOf().dataSync()[0]!);
    const step = () => optimizer.minimize(lossOf, true)!.dispose();
    step();
    const after1 = tf.memory().numTensors;
    const ours = liveTensorCount();
    for (let i = 1; i < 200; i++) step();
    const last = tf.tidy(() => lossOf().dataSync()[0]!);
    expect(last).toBeLessThan(first * 0.05);
    expect(tf.memory().numTensors).toBe(after1);
    expect(liveTensorCount()).toBe(ours);
    tf.dispose([x, teacherWeight, teacherBias, target, weight, bias]);
    optimizer.dispose();
  });
});

describe('causalConv1d on tfjs: errors', () => {
  it('names the argument and what it expected', () => {
    const before = tf.memory().numTensors;
    const oursBefore = liveTensorCount();
    tf.tidy(() => {
      const x = tf.ones([1, 2, 6]);
      const weight = tf.ones([2, 3]);
      expectThrow(
        () => causalConv1d([1] as never, weight),
        TypeError,
        /^causalConv1d: x must be a tf\.Tensor, got \[1\]/,
      );
      expectThrow(
        () => causalConv1d(x, weight, { bias: 'b' as never }),
        TypeError,
        /^causalConv1d: bias must be a tf\.Tensor/,
      );
      expectThrow(
        () => causalConv1d(x, weight, { activation: 'relu' as never }),
        TypeError,
        /^causalConv1d: activation must be 'silu' or undefined, got 'relu'/,
      );
      expectThrow(
        () => causalConv1d(x, weight, { cuSeqlens: [0, 6] as never }),
        TypeError,
        /^causalConv1d: cuSeqlens must be an Int32Array/,
      );
      expectThrow(
        () => causalConv1d(x, weight, { saveForBackward: true } as never),
        TypeError,
        /^causalConv1d: unknown option 'saveForBackward'/,
      );
      // Shapes and packings are checked by the op itself, inside the kernel.
      expectThrow(
        () => causalConv1d(x, tf.ones([3, 3])),
        RangeError,
        /^causalConv1d: weight must have shape \[dim=2, W\]/,
      );
      expectThrow(
        () => causalConv1d(x, weight, { cuSeqlens: Int32Array.from([0, 7]) }),
        RangeError,
        /^causalConv1d: cuSeqlens must end at L=6, got 7/,
      );
    });
    expect(tf.memory().numTensors).toBe(before);
    expect(liveTensorCount()).toBe(oursBefore);
  });
});
