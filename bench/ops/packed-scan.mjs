// Packed sequences (issue #12): 64 sequences of lengths drawn log-uniformly from 64 to 2,048 (a
// fixed seed, so the same lengths every run), dim 2048, N 16, run three ways on the same values:
//   packed  one selectiveScan over batch 1, L = the total, with cuSeqlens;
//   plain   the same call without cuSeqlens (the target: packed within 10 % of it);
//   padded  batch 64, L = the longest, zero padding (what users do without cuSeqlens).
// Forward and forward+backward; tokens/s counts real tokens only (for padded too). Memory: the
// bytes of the tensors a call reads and makes (inputs, out, the checkpoints the backward keeps,
// the gradients), and what the device's allocator says is live while a call's results are held
// (hostMemoryInfo() on the CPU, cuda.memoryInfo() with its peak on a GPU). Packed and plain are
// timed in alternation, so that a shared machine's drift falls on both; one warm-up call per case
// unless --warmup (a padded fwd+bwd at dim 2048 takes seconds on 2 cores). The CPU runs dim 256 by
// default (the same lengths), dim 2048 with --full-cpu; not in --quick runs unless named.
import { Tensor, cuda, hostMemoryInfo, selectiveScan, selectiveScanBackward } from 'selective-scan';
import { measure, sync, timeBatch } from '../lib/measure.mjs';
import { fmtMs } from '../lib/progress.mjs';
import { Rng } from '../lib/random.mjs';
import { scanTraffic } from '../lib/roofline.mjs';
import { disposeAll, tensorBytes, tensorFromBits } from '../lib/tensors.mjs';
import { chunkLengthOf, scanBits, scanOptions, scanTensors } from './selective-scan-inputs.mjs';

/** The seed of the lengths: fixed, not --seed, so that every run packs the same sequences. */
export const LENGTHS_SEED = 1;
const GPU_SHAPE = { name: 'packed', nseq: 64, minL: 64, maxL: 2048, dim: 2048, N: 16 };
const CPU_SHAPE = { ...GPU_SHAPE, name: 'packed-cpu', dim: 256 };
const SIM_SHAPE = { name: 'packed-sim', nseq: 8, minL: 4, maxL: 128, dim: 16, N: 4 };
const VARIANTS = ['fwd', 'fwd+bwd'];
const LAYOUTS = ['packed', 'plain', 'padded'];

/** nseq lengths, log-uniform in [minL, maxL] (rounded), from a fixed seed. */
export function packedLengths(nseq, minL, maxL, seed = LENGTHS_SEED) {
  const rng = new Rng(seed);
  const span = Math.log(maxL / minL);
  return Array.from({ length: nseq }, () => Math.min(maxL, Math.round(minL * Math.exp(span * rng.uniform()))));
}

/** The shape of each layout: (batch, dim, L, N) and the sequences. */
export function packedLayouts(s) {
  const lengths = packedLengths(s.nseq, s.minL, s.maxL);
  const tokens = lengths.reduce((a, b) => a + b, 0);
  const longest = Math.max(...lengths);
  const cuSeqlens = Int32Array.from([0, ...lengths.map((_, i) => lengths.slice(0, i + 1).reduce((a, b) => a + b))]);
  const base = { dim: s.dim, N: s.N, G: 1, nseq: s.nseq, tokens };
  return {
    lengths,
    tokens,
    cuSeqlens,
    packed: { ...base, layout: 'packed', batch: 1, L: tokens },
    plain: { ...base, layout: 'plain', batch: 1, L: tokens },
    padded: { ...base, layout: 'padded', batch: s.nseq, L: longest },
  };
}

const sizeText = (s) =>
  s.layout === 'padded'
    ? `(${s.batch}, ${s.dim}, ${s.L}, ${s.N}), ${s.tokens} real tokens`
    : `(1, ${s.dim}, ${s.L}, ${s.N})${s.layout === 'packed' ? `, ${s.nseq} seqs` : ''}`;

/** @type {import('./index.mjs').BenchOp} */
export const packedScanRows = {
  kind: 'packed',
  shapes: ['packed'],
  variants: VARIANTS,
  sizeText,
  plan(run) {
    const { o, cpu, target } = run;
    const named = o.shapes ? o.shapes.includes('packed') : !o.quick;
    const ops = o.ops.filter((op) => VARIANTS.includes(op));
    const s = target.simulated ? SIM_SHAPE : cpu && !o.fullCpu ? CPU_SHAPE : GPU_SHAPE;
    if (!named || !ops.length) return { units: 0, summary: {}, shape: null };
    const lay = packedLayouts(s);
    const summary = {
      packed: {
        name: s.name,
        nseq: s.nseq,
        dim: s.dim,
        N: s.N,
        minL: s.minL,
        maxL: s.maxL,
        lengthsSeed: LENGTHS_SEED,
        lengths: lay.lengths,
        tokens: lay.tokens,
        longest: lay.padded.L,
      },
    };
    return { units: o.dtypes.length * ops.length * LAYOUTS.length, summary, shape: s, ops, lay };
  },
  async rows(run, p) {
    if (!p.shape) return;
    const { s, lay } = { s: p.shape, lay: p.lay };
    run.progress.note(
      `${s.name}: ${s.nseq} sequences, lengths log-uniform in [${s.minL}, ${s.maxL}] (seed ${LENGTHS_SEED}): ` +
        `${lay.tokens} tokens, the longest ${lay.padded.L} (padded: ${s.nseq * lay.padded.L} positions)`,
    );
    for (const dtype of run.o.dtypes) await run.guarded(`${s.name} ${dtype}`, () => packedRows(run, p, dtype));
  },
  reportSection,
};

// ---- the rows -----------------------------------------------------------------------------------

/** The padded copy of packed (1, rows, T) bits: (nseq, rows, longest), zeros after each sequence. */
function padBits(bits, rows, lay) {
  const T = lay.tokens;
  const Lp = lay.padded.L;
  const out = new Uint16Array(lay.lengths.length * rows * Lp);
  lay.lengths.forEach((len, i) => {
    const off = lay.cuSeqlens[i];
    for (let r = 0; r < rows; r++) out.set(bits.subarray(r * T + off, r * T + off + len), (i * rows + r) * Lp);
  });
  return out;
}

export function paddedTensors(bits, lay, dtype, device) {
  const { batch, dim, L, N } = lay.padded;
  /** @type {Record<string, Tensor>} */
  const t = {};
  for (const k of ['u', 'delta', 'z', 'dout'])
    t[k] = tensorFromBits(padBits(bits[k], dim, lay), [batch, dim, L], dtype, device);
  for (const k of ['B', 'C']) t[k] = tensorFromBits(padBits(bits[k], N, lay), [batch, N, L], dtype, device);
  t.A = Tensor.from(bits.A, [dim, N], { device });
  t.D = Tensor.from(bits.D, [dim], { device });
  return t;
}

/** One call of fwd or fwd+bwd, disposing what it makes; keep() is given what it made first. */
function call(t, op, extra, keep) {
  const opts = { ...scanOptions(t), ...extra };
  if (op === 'fwd') {
    const r = selectiveScan(t.u, t.delta, t.A, t.B, t.C, opts);
    keep?.({ out: r.out });
    r.out.dispose();
    return;
  }
  const r = selectiveScan(t.u, t.delta, t.A, t.B, t.C, { ...opts, saveForBackward: true });
  const g = selectiveScanBackward(r.ctx, t.dout);
  keep?.({ out: r.out, ctx: r.ctx, ...g });
  r.out.dispose();
  r.ctx.dispose();
  disposeAll(g);
}

/** The bytes of the tensors a call reads and makes, and what the allocator holds for its results. */
async function memoryOf(run, t, op, extra) {
  const { target } = run;
  const inputs = ['u', 'delta', 'z', 'B', 'C', 'A', 'D', ...(op === 'fwd' ? [] : ['dout'])];
  const inputBytes = inputs.reduce((a, k) => a + tensorBytes(t[k]), 0);
  let made = 0;
  let checkpointBytes = 0;
  await sync(target);
  const gpu = target.index >= 0;
  const info = () => (gpu ? cuda.memoryInfo(target.device) : hostMemoryInfo());
  if (gpu) cuda.resetPeakMemory(target.device);
  const base = info().allocatedBytes;
  // A garbage collection during the call can free earlier tensors' memory (their finalizers run
  // inside it) and only lower the difference: the largest of three calls is what the results hold.
  let held = 0;
  for (let i = 0; i < 3; i++) {
    const before = info().allocatedBytes;
    made = 0;
    call(t, op, extra, (r) => {
      for (const [k, x] of Object.entries(r)) {
        if (k === 'ctx') checkpointBytes = x.checkpointBytes;
        else made += tensorBytes(x);
      }
      held = Math.max(held, info().allocatedBytes - before);
    });
    await sync(target);
  }
  const peak = gpu ? info().peakAllocatedBytes - base : null;
  return {
    inputBytes,
    madeBytes: made + checkpointBytes,
    checkpointBytes,
    tensorBytes: inputBytes + made + checkpointBytes,
    heldBytes: held,
    peakBeyondInputsBytes: peak,
    allocator: gpu ? 'cuda.memoryInfo()' : 'hostMemoryInfo()',
  };
}

async function packedRows(run, p, dtype) {
  const { target, progress } = run;
  const { shape: s, lay } = p;
  progress.status(`${s.name} ${dtype}: making inputs`);
  // One draw of the packed values; padded gets the same values, zeros after each sequence.
  const bits = scanBits(run.factory, lay.packed);
  const layouts = {
    packed: { extra: { cuSeqlens: lay.cuSeqlens } },
    plain: { extra: {} },
    padded: { extra: {} },
  };
  const timing = { ...run.timing(lay.packed), warmup: run.o.warmup ?? 1 };
  const record = (layout, op, m, mem) => {
    const shape = lay[layout];
    const chunk = chunkLengthOf(target, shape);
    const tokensPerS = lay.tokens / (m.medianMs / 1e3);
    run.record('packed', s.name, shape, dtype, `${op} ${layout}`, m, scanTraffic(shape, dtype, op, chunk), {
      layout,
      variant: op,
      chunkLength: chunk,
      tokensPerS,
      memory: mem,
    });
    progress.done(
      `${s.name} ${dtype} ${op} ${layout}: ${fmtMs(m.medianMs)} ms, ${(tokensPerS / 1e3).toFixed(1)}K tokens/s`,
    );
  };

  // Packed and plain share the tensors; timed in alternation, batch by batch.
  progress.status(`${s.name} ${dtype}: uploading inputs`);
  const t = scanTensors(bits, lay.packed, dtype, target.device);
  try {
    for (const op of p.ops) {
      if (run.late(`${s.name} ${dtype} ${op} packed and plain`)) continue;
      progress.status(`${s.name} ${dtype} ${op}: packed and plain, in alternation`);
      const fns = ['packed', 'plain'].map((l) => () => call(t, op, layouts[l].extra));
      const ms = await run.guarded(`${s.name} ${dtype} ${op} packed and plain`, () =>
        measureAlternating(target, fns, timing),
      );
      if (!ms) continue;
      for (const [i, layout] of ['packed', 'plain'].entries()) {
        const mem = await memoryOf(run, t, op, layouts[layout].extra);
        record(layout, op, ms[i], mem);
      }
    }
  } finally {
    disposeAll(t);
  }

  progress.status(`${s.name} ${dtype}: padding inputs`);
  const tp = paddedTensors(bits, lay, dtype, target.device);
  try {
    for (const op of p.ops) {
      if (run.late(`${s.name} ${dtype} ${op} padded`)) continue;
      progress.status(`${s.name} ${dtype} ${op} padded`);
      const m = await run.guarded(`${s.name} ${dtype} ${op} padded`, () =>
        measure(target, () => call(tp, op, {}), { ...run.timing(lay.padded), warmup: run.o.warmup ?? 1 }),
      );
      if (!m) continue;
      record('padded', op, m, await memoryOf(run, tp, op, {}));
    }
  } finally {
    disposeAll(tp);
  }
}

/**
 * Times fns side by side: warm-up calls of each, then one call of each to size its batch (about
 * targetMs), then repetitions in which each fn runs one batch in turn. measure()'s shape per fn.
 */
export async function measureAlternating(target, fns, o) {
  const { warmup = 2, reps = 10, targetMs = 20, maxCalls = 1000, maxTotalMs = 5000, minReps = 3 } = o;
  for (const fn of fns) for (let i = 0; i < warmup; i++) fn();
  await sync(target);
  const ks = fns.map((fn) => {
    const one = timeBatch(target, fn, 1).ms;
    return { one, k: Math.max(1, Math.min(maxCalls, Math.round(targetMs / Math.max(one, 1e-6)))) };
  });
  const slowest = Math.max(...ks.map((x) => x.one * x.k));
  const n = Math.max(Math.min(minReps, reps), Math.min(reps, Math.floor(maxTotalMs / slowest)));
  const samples = fns.map(() => ({ ms: [], hostMs: [] }));
  for (let r = 0; r < n; r++) {
    fns.forEach((fn, i) => {
      const b = timeBatch(target, fn, ks[i].k);
      samples[i].ms.push(b.ms);
      samples[i].hostMs.push(b.hostMs);
    });
  }
  await sync(target);
  return samples.map((x, i) => ({
    medianMs: median(x.ms),
    minMs: Math.min(...x.ms),
    maxMs: Math.max(...x.ms),
    reps: n,
    callsPerRep: ks[i].k,
    hostMsPerCall: median(x.hostMs),
    samplesMs: x.ms,
  }));
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

// ---- the report -----------------------------------------------------------------------------------

const p3 = (v) => (v == null || !Number.isFinite(v) ? '–' : v >= 1000 ? v.toFixed(0) : `${+v.toPrecision(3)}`);
const mib = (v) => (v == null ? '–' : `${(v / 2 ** 20).toFixed(v >= 2 ** 30 ? 0 : 1)}`);

/** The side-by-side table: per dtype and op, the three layouts, and the ratios. */
export function reportSection(res) {
  const rows = res.cases.filter((c) => c.kind === 'packed');
  if (!rows.length) return null;
  const info = res.plan?.packed;
  const gpu = rows.some((c) => c.memory.peakBeyondInputsBytes != null);
  const out = [];
  out.push(
    `### Packed sequences (cuSeqlens): ${info.nseq} sequences, lengths log-uniform in [${info.minL}, ${info.maxL}] ` +
      `(seed ${info.lengthsSeed}): ${Math.min(...info.lengths)} to ${info.longest}, ${info.tokens} tokens; dim ${info.dim}, N ${info.N}`,
  );
  out.push('');
  out.push(
    'packed: one call, batch 1, L = the tokens, with cuSeqlens; plain: the same call without cuSeqlens; padded: batch ' +
      `${info.nseq}, L = ${info.longest}, zero padding. tokens/s: real tokens only. Memory (MiB): the tensors a call reads ` +
      'and makes (inputs, dout for fwd+bwd, out, checkpoints, gradients), computed from their shapes; "held": what the ' +
      `allocator (${rows[0].memory.allocator}.allocatedBytes) counts beyond the inputs while the call's results are alive` +
      (gpu ? '; "peak": cuda.memoryInfo().peakAllocatedBytes beyond the inputs (after resetPeakMemory).' : '.'),
  );
  out.push('');
  const head = [
    'dtype',
    'op',
    'layout',
    'median ms',
    'K tokens/s',
    'tensors MiB',
    'held MiB',
    ...(gpu ? ['peak MiB'] : []),
  ];
  const body = rows.map((c) => [
    c.dtype,
    c.variant,
    c.layout,
    p3(c.medianMs),
    p3(c.tokensPerS / 1e3),
    mib(c.memory.tensorBytes),
    mib(c.memory.heldBytes),
    ...(gpu ? [mib(c.memory.peakBeyondInputsBytes)] : []),
  ]);
  out.push(table(head, body, 3));
  out.push('');
  const ratios = [];
  for (const dtype of [...new Set(rows.map((c) => c.dtype))]) {
    for (const op of VARIANTS) {
      const get = (l) => rows.find((c) => c.dtype === dtype && c.variant === op && c.layout === l);
      const [pk, pl, pd] = LAYOUTS.map(get);
      if (!pk) continue;
      ratios.push([
        dtype,
        op,
        pl ? `${((pk.tokensPerS / pl.tokensPerS) * 100).toFixed(1)} %` : '–',
        pl ? (pk.tokensPerS / pl.tokensPerS >= 0.9 ? 'yes' : '**no**') : '–',
        pd ? `${(pd.medianMs / pk.medianMs).toFixed(2)}×` : '–',
        pd ? `${(pd.memory.tensorBytes / pk.memory.tensorBytes).toFixed(2)}×` : '–',
      ]);
    }
  }
  out.push(
    table(
      ['dtype', 'op', 'packed tokens/s ÷ plain', 'within 10 %', 'padded time ÷ packed', 'padded tensors ÷ packed'],
      ratios,
      2,
    ),
  );
  return out.join('\n');
}

function table(head, rows, leftCols) {
  const sep = head.map((_, i) => (i < leftCols ? '---' : '---:'));
  return [head, sep, ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n');
}
