// The fixed cost of one selectiveStateUpdate call from JavaScript (the decoding step), split into
// its parts, on the CPU at one thread (or --threads N):
//
//   node bench/call-overhead.mjs [--calls 2000] [--batches 15] [--threads 1] [--json PATH]
//
// Rows, each the minimum over batches of the process CPU time per call (the machine is shared:
// the minimum is the least disturbed batch; at more than one thread the wall clock instead, since
// CPU time then adds up the threads, the pool's idle polling included), and, for the full calls,
// the garbage collections seen
// (count and pause time per call, from a PerformanceObserver on 'gc'):
//   full            selectiveStateUpdate(...).dispose(): what a decoding loop pays
//   full, no dispose  the output left to the garbage collector (its finalizer frees it)
//   native only     the addon's stateUpdate with one descriptor built once: the kernel and the
//                   descriptor reading, nothing of lib/
//   native + descriptor  the addon's stateUpdate with a new descriptor object per call, as lib/ builds it
//   allocation      new Storage(-1, bytes) + dispose() for y: the output tensor's memory
//   state-sized copy  a memmove of the state's bytes between two buffers that stay in the cache, as
//                   a decoding loop's state does: the memory floor of the step, which reads and
//                   writes the state once (the other operands are 1/N of it). One thread always:
//                   at --threads N it is the floor of one thread, not of N
// and "JS checks + tensor" = full - (native + descriptor) - allocation; the step's kernel reaches
// (state-sized copy) / (native only) of that floor.
//
// Shapes: tiny (batch 1, 1 head of 16, N 16) and ssd-step (batch 1, 80 heads of 64, N 128, one A
// per head: Mamba-2's decoding step), float32, with D, z, dtBias and softplus as a model calls it.
import { createRequire } from 'node:module';
import os from 'node:os';
import { PerformanceObserver } from 'node:perf_hooks';
import { execSync } from 'node:child_process';
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { Tensor, selectiveStateUpdate, setNumThreads } from 'selective-scan';

const { values: args } = parseArgs({
  options: {
    calls: { type: 'string', default: '2000' },
    batches: { type: 'string', default: '15' },
    threads: { type: 'string', default: '1' },
    json: { type: 'string' },
  },
});
const CALLS = Number(args.calls);
const BATCHES = Number(args.batches);
const JSON_PATH = args.json;
const THREADS = Number(args.threads);
// The per-call figure the derived rows use: CPU time at one thread, else the wall clock.
const PER_CALL = THREADS > 1 ? 'wallUs' : 'cpuUs';

// The addon itself, as lib/native.ts loads it (node-gyp-build: build/Release first).
const require = createRequire(import.meta.url);
const root = new URL('..', import.meta.url).pathname;
const native = require(require('node-gyp-build').resolve(root));

setNumThreads(THREADS);

const SHAPES = [
  { name: 'tiny', H: 1, P: 16, N: 16 },
  { name: 'ssd-step', H: 80, P: 64, N: 128 },
];

function inputs({ H, P, N }) {
  const fill = (n, f) => Float32Array.from({ length: n }, (_, i) => f(i));
  return {
    state: Tensor.zeros([1, H, P, N]),
    x: Tensor.from(
      fill(H * P, (i) => Math.sin(i)),
      [1, H, P],
    ),
    dt: Tensor.from(
      fill(H, (i) => 0.1 * Math.cos(i)),
      [1, H],
    ),
    A: Tensor.from(
      fill(H, (i) => -1 - (i % 7) / 7),
      [H],
    ),
    B: Tensor.from(
      fill(N, (i) => Math.cos(i)),
      [1, 1, N],
    ),
    C: Tensor.from(
      fill(N, (i) => Math.sin(2 * i)),
      [1, 1, N],
    ),
    D: Tensor.from(
      fill(H, (i) => 0.5 + i / H),
      [H],
    ),
    z: Tensor.from(
      fill(H * P, (i) => Math.cos(3 * i)),
      [1, H, P],
    ),
    dtBias: Tensor.from(
      fill(H, (i) => -0.1 * (i % 3)),
      [H],
    ),
  };
}

// The storage behind a tensor, reached as the addon sees it: through a descriptor we build here.
// lib/ keeps it private, so the bench makes its own Storages of the same sizes.
function rawStorages({ H, P, N }) {
  const s = (floats) => new native.Storage(-1, floats * 4, true);
  return {
    state: s(H * P * N),
    x: s(H * P),
    dt: s(H),
    A: s(H),
    B: s(N),
    C: s(N),
    D: s(H),
    z: s(H * P),
    dtBias: s(H),
    y: s(H * P),
  };
}

function descriptor({ H, P, N }, st) {
  return {
    device: -1,
    dtype: 0,
    batch: 1,
    heads: H,
    headDim: P,
    dstate: N,
    groups: 1,
    stateSlots: 1,
    scalarPerHead: true,
    dtSoftplus: true,
    dPerHead: true,
    state: st.state,
    x: st.x,
    dt: st.dt,
    A: st.A,
    B: st.B,
    C: st.C,
    D: st.D,
    z: st.z,
    dtBias: st.dtBias,
    stateBatchIndices: undefined,
    y: st.y,
  };
}

// GC pauses while a batch runs (the observer's entries arrive asynchronously: collected per batch).
let gcEntries = [];
const observer = new PerformanceObserver((list) => gcEntries.push(...list.getEntries()));
observer.observe({ entryTypes: ['gc'] });
const flushGc = () => new Promise((r) => setImmediate(r));

async function time(fn) {
  for (let i = 0; i < Math.min(CALLS, 500); i++) fn(); // warm-up, the JIT
  await flushGc();
  let best = Number.POSITIVE_INFINITY;
  let gcCount = 0;
  let gcMs = 0;
  let bestWall = Number.POSITIVE_INFINITY;
  for (let b = 0; b < BATCHES; b++) {
    gcEntries = [];
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < CALLS; i++) fn();
    const wall = performance.now() - t0;
    const c = process.cpuUsage(c0);
    await flushGc();
    best = Math.min(best, (c.user + c.system) / CALLS);
    bestWall = Math.min(bestWall, (wall * 1000) / CALLS);
    gcCount += gcEntries.length;
    gcMs += gcEntries.reduce((s, e) => s + e.duration, 0);
  }
  const calls = CALLS * BATCHES;
  return { cpuUs: best, wallUs: bestWall, gcPer1kCalls: (gcCount / calls) * 1000, gcUsPerCall: (gcMs * 1000) / calls };
}

const load0 = os.loadavg()[0];
const rows = [];
for (const shape of SHAPES) {
  const t = inputs(shape);
  const opts = { D: t.D, z: t.z, dtBias: t.dtBias, dtSoftplus: true };
  const st = rawStorages(shape);
  const fixed = descriptor(shape, st);
  const yBytes = shape.H * shape.P * 4;
  const stateFloats = shape.H * shape.P * shape.N;
  const copySrc = new native.Storage(-1, stateFloats * 4, true);
  const copyDst = new native.Storage(-1, stateFloats * 4, true);
  const cases = [
    ['full', () => selectiveStateUpdate(t.state, t.x, t.dt, t.A, t.B, t.C, opts).dispose()],
    ['full, no dispose', () => selectiveStateUpdate(t.state, t.x, t.dt, t.A, t.B, t.C, opts)],
    ['native only', () => native.stateUpdate(fixed)],
    ['native + descriptor', () => native.stateUpdate(descriptor(shape, st))],
    ['allocation', () => new native.Storage(-1, yBytes, false).dispose()],
    ['state-sized copy', () => native.copy(copyDst, 0, copySrc, 0, stateFloats)],
  ];
  const r = {};
  for (const [name, fn] of cases) {
    r[name] = await time(fn);
    rows.push({ shape: shape.name, case: name, ...r[name] });
  }
  const k = PER_CALL;
  rows.push({
    shape: shape.name,
    case: 'JS checks + tensor (derived)',
    [k]: r.full[k] - r['native + descriptor'][k] - r.allocation[k],
  });
  rows.push({
    shape: shape.name,
    case: `kernel at % of the copy floor (derived${THREADS > 1 ? ': the floor of one thread' : ''})`,
    percent: (100 * r['state-sized copy'][k]) / r['native only'][k],
  });
  for (const v of Object.values(t)) v.dispose();
  for (const v of [...Object.values(st), copySrc, copyDst]) v.dispose();
}
observer.disconnect();

let commit = 'unknown';
try {
  commit = execSync('git rev-parse --short=12 HEAD', { cwd: root }).toString().trim();
  if (execSync('git status --porcelain -- lib csrc', { cwd: root }).toString().trim()) commit += ' (modified)';
} catch {}
const f = (x, d = 2) => (x === undefined ? '–' : x.toFixed(d));
console.log(`## selectiveStateUpdate call overhead (CPU, ${THREADS} thread${THREADS > 1 ? 's' : ''})\n`);
console.log(`- ${os.cpus()[0]?.model}, node ${process.version}, commit ${commit}`);
console.log(`- load average ${load0.toFixed(2)} at the start, ${os.loadavg()[0].toFixed(2)} at the end`);
console.log(
  `- ${BATCHES} batches of ${CALLS} calls; min over batches of process CPU time and wall clock per call; derived rows from the ${THREADS > 1 ? 'wall clock' : 'CPU time'}\n`,
);
console.log('| shape | case | CPU µs/call | wall µs/call | GCs per 1k calls | GC µs/call |');
console.log('| --- | --- | ---: | ---: | ---: | ---: |');
for (const r of rows) {
  console.log(
    r.percent === undefined
      ? `| ${r.shape} | ${r.case} | ${f(r.cpuUs)} | ${f(r.wallUs)} | ${f(r.gcPer1kCalls, 1)} | ${f(r.gcUsPerCall)} |`
      : `| ${r.shape} | ${r.case} | ${f(r.percent, 0)} % | – | – | – |`,
  );
}
if (JSON_PATH)
  fs.writeFileSync(
    JSON_PATH,
    `${JSON.stringify({ commit, threads: THREADS, load: [load0, os.loadavg()[0]], rows }, null, 2)}\n`,
  );
