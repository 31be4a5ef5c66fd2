// The command line of `npm run bench`: the help text and the options.
import path from 'node:path';
import { parseArgs } from 'node:util';
import { benchDir } from './env.mjs';
import { DTYPE_BYTES } from './roofline.mjs';

export const HELP = `Usage: npm run bench -- [options]     (or: node bench/bench.mjs [options])

  --device LIST        cpu, cuda, cuda:N or all (default: all = the GPU when cuda.isAvailable(), and the CPU)
  --quick              a short run: S1 (and S3 on a GPU), two step batches, a short L sweep
  --shapes LIST        S1,S2,S3,S4,step,sweep,host-cache,conv,conv-step,ssd,ssd-step,packed and/or
                       BxDxLxN shapes (default: all of the named; host-cache, the CPU's forward with
                       and without the host cache, and packed not in --quick; conv: causalConv1d at
                       S1's and S3's (batch, dim, L); conv-step: causalConv1dUpdate at the step's
                       batches; ssd: ssdScan at Mamba-2 shapes (the CPU: M2-cpu; a GPU: M2-S1,
                       M2-S2) beside PyTorch ssd_minimal; ssd-step: its heads-form step (CPU);
                       packed: 64 sequences packed with cuSeqlens beside plain and padded calls)
  --dtypes LIST        bfloat16,float32 (default both; float16 allowed)
  --ops LIST           fwd,fwd-save,bwd,bwd-det,fwd+bwd (default all; fwd-save = with saveForBackward)
  --reps N             timed repetitions per case (default: GPU 20 (10 at S2/S4), CPU 7; --quick 10 / 5)
  --warmup N           untimed calls first (default 2)
  --target-ms MS       calls per repetition are batched to take about MS (default GPU 10, CPU 20)
  --max-case-ms MS     fewer repetitions (at least 3) where a case would take longer (default 4000)
  --full-cpu           run S1-S4 at full size on the CPU too (default: the smaller -cpu variants)
  --threads N          CPU backend threads (setNumThreads)
  --no-js              skip the plain JavaScript loop (CPU comparison)
  --no-torch           skip PyTorch (CPU baseline and GPU reference)
  --torch-only KINDS   PyTorch only beside these ops' rows (kinds: scan, conv, ssd; e.g. the GPU
                       session's --torch-only ssd: ssd_minimal and Triton, not the slow sequential loop)
  --torch-all          also run the PyTorch CPU baseline where it is slow (S2-cpu: ~35 s a repetition on 2 cores)
  --torch-reps N       repetitions of the PyTorch runs (default per scan shape: 5, 3 or 1; the
                       convolution's: 10, 3 with --quick; ssd_minimal's and Triton's: 3)
  --torch-gpu-max-gb G skip the PyTorch GPU reference where it would need more (default 40)
  --torch-max-l L      longest L for PyTorch (its loop is sequential; default GPU 16384, CPU sweep 2048)
  --python PATH        a python3 with torch (default: $BENCH_PYTHON, /usr/bin/python3, python3)
  --json PATH          write the JSON there (default bench/results/YYYY-MM-DD-<device>-bench.json;
                       with several devices, -<device> is added before .json)
  --out-dir DIR        directory for the default result names (default bench/results)
  --no-save            print only; write no files
  --no-plot            no SVG
  --no-checks          skip the agreement checks
  --deadline-s S       stop starting new cases S seconds after the start (what ran is written; the
                       skipped cases are listed in the notes)
  --seed N             input seed (default 0)
  --simulate-gpu       (tests of this harness) run the GPU code path on the CPU with tiny shapes
                       (with --device cpu: the CPU run too, as on a GPU host)
  -h, --help

Writes <name>.json, <name>.md and <name>.svg (time against L) per device; prints the markdown.
Exit status 3 when an agreement check failed, 4 when a case threw (the results are written anyway).`;

/**
 * The options of a run. ops: the op modules (bench/ops/index.mjs), which say which --ops and
 * --shapes names exist. Throws an Error whose message is for the command line.
 */
export function parseOptions(argv, ops) {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      device: { type: 'string' },
      quick: { type: 'boolean' },
      shapes: { type: 'string' },
      dtypes: { type: 'string' },
      ops: { type: 'string' },
      reps: { type: 'string' },
      warmup: { type: 'string' },
      'target-ms': { type: 'string' },
      'max-case-ms': { type: 'string' },
      'full-cpu': { type: 'boolean' },
      threads: { type: 'string' },
      'no-js': { type: 'boolean' },
      'no-torch': { type: 'boolean' },
      'torch-only': { type: 'string' },
      'torch-all': { type: 'boolean' },
      'torch-reps': { type: 'string' },
      'torch-gpu-max-gb': { type: 'string' },
      'torch-max-l': { type: 'string' },
      python: { type: 'string' },
      json: { type: 'string' },
      'out-dir': { type: 'string' },
      'no-save': { type: 'boolean' },
      'no-plot': { type: 'boolean' },
      'no-checks': { type: 'boolean' },
      'deadline-s': { type: 'string' },
      seed: { type: 'string' },
      'simulate-gpu': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const num = (name, min, integer = true) => {
    if (v[name] === undefined) return undefined;
    const x = Number(v[name]);
    if (!Number.isFinite(x) || x < min || (integer && !Number.isInteger(x))) {
      throw new Error(`--${name} must be ${integer ? 'an integer' : 'a number'} >= ${min}, got ${v[name]}`);
    }
    return x;
  };
  const list = (name) =>
    v[name]
      ? v[name]
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
      : undefined;
  const variants = [...new Set(ops.flatMap((op) => op.variants ?? []))];
  const o = {
    help: !!v.help,
    quick: !!v.quick,
    devices: list('device') ?? (v['simulate-gpu'] ? [] : ['all']),
    shapes: list('shapes'),
    dtypes: list('dtypes') ?? ['bfloat16', 'float32'],
    ops: list('ops') ?? variants,
    reps: num('reps', 1),
    warmup: num('warmup', 0),
    targetMs: num('target-ms', 0, false),
    maxCaseMs: num('max-case-ms', 0, false),
    fullCpu: !!v['full-cpu'],
    threads: num('threads', 1),
    js: !v['no-js'],
    torch: !v['no-torch'],
    torchOnly: list('torch-only'),
    torchAll: !!v['torch-all'],
    torchReps: num('torch-reps', 1),
    torchGpuMaxGB: num('torch-gpu-max-gb', 0, false) ?? 40,
    torchMaxL: num('torch-max-l', 1),
    python: v.python,
    json: v.json,
    outDir: v['out-dir'] ?? path.join(benchDir, 'results'),
    save: !v['no-save'],
    plot: !v['no-plot'],
    checks: !v['no-checks'],
    seed: num('seed', 0) ?? 0,
    deadlineS: num('deadline-s', 1, false),
    simulate: !!v['simulate-gpu'],
  };
  for (const d of o.dtypes) if (!DTYPE_BYTES[d]) throw new Error(`unknown dtype ${d}`);
  for (const op of o.ops) if (!variants.includes(op)) throw new Error(`unknown op ${op}`);
  for (const k of o.torchOnly ?? [])
    if (!TORCH_KINDS.includes(k)) throw new Error(`--torch-only: unknown kind ${k} (${TORCH_KINDS.join(', ')})`);
  const shapeNames = ops.flatMap((op) => op.shapes);
  const custom = ops.filter((op) => op.customShape);
  for (const s of o.shapes ?? []) {
    if (!shapeNames.includes(s) && !custom.some((op) => op.customShape.parse(s))) {
      const syntax = custom.map((op) => op.customShape.syntax).join(', ');
      throw new Error(`unknown shape ${s} (${shapeNames.join(', ')}${syntax ? ` or ${syntax}` : ''})`);
    }
  }
  return o;
}

const TORCH_KINDS = ['scan', 'conv', 'ssd'];

/** Whether PyTorch runs beside the rows of an op of this kind ('scan', 'conv', 'ssd'): --no-torch, --torch-only. */
export function wantsTorch(o, kind) {
  return o.torch && (!o.torchOnly || o.torchOnly.includes(kind));
}
