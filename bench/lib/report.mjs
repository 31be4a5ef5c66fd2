// Markdown for a run's result object (printed, and saved beside the JSON).
import { shapeText } from './shapes.mjs';

const p3 = (v) =>
  v === null || v === undefined || !Number.isFinite(v) ? '–' : v >= 1000 ? v.toFixed(0) : `${+v.toPrecision(3)}`;
const p1 = (v) => (v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(1));
const pct = (v) =>
  v === null || v === undefined || !Number.isFinite(v) ? '–' : `${(v * 100).toFixed(v < 0.1 ? 1 : 0)} %`;
const times = (v) =>
  v === null || v === undefined || !Number.isFinite(v) ? '–' : `${v >= 10 ? v.toFixed(0) : v.toFixed(1)}×`;
const bytes = (v) => {
  if (v === null || v === undefined) return '–';
  if (v >= 2 ** 30) return `${(v / 2 ** 30).toFixed(2)} GiB`;
  if (v >= 2 ** 20) return `${(v / 2 ** 20).toFixed(1)} MiB`;
  return `${(v / 2 ** 10).toFixed(1)} KiB`;
};

export function mdTable(headers, rows, align) {
  const a = headers.map((_, i) => align?.[i] ?? (i === 0 ? 'l' : 'r'));
  const sep = a.map((x) => (x === 'l' ? '---' : '---:'));
  return [headers, sep, ...rows].map((r) => `| ${r.join(' | ')} |`).join('\n');
}

/** The report of one device's run; ops (bench/ops/index.mjs) give each row kind's size text. */
export function markdownReport(res, ops) {
  const sizeText = Object.fromEntries(ops.map((op) => [op.kind, op.sizeText]));
  const d = res.device;
  const out = [];
  out.push(`## selective-scan benchmark: ${d.name} (${d.id})`);
  out.push('');
  const facts = [
    `date ${res.date}, commit ${res.commit.hash ? res.commit.hash.slice(0, 12) : 'unknown'}` +
      (res.commit.clean === false ? ' (tree modified)' : res.commit.clean ? ' (clean)' : ''),
    d.kind === 'cuda'
      ? `driver ${d.driver ?? '?'}, CUDA ${d.cudaDriverVersion ?? '?'} (driver) / ${d.cudaRuntime ?? '?'} (runtime)`
      : `${d.threads} threads, ${d.isa} kernels`,
    `copy bandwidth ${p1(res.machine.copyBandwidthGBps)} GB/s (read + written), exp2 ${p3(res.machine.exp2Rate / 1e9)} G/s` +
      (res.machine.exp2RateAtEnd ? ` (${p3(res.machine.exp2RateAtEnd / 1e9)} G/s at the end)` : '') +
      (res.loadAverage ? `; load average ${res.loadAverage.start[0].toFixed(2)} at the start` : ''),
    `timing: ${res.settings.timing}`,
  ];
  out.push(facts.map((f) => `- ${f}`).join('\n'));
  out.push('');
  out.push(
    'Inputs: u, z, dout randn; delta uniform in [-2, 0) with softplus; A = -exp(U[0,1)); input-dependent B, C (batch, N, L) randn; D randn. ' +
      'Shape (batch, dim, L, N). Floors: bytes / copy bandwidth, batch·dim·L·N / exp2 rate; "% of floor" = larger floor / median.',
  );
  if (res.cases.some((c) => c.shapeName.endsWith('-cpu'))) {
    out.push('');
    out.push('`-cpu` shapes are smaller variants of S1–S4 for CPU runs (`--full-cpu` runs the full ones).');
  }
  out.push('');
  const rows = res.cases.map((c) => [
    c.shapeName,
    sizeText[c.kind](c.shape),
    c.dtype,
    c.op,
    p3(c.medianMs),
    p3(c.minMs),
    p1(c.roofline.gbps),
    p3(c.roofline.memFloorMs),
    p3(c.roofline.expFloorMs),
    c.roofline.bound,
    pct(c.roofline.fractionOfFloor),
  ]);
  out.push(
    mdTable(
      [
        'shape',
        'size',
        'dtype',
        'op',
        'median ms',
        'min ms',
        'GB/s',
        'mem floor ms',
        'exp2 floor ms',
        'bound',
        '% of floor',
      ],
      rows,
      ['l', 'l', 'l', 'l'],
    ),
  );

  // Rows of another implementation that stand beside one of ours (`beside`: our op at that shape).
  const peers = res.cases.filter((c) => c.beside);
  if (peers.length) {
    out.push('');
    out.push(`### Beside other implementations ("×" = their time / ours)`);
    out.push('');
    out.push(
      mdTable(
        ['shape', 'size', 'dtype', 'op', 'ours ms', 'theirs', 'their ms', 'their threads', '×'],
        peers.map((c) => [
          c.shapeName,
          sizeText[c.kind](c.shape),
          c.dtype,
          c.beside,
          p3(c.oursMs),
          c.peer,
          p3(c.medianMs),
          String(c.threads ?? '–'),
          times(c.speedup),
        ]),
        ['l', 'l', 'l', 'l', 'r', 'l'],
      ),
    );
  }

  for (const op of ops) {
    const section = op.reportSection?.(res);
    if (section) out.push('', section);
  }

  if (res.comparisons.length) {
    out.push('');
    out.push(`### Comparisons (float32; "×" = their time / ours)`);
    out.push('');
    const crow = res.comparisons.map((c) => [
      c.shapeName,
      shapeText(c.shape),
      p3(c.ours.fwdMs),
      p3(c.ours.fwdBwdMs),
      p3(c.js?.fwdMs),
      p3(c.js?.fwdBwdMs),
      p3(c.torch?.fwdMs),
      p3(c.torch?.fwdBwdMs),
      `${times(c.speedup.jsFwd)} / ${times(c.speedup.jsFwdBwd)}`,
      `${times(c.speedup.torchFwd)} / ${times(c.speedup.torchFwdBwd)}`,
    ]);
    const tname = res.device.kind === 'cpu' ? 'PyTorch CPU' : 'PyTorch ref (GPU)';
    out.push(
      mdTable(
        [
          'shape',
          'size',
          'ours fwd',
          'ours fwd+bwd',
          'JS loop fwd',
          'JS loop fwd+bwd',
          `${tname} fwd`,
          `${tname} fwd+bwd`,
          '× vs JS (fwd / f+b)',
          `× vs PyTorch (fwd / f+b)`,
        ],
        crow,
        ['l', 'l'],
      ),
    );
    const notes = res.comparisons.flatMap((c) => (c.notes ?? []).map((n) => `- ${c.shapeName}: ${n}`));
    if (notes.length) out.push('', ...notes);
  }

  if (res.ratio) {
    const r = res.ratio;
    out.push('');
    out.push(
      `**CPU ratio at ${shapeText(r.shape)}, float32, vs the PyTorch sequential loop (${r.torchThreads} threads): ` +
        `forward ${times(r.fwd)}, forward+backward ${times(r.fwdBwd)} (target ≥ 20× each: ${r.pass ? 'met' : 'NOT met'}).** ` +
        `PyTorch ${p3(r.torchFwdMs)} / ${p3(r.torchFwdBwdMs)} ms; ours ${p3(r.oursFwdMs)} / ${p3(r.oursFwdBwdMs)} ms ` +
        `(${r.oursThreads} threads; the slower of our runs before and after PyTorch).`,
    );
  }

  if (res.sweep?.points?.length) {
    const s = res.sweep;
    out.push('');
    out.push(`### Time against L: (${s.batch}, ${s.dim}, L, ${s.N}), float32, ms`);
    out.push('');
    const tname = res.device.kind === 'cpu' ? 'PyTorch CPU' : 'PyTorch ref';
    out.push(
      mdTable(
        ['L', 'ours fwd', 'ours bwd', 'ours fwd+bwd', `${tname} fwd`, `${tname} fwd+bwd`],
        s.points.map((q) => [
          String(q.L),
          p3(q.fwdMs),
          p3(q.bwdMs),
          p3(q.fwdBwdMs),
          p3(q.torch?.fwdMs),
          p3(q.torch?.fwdBwdMs),
        ]),
      ),
    );
    if (s.plot) out.push('', `Plot: ${s.plot}`);
  }

  if (res.memory?.length) {
    out.push('');
    out.push('### Peak device memory, forward + backward');
    out.push('');
    out.push(
      mdTable(
        [
          'shape',
          'dtype',
          'inputs (incl. dout)',
          'out + checkpoints',
          'gradients',
          'live before',
          'peak',
          'peak − live before',
          'scratch beyond outputs and gradients',
        ],
        res.memory.map((m) => [
          `${m.shapeName} ${m.size ?? shapeText(m.shape)}`,
          m.dtype,
          bytes(m.inputBytes),
          bytes(m.outputBytes),
          bytes(m.gradientBytes),
          bytes(m.allocatedBeforeBytes),
          bytes(m.peakAllocatedBytes),
          bytes(m.peakAllocatedBytes - m.allocatedBeforeBytes),
          bytes(m.peakAllocatedBytes - m.allocatedBeforeBytes - m.outputBytes - m.gradientBytes),
        ]),
        ['l', 'l'],
      ),
    );
  }

  if (res.checks?.length) {
    out.push('');
    out.push('### Agreement checks (relative error ‖got − ref‖ / ‖ref‖)');
    out.push('');
    // Every check's outputs and gradients, in the order they first appear.
    const keys = [...new Set(res.checks.flatMap((c) => Object.keys(c.relErr)))];
    out.push(
      mdTable(
        ['check', 'dtype', ...keys, 'tolerance', 'pass'],
        res.checks.map((c) => [
          c.name,
          c.dtype,
          ...keys.map((k) => (c.relErr[k] === undefined ? '–' : c.relErr[k].toExponential(1))),
          c.tolerance.map((x) => (typeof x === 'number' ? x.toExponential(0) : x)).join(' / '),
          c.pass ? 'yes' : '**NO**',
        ]),
        ['l', 'l'],
      ),
    );
  }

  if (res.errors?.length) {
    out.push('');
    out.push('### Errors');
    out.push('');
    out.push(res.errors.map((e) => `- ${e.case}: ${e.message}`).join('\n'));
  }

  if (res.notes.length) {
    out.push('');
    out.push('### Notes');
    out.push('');
    out.push(res.notes.map((n) => `- ${n}`).join('\n'));
  }
  return `${out.join('\n')}\n`;
}
