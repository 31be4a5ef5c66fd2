// The GPU suite: every op on 'cuda' against the CPU backend (and the float64 reference) over the
// option grid and the dtypes; L not a multiple of the chunk, L = 1, N = 256; a tensor of more than
// 2^31 elements; deterministic backward; alloc/free cycles; async data(); cuda.synchronize().
// Skipped, with the reason in the title, where CUDA is unavailable.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import {
  Tensor,
  causalConv1d,
  causalConv1dBackward,
  causalConv1dUpdate,
  cuda,
  selectiveScan,
  selectiveScanBackward,
  selectiveStateUpdate,
  ssdScan,
  ssdScanBackward,
} from './helpers/api.js';
import {
  type ConvRefInputs,
  convRef,
  convRefBackward,
  convStateRows,
  convUpdateRef,
} from './helpers/conv-reference.js';
import { FIXED, VARYING, grouped, makeScanCase, specName, type ScanCaseSpec } from './helpers/cases.js';
import { expectCode } from './helpers/expect-code.js';
import { Rng } from './helpers/random.js';
import { halfBits, relErr, roundArray, scanRef, type AnyDType } from './helpers/reference.js';
import { expectBitsEqual, expectRelClose, runAddon, tensor, tolerances, type DeviceName } from './helpers/run.js';
import { makeStepCase, type StepCase, type StepCaseSpec } from './helpers/stepcase.js';

const AVAILABLE = cuda.isAvailable();
const TITLE = AVAILABLE ? 'CUDA backend' : `CUDA backend (skipped: ${cuda.unavailableReason})`;
if (!AVAILABLE) console.warn(`GPU tests skipped: ${cuda.unavailableReason}`);
const ALL = {
  D: true,
  z: true,
  deltaBias: true,
  softplus: true,
  initialState: true,
  lastState: true,
  dLastState: true,
};

/** Equal values bit for bit, except that any NaN equals any NaN (payloads may differ by device). */
function expectSameValues(a: Float32Array, b: Float32Array, what: string): void {
  expect(a.length, what).toBe(b.length);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < a.length; i++) {
    if (ua[i] === ub[i] || (Number.isNaN(a[i]) && Number.isNaN(b[i]))) continue;
    expect(`${a[i]}`, `${what}: element ${i}`).toBe(`${b[i]}`);
  }
}

/** 16-bit patterns equal, any NaN equal to any NaN. */
function expectSameBits(a: Uint16Array, b: Uint16Array, dtype: 'float16' | 'bfloat16', what: string): void {
  expect(a.length, what).toBe(b.length);
  const isNaN16 = (x: number) =>
    dtype === 'float16' ? (x & 0x7c00) === 0x7c00 && (x & 0x3ff) !== 0 : (x & 0x7f80) === 0x7f80 && (x & 0x7f) !== 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i] || (isNaN16(a[i]) && isNaN16(b[i]))) continue;
    expect(a[i].toString(16), `${what}: element ${i}`).toBe(b[i].toString(16));
  }
}

/** Device memory in use (MiB): of this process when nvidia-smi lists it, else of the whole GPU. */
function memoryInUseMiB(): { used: number; perProcess: boolean } | null {
  try {
    const apps = execFileSync('nvidia-smi', ['--query-compute-apps=pid,used_memory', '--format=csv,noheader,nounits'], {
      encoding: 'utf8',
      timeout: 10000,
    });
    for (const line of apps.trim().split('\n')) {
      const [pid, used] = line.split(',').map((x) => Number(x.trim()));
      if (pid === process.pid && Number.isFinite(used)) return { used, perProcess: true };
    }
  } catch {
    // fall through
  }
  const m = gpuMemoryMiB();
  return m ? { used: m.used, perProcess: false } : null;
}

/** Free and used memory of GPU 0 in MiB from nvidia-smi, or null when it cannot be asked. */
function gpuMemoryMiB(): { free: number; used: number } | null {
  try {
    const out = execFileSync(
      'nvidia-smi',
      ['--query-gpu=memory.free,memory.used', '--format=csv,noheader,nounits', '-i', '0'],
      { encoding: 'utf8', timeout: 10000 },
    );
    const [free, used] = out
      .trim()
      .split(',')
      .map((s) => Number(s.trim()));
    return Number.isFinite(free) && Number.isFinite(used) ? { free, used } : null;
  } catch {
    return null;
  }
}

const GRID: ScanCaseSpec[] = [
  { batch: 2, dim: 4, L: 1, N: 1, seed: 701 },
  { batch: 2, dim: 8, L: 300, N: 16, B: VARYING, C: VARYING, D: true, z: true, seed: 702 },
  { batch: 2, dim: 8, L: 700, N: 16, B: grouped(2), C: FIXED, deltaBias: true, softplus: true, seed: 703 },
  {
    batch: 2,
    dim: 4,
    L: 2049,
    N: 33,
    B: FIXED,
    C: grouped(4),
    initialState: true,
    lastState: true,
    dLastState: true,
    seed: 704,
  },
  { batch: 2, dim: 4, L: 4100, N: 16, B: grouped(1), C: VARYING, ...ALL, seed: 705 },
  { batch: 1, dim: 4, L: 300, N: 256, B: VARYING, C: grouped(2), ...ALL, seed: 706 },
  { batch: 3, dim: 8, L: 1, N: 16, B: grouped(8), C: grouped(2), ...ALL, seed: 707 },
  {
    batch: 2,
    dim: 4,
    L: 64,
    N: 16,
    B: VARYING,
    C: FIXED,
    D: true,
    z: true,
    initialState: true,
    lastState: true,
    dLastState: true,
    Apositive: true,
    seed: 708,
  },
  { batch: 2, dim: 4, L: 129, N: 4, B: grouped(2), C: VARYING, D: true, softplus: true, bigDelta: true, seed: 709 },
  { batch: 4, dim: 64, L: 2048, N: 16, B: grouped(4), C: grouped(4), ...ALL, seed: 710 },
];
const HALF_GRID: ScanCaseSpec[] = [
  { batch: 2, dim: 4, L: 1, N: 16, B: VARYING, C: FIXED, ...ALL, seed: 721 },
  { batch: 2, dim: 8, L: 300, N: 16, B: grouped(2), C: VARYING, D: true, z: true, softplus: true, seed: 722 },
  {
    batch: 2,
    dim: 4,
    L: 2100,
    N: 33,
    B: FIXED,
    C: grouped(4),
    deltaBias: true,
    initialState: true,
    lastState: true,
    dLastState: true,
    seed: 723,
  },
  { batch: 1, dim: 2, L: 300, N: 256, B: VARYING, C: VARYING, ...ALL, seed: 724 },
];

// Packed sequences: boundaries on chunk edges and inside chunks, empty sequences, every option.
const PACKED_GRID: ScanCaseSpec[] = [
  { batch: 1, dim: 8, L: 300, N: 16, B: VARYING, C: VARYING, ...ALL, cuSeqlens: [0, 0, 100, 101, 101, 300], seed: 731 },
  { batch: 1, dim: 4, L: 512, N: 8, B: FIXED, C: grouped(2), ...ALL, cuSeqlens: [0, 256, 300, 512], seed: 732 },
  {
    batch: 1,
    dim: 4,
    L: 1536,
    N: 16,
    B: VARYING,
    C: VARYING,
    dtype: 'bfloat16',
    ...ALL,
    cuSeqlens: [0, 512, 700, 700, 1024, 1536, 1536],
    seed: 733,
  },
  {
    batch: 1,
    dim: 8,
    L: 1536,
    N: 16,
    B: VARYING,
    C: grouped(4),
    dtype: 'float16',
    D: true,
    cuSeqlens: [0, 512, 1536],
    seed: 734,
  },
];

function compareGpuCpu(spec: ScanCaseSpec) {
  const c = makeScanCase(spec);
  const tol = tolerances(c.dtype);
  const gpu = runAddon(c, 'cuda');
  const cpu = runAddon(c, 'cpu');
  expect(gpu.outTensor).toBeInstanceOf(Tensor);
  expect(gpu.outTensor.device).toBe('cuda:0');
  expect(gpu.outTensor.dtype).toBe(c.dtype);
  expect([...gpu.outTensor.shape]).toEqual([...cpu.outTensor.shape]);
  expectRelClose(gpu.out, cpu.out, tol.fwd, 'out, GPU vs CPU');
  expectRelClose(gpu.out, scanRef(c.ref).out, tol.fwd, 'out, GPU vs reference');
  if (cpu.lastState) {
    expect(gpu.lastStateTensor!.device).toBe('cuda:0');
    expectRelClose(gpu.lastState!, cpu.lastState, tol.fwd, 'lastState, GPU vs CPU');
  } else {
    expect(gpu.lastState).toBeUndefined();
  }
  expect(Object.keys(gpu.grads).sort()).toEqual(Object.keys(cpu.grads).sort());
  for (const g of Object.keys(cpu.grads)) {
    const gt = gpu.gradTensors[g];
    expect(gt.device, g).toBe('cuda:0');
    expect(gt.dtype, g).toBe(cpu.gradTensors[g].dtype);
    expect([...gt.shape], g).toEqual([...cpu.gradTensors[g].shape]);
    expectRelClose(gpu.grads[g], cpu.grads[g], tol.grad, `${g}, GPU vs CPU`);
  }
}

function stepOn(c: StepCase, t: number, state: Tensor, device: DeviceName, idx?: Int32Array): Tensor {
  const s = c.spec;
  const o: Record<string, unknown> = {};
  if (c.D) o.D = tensor(c.D, c.shapes.D, 'float32', device);
  if (s.z) o.z = tensor(c.zs[t], c.shapes.x, c.dtype, device);
  if (c.dtBias) o.dtBias = tensor(c.dtBias, c.shapes.dtBias, 'float32', device);
  if (s.softplus) o.dtSoftplus = true;
  if (idx) o.stateBatchIndices = idx;
  return selectiveStateUpdate(
    state,
    tensor(c.xs[t], c.shapes.x, c.dtype, device),
    tensor(c.dts[t], c.shapes.dt, c.dtype, device),
    tensor(c.A, c.shapes.A, 'float32', device),
    tensor(c.Bs[t], c.shapes.B, c.dtype, device),
    tensor(c.Cs[t], c.shapes.B, c.dtype, device),
    o as never,
  );
}

/** causalConv1d then its backward on one device: out, finalState and every gradient, as float32. */
function convOn(
  ref: ConvRefInputs,
  dtype: AnyDType,
  dout: Float64Array,
  dFinalState: Float64Array | undefined,
  device: DeviceName,
  deterministic = false,
): Record<string, Float32Array> {
  const { batch, dim, L, W } = ref;
  const rows = convStateRows(ref);
  const { out, finalState, ctx } = causalConv1d(
    tensor(ref.x, [batch, dim, L], dtype, device),
    tensor(ref.weight, [dim, W], 'float32', device),
    {
      bias: ref.bias ? tensor(ref.bias, [dim], 'float32', device) : undefined,
      activation: ref.silu ? 'silu' : undefined,
      initialState: ref.initialState ? tensor(ref.initialState, [rows, dim, W - 1], dtype, device) : undefined,
      returnFinalState: dFinalState !== undefined,
      cuSeqlens: ref.cuSeqlens,
      saveForBackward: true,
    },
  );
  expect(out.device).toBe(device === 'cpu' ? 'cpu' : 'cuda:0');
  const g = causalConv1dBackward(ctx!, tensor(dout, [batch, dim, L], dtype, device), {
    dFinalState: dFinalState ? tensor(dFinalState, [rows, dim, W - 1], dtype, device) : undefined,
    deterministic,
  });
  const result: Record<string, Float32Array> = { out: out.dataSync() };
  if (finalState) result.finalState = finalState.dataSync();
  for (const [k, v] of Object.entries(g)) if (v) result[k] = (v as Tensor).dataSync();
  ctx!.dispose();
  return result;
}

interface SsdGpuSpec {
  dtype: AnyDType;
  b: number;
  L: number;
  H: number;
  P: number;
  G: number;
  N: number;
  cuSeqlens?: number[];
  dPerHead?: boolean;
  seed: number;
}

/** ssdScan + ssdScanBackward with every option on one device: values of the outputs and gradients. */
function runSsd(spec: SsdGpuSpec, device: DeviceName, deterministic = false): Record<string, Float32Array> {
  const { dtype, b, L, H, P, G, N } = spec;
  const rng = new Rng(spec.seed);
  const rows = spec.cuSeqlens ? spec.cuSeqlens.length - 1 : b;
  const f32 = (v: ArrayLike<number>, shape: number[]) => tensor(v, shape, 'float32', device);
  const io = (v: ArrayLike<number>, shape: number[]) => tensor(v, shape, dtype, device);
  const r = ssdScan(
    io(rng.normalArray(b * L * H * P), [b, L, H, P]),
    io(rng.uniformArray(b * L * H, -4, 1), [b, L, H]),
    f32(rng.uniformArray(H, -3, -0.3), [H]),
    io(rng.normalArray(b * L * G * N), [b, L, G, N]),
    io(rng.normalArray(b * L * G * N), [b, L, G, N]),
    {
      D: spec.dPerHead ? f32(rng.normalArray(H), [H]) : f32(rng.normalArray(H * P), [H, P]),
      z: io(rng.normalArray(b * L * H * P), [b, L, H, P]),
      dtBias: f32(rng.uniformArray(H, -1, 1), [H]),
      dtSoftplus: true,
      dtLimit: [0.02, 0.5],
      initialState: f32(rng.normalArray(rows * H * P * N), [rows, H, P, N]),
      returnLastState: true,
      saveForBackward: true,
      ...(spec.cuSeqlens ? { cuSeqlens: Int32Array.from(spec.cuSeqlens) } : {}),
    },
  );
  const grads = ssdScanBackward(r.ctx!, io(rng.normalArray(b * L * H * P), [b, L, H, P]), {
    dLastState: f32(rng.normalArray(rows * H * P * N), [rows, H, P, N]),
    deterministic,
  });
  const values: Record<string, Float32Array> = { out: r.out.dataSync(), lastState: r.lastState!.dataSync() };
  for (const [name, g] of Object.entries(grads)) {
    expect((g as Tensor).device, name).toBe(device === 'cuda' ? 'cuda:0' : 'cpu');
    values[name] = (g as Tensor).dataSync();
  }
  return values;
}

const SSD_GRID: SsdGpuSpec[] = [
  { dtype: 'float32', b: 2, L: 1, H: 4, P: 8, G: 2, N: 16, seed: 801 },
  { dtype: 'float32', b: 2, L: 777, H: 4, P: 64, G: 1, N: 128, seed: 802 },
  { dtype: 'float32', b: 1, L: 300, H: 8, P: 17, G: 4, N: 256, dPerHead: true, seed: 803 },
  { dtype: 'float32', b: 3, L: 129, H: 6, P: 3, G: 3, N: 3, seed: 804 },
  { dtype: 'float32', b: 1, L: 500, H: 4, P: 64, G: 2, N: 64, cuSeqlens: [0, 0, 100, 101, 101, 500], seed: 805 },
  { dtype: 'float16', b: 2, L: 400, H: 4, P: 64, G: 2, N: 64, seed: 806 },
  { dtype: 'bfloat16', b: 2, L: 400, H: 4, P: 64, G: 2, N: 64, seed: 807 },
];

function compareSsdGpuCpu(spec: SsdGpuSpec) {
  const tol = tolerances(spec.dtype);
  const gpu = runSsd(spec, 'cuda');
  const cpu = runSsd(spec, 'cpu');
  expect(Object.keys(gpu).sort()).toEqual(Object.keys(cpu).sort());
  for (const name of Object.keys(cpu)) {
    const t = name === 'out' || name === 'lastState' ? tol.fwd : tol.grad;
    expectRelClose(gpu[name], cpu[name], t, `${name}, GPU vs CPU`);
  }
}

describe.skipIf(!AVAILABLE)(TITLE, () => {
  describe('ssdScan + backward (recurrent form), GPU vs CPU', () => {
    for (const spec of SSD_GRID) it(JSON.stringify(spec), () => compareSsdGpuCpu(spec), 120000);
    it('deterministic: true ssdScanBackward on the GPU is bit-identical on repeat', () => {
      const spec = SSD_GRID[1]!;
      const runs = [0, 1].map(() => runSsd(spec, 'cuda', true));
      for (const name of Object.keys(runs[0]!)) expectBitsEqual(runs[1]![name]!, runs[0]![name]!, name);
    }, 120000);
  });

  describe('selectiveScan + backward, GPU vs CPU, float32', () => {
    for (const spec of GRID) it(specName(spec), () => compareGpuCpu(spec), 60000);
  });

  describe('selectiveScan + backward with cuSeqlens, GPU vs CPU', () => {
    for (const spec of PACKED_GRID) it(specName(spec), () => compareGpuCpu(spec), 60000);
  });

  for (const dtype of ['float16', 'bfloat16'] as const) {
    describe(`selectiveScan + backward, GPU vs CPU, ${dtype}`, () => {
      for (const s of HALF_GRID) {
        const spec = { ...s, dtype, seed: s.seed + (dtype === 'float16' ? 0 : 50) };
        it(specName(spec), () => compareGpuCpu(spec), 60000);
      }
    });
  }

  describe('selectiveStateUpdate, GPU vs CPU', () => {
    const forms: StepCaseSpec[] = [
      {
        form: 'channels',
        batch: 3,
        H: 8,
        P: 1,
        N: 16,
        L: 5,
        G: null,
        D: 'channel',
        z: true,
        dtBias: true,
        softplus: true,
        seed: 731,
      },
      { form: 'channels', batch: 2, H: 8, P: 1, N: 256, L: 3, G: 4, seed: 732 },
      {
        form: 'heads',
        batch: 2,
        H: 4,
        P: 8,
        N: 16,
        L: 5,
        G: 2,
        D: 'channel',
        z: true,
        dtBias: true,
        softplus: true,
        seed: 733,
      },
      {
        form: 'headsScalar',
        batch: 2,
        H: 4,
        P: 8,
        N: 64,
        L: 5,
        G: 4,
        D: 'head',
        z: true,
        dtBias: true,
        softplus: true,
        seed: 734,
      },
      // The Mamba-2 decoding shape in small (one scalar per head, N = 128: 8 lanes per row, 16-byte
      // state chunks), and N = 17, which takes the element-wise kernel with a partial last chunk.
      {
        form: 'headsScalar',
        batch: 3,
        H: 4,
        P: 16,
        N: 128,
        L: 4,
        G: 2,
        D: 'head',
        z: true,
        dtBias: true,
        softplus: true,
        seed: 737,
      },
      { form: 'heads', batch: 2, H: 3, P: 4, N: 17, L: 3, G: 3, D: 'channel', z: true, dtBias: true, seed: 738 },
    ];
    for (const base of forms) {
      for (const dtype of ['float32', 'float16', 'bfloat16'] as AnyDType[]) {
        const spec = { ...base, dtype };
        it(`${dtype} ${spec.form} N ${spec.N} G ${spec.G ?? '(batch, N)'}`, () => {
          const c = makeStepCase(spec);
          const tol = tolerances(dtype);
          const sg = tensor(c.init, c.shapes.state, 'float32', 'cuda');
          const sc = tensor(c.init, c.shapes.state, 'float32', 'cpu');
          for (let t = 0; t < spec.L; t++) {
            const yg = stepOn(c, t, sg, 'cuda');
            expect(yg.device).toBe('cuda:0');
            expect(yg.dtype).toBe(dtype);
            const yc = stepOn(c, t, sc, 'cpu');
            expectRelClose(yg.dataSync(), yc.dataSync(), tol.fwd, `y at step ${t}`);
          }
          expectRelClose(sg.dataSync(), sc.dataSync(), tol.fwd, 'state');
          expectRelClose(sg.dataSync(), scanRef(c.scan).lastState, tol.fwd, 'state vs reference');
        });
      }
    }

    it('stateBatchIndices on the GPU: permuted slots, padding rows, untouched slots; bad indices leave state unchanged', () => {
      const c = makeStepCase({
        form: 'heads',
        batch: 3,
        H: 2,
        P: 4,
        N: 16,
        L: 1,
        G: 1,
        D: 'channel',
        z: true,
        seed: 735,
      });
      const slots = 6;
      const dimN = c.dim * c.spec.N;
      const rng = new Rng(736);
      const cache = rng.normalArray(slots * dimN);
      const shape = [slots, ...c.shapes.state.slice(1)];
      const idx = Int32Array.from([5, -1, 2]);
      const sg = tensor(cache, shape, 'float32', 'cuda');
      const sc = tensor(cache, shape, 'float32', 'cpu');
      const yg = stepOn(c, 0, sg, 'cuda', idx).dataSync();
      const yc = stepOn(c, 0, sc, 'cpu', idx).dataSync();
      expectRelClose(yg, yc, 1e-5, 'y');
      for (let d = 0; d < c.dim; d++) expect(yg[c.dim + d]).toBe(0);
      const g = sg.dataSync();
      expectRelClose(g, sc.dataSync(), 1e-5, 'state');
      for (const s of [0, 1, 3, 4]) {
        expectBitsEqual(
          g.slice(s * dimN, (s + 1) * dimN),
          Float32Array.from(cache.subarray(s * dimN, (s + 1) * dimN)),
          `slot ${s}`,
        );
      }
      const before = sg.dataSync().slice();
      expect(() => stepOn(c, 0, sg, 'cuda', Int32Array.from([1, 1, 2]))).toThrow(RangeError);
      expect(() => stepOn(c, 0, sg, 'cuda', Int32Array.from([1, 6, 2]))).toThrow(RangeError);
      expectBitsEqual(sg.dataSync(), before, 'state after failed calls');
    });

    it('stateBatchIndices over many calls: the pinned staging slots are reused only once their copies are done', () => {
      // More calls than the ring has slots (8), each with other indices, queued without waiting.
      const c = makeStepCase({ form: 'channels', batch: 4, H: 8, P: 1, N: 16, L: 1, G: null, seed: 739 });
      const slots = 7;
      const dimN = c.dim * c.spec.N;
      const rng = new Rng(740);
      const cache = rng.normalArray(slots * dimN);
      const shape = [slots, ...c.shapes.state.slice(1)];
      const sg = tensor(cache, shape, 'float32', 'cuda');
      const sc = tensor(cache, shape, 'float32', 'cpu');
      const ys: Array<[Tensor, Tensor]> = [];
      for (let call = 0; call < 20; call++) {
        const order = [0, 1, 2, 3, 4, 5, 6];
        for (let i = order.length - 1; i > 0; i--) {
          const j = Math.floor(rng.uniform(0, i + 1));
          [order[i], order[j]] = [order[j], order[i]];
        }
        const idx = Int32Array.from(order.slice(0, 4).map((s, i) => (i === call % 4 ? -1 : s)));
        ys.push([stepOn(c, 0, sg, 'cuda', idx), stepOn(c, 0, sc, 'cpu', idx)]);
      }
      for (const [call, [yg, yc]] of ys.entries())
        expectRelClose(yg.dataSync(), yc.dataSync(), 1e-5, `y of call ${call}`);
      expectRelClose(sg.dataSync(), sc.dataSync(), 1e-5, 'state after 20 calls');
    });
  });

  describe('causalConv1dUpdate, GPU vs CPU and the reference', () => {
    // W 1..8 with the options cycling; stateBatchIndices with permuted slots and a padding row.
    for (const dtype of ['float32', 'float16', 'bfloat16'] as AnyDType[])
      for (const W of [1, 2, 3, 4, 5, 8]) {
        const bias = W % 2 === 0;
        const silu = W !== 3;
        const withIndices = W >= 4;
        it(`${dtype} W ${W}${bias ? ' bias' : ''}${silu ? ' silu' : ''}${withIndices ? ' stateBatchIndices' : ''}`, () => {
          const rng = new Rng(2000 + W);
          const [batch, dim] = [3, 1029];
          const slots = withIndices ? 5 : batch;
          const indices = withIndices ? Int32Array.from([4, -1, 1]) : undefined;
          const state0 = roundArray(rng.normalArray(slots * dim * (W - 1)), dtype);
          const weight = roundArray(rng.normalArray(dim * W), 'float32');
          const b = bias ? roundArray(rng.normalArray(dim), 'float32') : undefined;
          const states = {
            cuda: tensor(state0, [slots, dim, W - 1], dtype, 'cuda'),
            cpu: tensor(state0, [slots, dim, W - 1], dtype, 'cpu'),
          };
          const refState = Float64Array.from(state0);
          for (let step = 0; step < 3; step++) {
            const x = roundArray(rng.normalArray(batch * dim), dtype);
            const outs = (['cuda', 'cpu'] as const).map((device) =>
              causalConv1dUpdate(
                states[device],
                tensor(x, [batch, dim], dtype, device),
                tensor(weight, [dim, W], 'float32', device),
                {
                  bias: b ? tensor(b, [dim], 'float32', device) : undefined,
                  activation: silu ? 'silu' : undefined,
                  stateBatchIndices: indices,
                },
              ),
            );
            expect(outs[0].device).toBe('cuda:0');
            expect(outs[0].dtype).toBe(dtype);
            const got = outs[0].dataSync();
            expectRelClose(got, outs[1].dataSync(), tolerances(dtype).fwd, `out at step ${step}, GPU vs CPU`);
            const ref = convUpdateRef(refState, x, weight, batch, dim, W, {
              bias: b,
              silu,
              stateBatchIndices: indices,
            });
            expectRelClose(got, ref, tolerances(dtype).fwd, `out at step ${step}, GPU vs reference`);
            if (indices) for (let d = 0; d < dim; d++) expect(got[dim + d]).toBe(0);
          }
          // The state holds copies of inputs: the CPU's and the reference's values exactly.
          expect(Array.from(states.cuda.dataSync())).toEqual(Array.from(refState));
          expect(Array.from(states.cuda.dataSync())).toEqual(Array.from(states.cpu.dataSync()));
        });
      }
  });

  describe('causalConv1d + backward, GPU vs CPU and the reference', () => {
    const specs = [
      { W: 4, batch: 2, dim: 24, L: 2100, all: true },
      { W: 8, batch: 3, dim: 40, L: 5, all: true }, // L < W - 1: the states reach across the sequence
      { W: 1, batch: 2, dim: 16, L: 1024, all: false },
      { W: 4, batch: 1, dim: 32, L: 300, all: true, cuSeqlens: [0, 0, 2, 2, 150, 151, 300, 300] },
    ];
    for (const dtype of ['float32', 'float16', 'bfloat16'] as AnyDType[])
      for (const [i, spec] of specs.entries()) {
        it(`${dtype} W ${spec.W} L ${spec.L}${spec.all ? ' bias silu initialState finalState' : ''}${spec.cuSeqlens ? ' cuSeqlens' : ''}`, () => {
          const rng = new Rng(3100 + i);
          const { W, batch, dim, L } = spec;
          const ref: ConvRefInputs = {
            batch,
            dim,
            L,
            W,
            x: roundArray(rng.normalArray(batch * dim * L), dtype),
            weight: roundArray(rng.normalArray(dim * W), 'float32'),
            silu: spec.all,
          };
          if (spec.cuSeqlens) ref.cuSeqlens = Int32Array.from(spec.cuSeqlens);
          const stateSize = convStateRows(ref) * dim * (W - 1);
          if (spec.all) {
            ref.bias = roundArray(rng.normalArray(dim), 'float32');
            ref.initialState = roundArray(rng.normalArray(stateSize), dtype);
          }
          const dout = roundArray(rng.normalArray(batch * dim * L), dtype);
          const dFinal = spec.all ? roundArray(rng.normalArray(stateSize), dtype) : undefined;
          const gpu = convOn(ref, dtype, dout, dFinal, 'cuda');
          const cpu = convOn(ref, dtype, dout, dFinal, 'cpu');
          const fwd = convRef(ref);
          const bwd = convRefBackward(ref, dout, dFinal);
          const tol = tolerances(dtype);
          expect(Object.keys(gpu).sort()).toEqual(Object.keys(cpu).sort());
          expectRelClose(gpu.out, cpu.out, tol.fwd, 'out, GPU vs CPU');
          expectRelClose(gpu.out, fwd.out, tol.fwd, 'out, GPU vs reference');
          if (gpu.finalState) expect(Array.from(gpu.finalState)).toEqual(Array.from(fwd.finalState));
          for (const [k, want] of Object.entries({
            dx: bwd.dx,
            dweight: bwd.dweight,
            dbias: bwd.dbias,
            dInitialState: bwd.dInitialState,
          })) {
            if (!gpu[k]) continue;
            expectRelClose(gpu[k], cpu[k], tol.grad, `${k}, GPU vs CPU`);
            expectRelClose(gpu[k], want, tol.grad, `${k}, GPU vs reference`);
          }
          // One path: the partials are always reduced in a fixed order.
          const det = convOn(ref, dtype, dout, dFinal, 'cuda', true);
          for (const k of Object.keys(gpu)) expectSameValues(det[k], gpu[k], `${k}: deterministic vs default`);
        });
      }
  });

  describe('determinism', () => {
    it('deterministic: true backward on the GPU is bit-identical on repeat', () => {
      const c = makeScanCase({ batch: 4, dim: 64, L: 3000, N: 16, B: grouped(2), C: VARYING, ...ALL, seed: 741 });
      const runs = [0, 1, 2].map(() => runAddon(c, 'cuda', { deterministic: true }));
      for (const k of [1, 2]) {
        expectBitsEqual(runs[k].out, runs[0].out, `out run ${k}`);
        for (const g of Object.keys(runs[0].grads))
          expectBitsEqual(runs[k].grads[g], runs[0].grads[g], `${g} run ${k}`);
      }
      const cpu = runAddon(c, 'cpu');
      for (const g of Object.keys(cpu.grads)) expectRelClose(runs[0].grads[g], cpu.grads[g], 1e-4, `${g} vs CPU`);
    }, 120000);

    it('deterministic: true also holds for a fixed B and C (reductions over batch and time)', () => {
      const c = makeScanCase({
        batch: 8,
        dim: 32,
        L: 2500,
        N: 16,
        B: FIXED,
        C: FIXED,
        D: true,
        deltaBias: true,
        softplus: true,
        seed: 742,
      });
      const a = runAddon(c, 'cuda', { deterministic: true });
      const b = runAddon(c, 'cuda', { deterministic: true });
      for (const g of Object.keys(a.grads)) expectBitsEqual(b.grads[g], a.grads[g], g);
    }, 120000);
  });

  describe('tensors on the GPU', () => {
    it('from / to / dataSync round-trip exactly in every dtype, and 16-bit rounding matches the CPU bit for bit', () => {
      const rng = new Rng(751);
      const vals = Array.from({ length: 4099 }, () => rng.normal(0, 1000));
      vals.push(65520, 1 + 2 ** -11 + 2 ** -40, 2 ** -25, -0, NaN, Infinity);
      for (const dtype of ['float32', 'float16', 'bfloat16'] as const) {
        const g = Tensor.from(vals, [vals.length], { dtype, device: 'cuda' });
        expect(g.device).toBe('cuda:0');
        const c = Tensor.from(vals, [vals.length], { dtype });
        expectSameValues(g.dataSync(), c.dataSync(), `${dtype} values`);
        const back = g.to('cpu');
        expect(back.device).toBe('cpu');
        expectSameValues(back.dataSync(), c.dataSync(), `${dtype} to('cpu')`);
        if (dtype !== 'float32') {
          expectSameBits(g.bits(), c.bits(), dtype, `${dtype} bits`);
          expect(g.bits()[vals.length - 6]).toBe(halfBits(65520, dtype));
          expect(g.bits()[vals.length - 5]).toBe(halfBits(1 + 2 ** -11 + 2 ** -40, dtype));
        }
        expectSameValues(c.to('cuda').dataSync(), c.dataSync(), `${dtype} to('cuda')`);
      }
      // dtype conversion on the device agrees with the CPU
      const g32 = Tensor.from(vals, [vals.length], { device: 'cuda' });
      for (const dtype of ['float16', 'bfloat16'] as const) {
        expectSameBits(
          g32.to({ dtype }).bits(),
          Tensor.from(vals, [vals.length]).to({ dtype }).bits(),
          dtype,
          `float32 -> ${dtype} on the device`,
        );
      }
    });

    it('fromDevicePointer wraps device memory without copying; misaligned pointers are RangeErrors', () => {
      const base = Tensor.from(
        Array.from({ length: 64 }, (_, i) => i),
        [64],
        { device: 'cuda' },
      );
      const ptr = base.devicePointer;
      expect(typeof ptr).toBe('bigint');
      expect(ptr % 16n).toBe(0n);
      const view = Tensor.fromDevicePointer(ptr, [8, 8], { dtype: 'float32', device: 'cuda', owner: base });
      expect([...view.shape]).toEqual([8, 8]);
      expect(Array.from(view.dataSync())).toEqual(Array.from({ length: 64 }, (_, i) => i));
      const tail = Tensor.fromDevicePointer(ptr + 16n, [60], { dtype: 'float32', device: 'cuda', owner: base });
      expect(tail.dataSync()[0]).toBe(4);
      expect(() => Tensor.fromDevicePointer(ptr + 4n, [4], { dtype: 'float32', device: 'cuda', owner: base })).toThrow(
        RangeError,
      );
      view.dispose(); // never frees the wrapped memory
      expect(base.dataSync()[63]).toBe(63);
    });

    it('disposed CUDA tensors throw ERR_DISPOSED', () => {
      const t = Tensor.zeros([4], { device: 'cuda' });
      t.dispose();
      expect(t.isDisposed).toBe(true);
      expectCode(() => t.dataSync(), 'ERR_DISPOSED');
    });

    it('10,000 alloc/free cycles leave device memory flat', async () => {
      // docs/API.md offers no memory figure: device memory in use is read with nvidia-smi where it exists
      // (this process's use when listed: within 64 MiB; else the whole GPU's, which other test
      // processes may change a little: within 1 GiB, against 10 GiB for a leak of each 1 MiB buffer);
      // otherwise the test only checks that the cycles neither throw nor fault (synchronize resolves).
      const cycle = (n: number) => {
        for (let i = 0; i < n; i++) {
          const a = Tensor.zeros([256, 1024], { device: 'cuda' }); // 1 MiB
          const b = Tensor.from([i, i + 1, i + 2, i + 3], [4], { dtype: 'bfloat16', device: 'cuda' });
          a.dispose();
          b[Symbol.dispose]();
        }
      };
      cycle(200);
      await cuda.synchronize();
      const before = memoryInUseMiB();
      const poolBefore = cuda.memoryInfo();
      cycle(10000);
      await cuda.synchronize();
      const after = memoryInUseMiB();
      const poolAfter = cuda.memoryInfo();
      // The memory pool's own figures: nothing stays allocated, and the pool does not grow.
      expect(poolAfter.allocatedBytes).toBe(poolBefore.allocatedBytes);
      expect(poolAfter.reservedBytes - poolBefore.reservedBytes).toBeLessThanOrEqual(4 << 20);
      if (before && after && before.perProcess === after.perProcess) {
        const limit = after.perProcess ? 64 : 1024;
        expect(after.used - before.used, `device memory grew from ${before.used} to ${after.used} MiB`).toBeLessThan(
          limit,
        );
      }
      const probe = Tensor.from([1, 2, 3], [3], { device: 'cuda' });
      expect(Array.from(await probe.data())).toEqual([1, 2, 3]);
    }, 120000);
  });

  describe('asynchrony', () => {
    it('data() resolves to the dataSync() values without blocking the event loop while work is queued', async () => {
      const c = makeScanCase({
        batch: 8,
        dim: 256,
        L: 4096,
        N: 16,
        dtype: 'bfloat16',
        B: grouped(4),
        C: grouped(4),
        D: true,
        softplus: true,
        seed: 761,
      });
      // inputs once on the device
      const r = c.ref;
      const dev = 'cuda' as const;
      const u = tensor(r.u, [8, 256, 4096], 'bfloat16', dev);
      const delta = tensor(r.delta, [8, 256, 4096], 'bfloat16', dev);
      const A = tensor(r.A, [256, 16], 'float32', dev);
      const B = tensor(r.B, [8, 4, 16, 4096], 'bfloat16', dev);
      const C = tensor(r.C, [8, 4, 16, 4096], 'bfloat16', dev);
      const D = tensor(r.D!, [256], 'float32', dev);
      await cuda.synchronize();
      let ticks = 0;
      const timer = setInterval(() => ticks++, 1);
      const t0 = performance.now();
      let out: Tensor | undefined;
      for (let k = 0; k < 100; k++) {
        out?.dispose();
        out = selectiveScan(u, delta, A, B, C, { D, deltaSoftplus: true }).out;
      }
      const queued = performance.now() - t0;
      const p = out!.data();
      const syncPart = performance.now() - t0;
      expect(p).toBeInstanceOf(Promise);
      const values = await p;
      const total = performance.now() - t0;
      clearInterval(timer);
      expect(Array.from(values.subarray(0, 1000))).toEqual(Array.from(out!.dataSync().subarray(0, 1000)));
      expect(values.length).toBe(8 * 256 * 4096);
      // queuing returns at once; data() itself does not wait for the GPU on the main thread
      if (total > 100) {
        expect(
          syncPart / total,
          `queued ${queued.toFixed(1)} ms, data() call ${syncPart.toFixed(1)} ms of ${total.toFixed(1)} ms`,
        ).toBeLessThan(0.5);
        expect(ticks).toBeGreaterThan(0);
      }
      // and the values are right (a few rows against the reference computed row by row would be slow:
      // compare against the CPU backend on the same inputs)
      const cpu = selectiveScan(u.to('cpu'), delta.to('cpu'), A.to('cpu'), B.to('cpu'), C.to('cpu'), {
        D: D.to('cpu'),
        deltaSoftplus: true,
      }).out;
      expect(relErr(values, cpu.dataSync())).toBeLessThan(1e-2);
    }, 120000);

    it("cuda.synchronize() and synchronize('cuda:0') resolve after queued work", async () => {
      const t = Tensor.zeros([1024], { device: 'cuda' });
      const r = selectiveScan(
        Tensor.zeros([1, 4, 8], { device: 'cuda' }),
        Tensor.zeros([1, 4, 8], { device: 'cuda' }),
        Tensor.zeros([4, 2], { device: 'cuda' }),
        Tensor.zeros([4, 2], { device: 'cuda' }),
        Tensor.zeros([4, 2], { device: 'cuda' }),
      );
      await expect(cuda.synchronize()).resolves.toBeUndefined();
      await expect(cuda.synchronize('cuda:0')).resolves.toBeUndefined();
      expect(Array.from(r.out.dataSync())).toEqual(new Array(32).fill(0));
      expect(t.dataSync().length).toBe(1024);
    });
  });

  describe('more than 2^31 elements in one tensor', () => {
    // batch 1, dim 524,800, L 4,096: u, delta, out, dout, du, ddelta each hold 2,149,580,800 > 2^31
    // bfloat16 elements (4.3 GB each; channels also exceed the 65,535 grid limit). Generated on the
    // GPU: scan 1 turns zeros into structured data (decay of a random initial state), scan 2 reads
    // that as u. The small outputs (lastState, dA, dD, ddeltaBias, dInitialState) of channels whose
    // offsets are past 2^31 are checked against the CPU running the same channels alone.
    const dim = 524800,
      L = 4096,
      N = 4;
    const mem = AVAILABLE ? gpuMemoryMiB() : null;
    const needMiB = 40 * 1024;
    const enough = mem !== null && mem.free >= needMiB;
    const why =
      mem === null ? 'nvidia-smi unavailable, free memory unknown' : `${mem.free} MiB free, ${needMiB} needed`;
    it.skipIf(!enough)(
      `bfloat16 scan + backward with batch*dim*L = ${dim * L} (${why})`,
      async () => {
        expect(dim * L).toBeGreaterThan(2 ** 31);
        const rng = new Rng(771);
        const A1 = Float32Array.from({ length: dim * N }, () => -rng.uniform(1e-4, 1e-3));
        const B1 = Float32Array.from({ length: dim * N }, () => rng.normal());
        const C1 = Float32Array.from({ length: dim * N }, () => rng.normal());
        const bias1 = Float32Array.from({ length: dim }, () => rng.uniform(-2, 0));
        const h0 = Float32Array.from({ length: dim * N }, () => rng.normal());
        const A2 = Float32Array.from({ length: dim * N }, () => -Math.exp(rng.uniform(-2, 0)));
        const B2 = Float32Array.from({ length: dim * N }, () => rng.normal());
        const C2 = Float32Array.from({ length: dim * N }, () => rng.normal());
        const bias2 = Float32Array.from({ length: dim }, () => rng.uniform(-7, -5)); // dt*A*L in [0.5, 27]: long memory
        const D2 = Float32Array.from({ length: dim }, () => rng.normal());
        const h2 = Float32Array.from({ length: dim * N }, () => rng.normal());
        const dLast = Float32Array.from({ length: dim * N }, () => rng.normal());

        const dev = 'cuda' as const;
        const zeros = Tensor.zeros([1, dim, L], { dtype: 'bfloat16', device: dev });
        expect(zeros.numel).toBe(dim * L);
        const s1 = selectiveScan(
          zeros,
          zeros,
          tensor(A1, [dim, N], 'float32', dev),
          tensor(B1, [dim, N], 'float32', dev),
          tensor(C1, [dim, N], 'float32', dev),
          {
            deltaBias: tensor(bias1, [dim], 'float32', dev),
            deltaSoftplus: true,
            initialState: tensor(h0, [1, dim, N], 'float32', dev),
            returnLastState: true,
          },
        );
        const u2 = s1.out; // structured, > 2^31 elements
        const s2 = selectiveScan(
          u2,
          zeros,
          tensor(A2, [dim, N], 'float32', dev),
          tensor(B2, [dim, N], 'float32', dev),
          tensor(C2, [dim, N], 'float32', dev),
          {
            D: tensor(D2, [dim], 'float32', dev),
            deltaBias: tensor(bias2, [dim], 'float32', dev),
            deltaSoftplus: true,
            initialState: tensor(h2, [1, dim, N], 'float32', dev),
            returnLastState: true,
            saveForBackward: true,
          },
        );
        const g = selectiveScanBackward(s2.ctx!, zeros, {
          dLastState: tensor(dLast, [1, dim, N], 'float32', dev),
          deterministic: true,
        });
        await cuda.synchronize();
        const last1 = s1.lastState!.dataSync();
        const last2 = s2.lastState!.dataSync();
        const dA = g.dA.dataSync(),
          dD = g.dD!.dataSync(),
          dbias = g.ddeltaBias!.dataSync(),
          dInit = g.dInitialState!.dataSync();
        expect([...g.du.shape]).toEqual([1, dim, L]);
        expect(g.du.dtype).toBe('bfloat16');

        const firstPast = Math.ceil(2 ** 31 / L); // first channel that starts past 2^31
        const channels = [0, 1, firstPast - 1, firstPast, firstPast + 1, dim - 2, dim - 1, 300000];
        for (const d of channels) {
          const sl = (a: Float32Array, n: number) => a.subarray(d * n, (d + 1) * n);
          const z1 = Tensor.zeros([1, 1, L], { dtype: 'bfloat16' });
          const c1 = selectiveScan(
            z1,
            z1,
            tensor(sl(A1, N), [1, N]),
            tensor(sl(B1, N), [1, N]),
            tensor(sl(C1, N), [1, N]),
            {
              deltaBias: tensor(sl(bias1, 1), [1]),
              deltaSoftplus: true,
              initialState: tensor(sl(h0, N), [1, 1, N]),
              returnLastState: true,
            },
          );
          const c2 = selectiveScan(
            c1.out,
            z1,
            tensor(sl(A2, N), [1, N]),
            tensor(sl(B2, N), [1, N]),
            tensor(sl(C2, N), [1, N]),
            {
              D: tensor(sl(D2, 1), [1]),
              deltaBias: tensor(sl(bias2, 1), [1]),
              deltaSoftplus: true,
              initialState: tensor(sl(h2, N), [1, 1, N]),
              returnLastState: true,
              saveForBackward: true,
            },
          );
          const cg = selectiveScanBackward(c2.ctx!, z1, { dLastState: tensor(sl(dLast, N), [1, 1, N]) });
          expectRelClose(sl(last1, N), c1.lastState!.dataSync(), 1e-2, `channel ${d}: lastState of scan 1`);
          expectRelClose(sl(last2, N), c2.lastState!.dataSync(), 1e-2, `channel ${d}: lastState of scan 2`);
          expectRelClose(sl(dA, N), cg.dA.dataSync(), 1e-2, `channel ${d}: dA`);
          expectRelClose(sl(dInit, N), cg.dInitialState!.dataSync(), 1e-2, `channel ${d}: dInitialState`);
          expectRelClose(sl(dD, 1), cg.dD!.dataSync(), 1e-2, `channel ${d}: dD`);
          expectRelClose(sl(dbias, 1), cg.ddeltaBias!.dataSync(), 1e-2, `channel ${d}: ddeltaBias`);
        }
        for (const t of [zeros, u2, s2.out, g.du, g.ddelta]) t.dispose();
      },
      300000,
    );
  });
});
