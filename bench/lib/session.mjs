// What bench/gpu-session.sh makes of its steps' outputs: a sanitizer log read as passed, failed or
// refused by the device; mamba_ssm's peer binary's JSON lines beside our benchmark rows (their time
// over ours); the goals of the first GPU run; the session's report. Plain functions of their inputs
// (test/bench.test.ts checks them); bench/session-record.mjs reads and writes the files.
import { mdTable } from './report.mjs';
import { shapeText } from './shapes.mjs';

/**
 * Why this is no GPU session, from buildInfo() and cuda.isAvailable()/unavailableReason: an addon
 * without CUDA, or without code for sm_90 (H100, H200), or no usable GPU. Empty when it is one.
 */
export function preflightProblems(build, { available, reason }) {
  if (!build.cuda) return ['the addon was built without CUDA (buildInfo().cuda is false): build it with nvcc'];
  const problems = [];
  if (!build.cudaArchitectures.some((a) => a === 'sm_90' || a === 'compute_90'))
    problems.push(`the addon has CUDA code for ${build.cudaArchitectures.join(', ')} only, not sm_90 (H100, H200)`);
  if (!available) problems.push(`CUDA is not usable here: ${reason}`);
  return problems;
}

// A device or driver that will not run compute-sanitizer: said before any report of ours can come.
const SANITIZER_REFUSED =
  /device not supported|not supported on this (device|platform|gpu)|unable to (find|load|initialize)|failed to initialize|permission denied|operation not permitted|no supported (device|gpu)/i;

/**
 * @typedef {object} SanitizerRun
 * @property {string} tool
 * @property {boolean} ran
 * @property {boolean | null} pass      null: skipped, neither passed nor failed
 * @property {string} [skipped]         why it did not run
 * @property {number | null} [errors]
 * @property {{ hazards: number, errors: number, warnings: number }} [racecheck]
 * @property {{ ok: boolean, calls: number } | null} [case]   bench/sanitizer-case.mjs's JSON line
 * @property {string[]} [firstReports]
 * @property {string} [logTail]
 */

/**
 * One compute-sanitizer run: its exit status (124: timed out), seconds and log. A run the device
 * refused is skipped with the log's line that says so.
 * @param {{ tool: string, exit: number, seconds: number, log: string | null, command?: string }} run
 * @returns {SanitizerRun & Record<string, unknown>}
 */
export function readSanitizerRun({ tool, exit, seconds, log, command }) {
  const r = { tool, command, exitCode: exit, timedOut: exit === 124, seconds };
  if (log === null) return { ...r, ran: false, pass: false, error: 'no log' };
  const lines = log.split('\n');
  const err = /ERROR SUMMARY:\s*(\d+)\s+error/.exec(log);
  const race = /RACECHECK SUMMARY:\s*(\d+)\s+hazards? displayed\s*\((\d+)\s+errors?,\s*(\d+)\s+warnings?\)/.exec(log);
  const caseLine = lines.findLast((l) => l.startsWith('{"ok"'));
  const refused = lines.find((l) => SANITIZER_REFUSED.test(l));
  if (refused && !caseLine && !err && !race) {
    return { ...r, ran: false, pass: null, skipped: `the device refused it: ${refused.replace(/^=+\s*/, '').trim()}` };
  }
  r.ran = true;
  r.errors = err ? Number(err[1]) : race ? Number(race[2]) : null;
  if (race) r.racecheck = { hazards: Number(race[1]), errors: Number(race[2]), warnings: Number(race[3]) };
  r.case = caseLine ? JSON.parse(caseLine) : null;
  // The first reports, e.g. "Invalid __global__ read of size 4 bytes" with the kernel's name.
  r.firstReports = lines
    .filter((l) => l.startsWith('=========') && !/SUMMARY|COMPUTE-SANITIZER|^=========\s*$/.test(l))
    .slice(0, 40);
  r.pass = exit === 0 && r.errors === 0 && !!r.case?.ok;
  if (!r.pass) r.logTail = lines.slice(-40).join('\n');
  return r;
}

/** The peer's JSON lines (one per run); a line that is not JSON is kept as { unparsed }. */
export function readPeerLines(text) {
  return text
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => {
      try {
        return JSON.parse(l);
      } catch {
        return { unparsed: l.slice(0, 400) };
      }
    });
}

const sameShape = (a, [B, D, L, N]) => a.batch === B && a.dim === D && a.L === L && a.N === N;
const ratio = (theirs, ours) => (theirs > 0 && ours > 0 ? theirs / ours : null);

/**
 * Ours beside mamba_ssm per shape the peer timed (without the L2 flush, as ours runs): our bench
 * rows of the same (batch, dim, L, N) and dtype, and mamba_ssm time / ours (> 1: ours faster).
 */
export function peerComparison(bench, peerLines, dtype = 'bfloat16') {
  const timed = peerLines.filter((p) => Array.isArray(p.shape) && p.median_ms !== undefined && !p.l2_flush);
  return timed.map((p) => {
    const ours = (op) =>
      bench?.cases.find((c) => c.kind === 'scan' && c.dtype === dtype && c.op === op && sameShape(c.shape, p.shape))
        ?.medianMs ?? null;
    const flushed = peerLines.find(
      (q) => q.l2_flush && q.median_ms !== undefined && q.shape?.join() === p.shape.join(),
    );
    const o = { fwd: ours('fwd'), bwd: ours('bwd'), bwdDet: ours('bwd-det'), fwdBwd: ours('fwd+bwd') };
    const t = { fwd: p.fwd?.median_ms ?? null, bwd: p.bwd?.median_ms ?? null, fwdBwd: p.median_ms };
    return {
      shapeName: p.shape_name ?? p.shape.join('x'),
      shape: { batch: p.shape[0], dim: p.shape[1], L: p.shape[2], N: p.shape[3] },
      dtype: p.dtype,
      ours: o,
      mamba: { ...t, peakMemBytes: p.peak_mem_bytes ?? null, check: p.check?.pass ?? null },
      mambaWithL2Flush: flushed ? { fwd: flushed.fwd?.median_ms ?? null, fwdBwd: flushed.median_ms } : null,
      speedup: { fwd: ratio(t.fwd, o.fwd), bwd: ratio(t.bwd, o.bwd), fwdBwd: ratio(t.fwdBwd, o.fwdBwd) },
    };
  });
}

/** The goals of the first GPU run (issue #16), each { goal, measured, target, met } (met null: not measured). */
export function sessionGoals(bench, comparison) {
  const at = (name) => comparison.find((c) => c.shapeName === name);
  const goal = (text, measured, target, ok) => ({
    goal: text,
    measured,
    target,
    met: measured === null || measured === undefined ? null : ok(measured),
  });
  const scanRows = (bench?.cases ?? []).filter((c) => c.kind === 'scan');
  const detOverDefault = scanRows
    .filter((c) => c.op === 'bwd-det')
    .map((c) => {
      const def = scanRows.find((d) => d.op === 'bwd' && d.shapeName === c.shapeName && d.dtype === c.dtype);
      return def ? c.medianMs / def.medianMs : null;
    })
    .filter((x) => x !== null);
  const step = (bench?.cases ?? []).find(
    (c) => c.kind === 'step' && c.shapeName === 'step-b256-channels' && c.dtype === 'bfloat16',
  );
  // The selective scan's S1 (the ssd rows record theirs too, kind 'ssd').
  const mem = bench?.memory?.find((m) => (m.kind ?? 'scan') === 'scan');
  return [
    goal('forward at S1, mamba_ssm time / ours', at('S1')?.speedup.fwd ?? null, '≥ 1.3', (x) => x >= 1.3),
    goal('forward at S3, mamba_ssm time / ours', at('S3')?.speedup.fwd ?? null, '≥ 2', (x) => x >= 2),
    goal('backward at S1, mamba_ssm time / ours', at('S1')?.speedup.bwd ?? null, '≥ 1.2', (x) => x >= 1.2),
    goal(
      'deterministic backward / default, the worst shape',
      detOverDefault.length ? Math.max(...detOverDefault) : null,
      '≤ 1.25',
      (x) => x <= 1.25,
    ),
    goal(
      'step at batch 256, dim 5120, N 16 (bf16): GB/s / copy bandwidth',
      step ? step.roofline.gbps / step.roofline.copyBandwidthGBps : null,
      '≥ 0.8',
      (x) => x >= 0.8,
    ),
    goal(
      'peak memory of forward + backward at S1 / (inputs + out + checkpoints + gradients)',
      mem ? mem.peakAllocatedBytes / (mem.inputBytes + mem.outputBytes + mem.gradientBytes) : null,
      '≤ 1.1',
      (x) => x <= 1.1,
    ),
  ];
}

const ms = (x) =>
  x === null || x === undefined ? '–' : x >= 100 ? x.toFixed(0) : x >= 1 ? x.toFixed(2) : x.toPrecision(3);
const times = (x) => (x === null || x === undefined ? '–' : `${x.toFixed(2)}×`);
const num = (x) => (x === null || x === undefined ? '–' : `${+x.toPrecision(3)}`);
const gib = (b) => (b === null || b === undefined ? '–' : `${(b / 2 ** 30).toFixed(2)} GiB`);

/** One line per step for the report's first table. */
function stepResult(step, s) {
  if (step.name === 'tests') {
    const c = s.tests?.counts;
    return c ? `${c.passed} passed, ${c.failed} failed, ${c.skipped} skipped` : (s.tests?.error ?? 'no result');
  }
  if (step.name === 'bench') {
    const b = s.bench;
    if (!b) return 'no result';
    const failed = b.checks.filter((c) => !c.pass).length;
    return `${b.cases.length} rows, ${b.checks.length - failed} of ${b.checks.length} checks passed, ${b.errors.length} errors`;
  }
  if (step.name === 'mamba_ssm') {
    const runs = s.peer.lines.filter((p) => p.median_ms !== undefined);
    const errors = s.peer.lines.filter((p) => p.error || p.unparsed);
    const checks = runs.filter((p) => p.check);
    return (
      s.peer.missing ??
      `${runs.length} timed runs, ${checks.filter((p) => p.check.pass).length} of ${checks.length} checks passed` +
        (errors.length ? `; ${errors.length} failed: ${errors[0].error ?? errors[0].unparsed}` : '')
    );
  }
  const run = s.sanitizer?.runs.find((r) => r.tool === step.name);
  if (run) {
    if (run.skipped) return `skipped: ${run.skipped}`;
    if (!run.ran) return run.error;
    return `${run.errors ?? '?'} errors${run.racecheck ? `, ${run.racecheck.hazards} hazards` : ''}${run.case ? `, ${run.case.calls} calls` : ''}${run.timedOut ? ', timed out' : ''}`;
  }
  return step.exit === 0 ? 'ok' : `exit ${step.exit}`;
}

/** The session's report in markdown: steps, ours beside mamba_ssm, the goals, peak memory. */
export function sessionMarkdown(s) {
  const d = s.device;
  const out = [];
  out.push(`## GPU session: ${d.name}${s.dryRun ? ' — DRY RUN (no GPU: the GPU steps ran on the CPU)' : ''}`);
  out.push('');
  out.push(
    `- date ${s.date}, commit ${s.commit.hash ? s.commit.hash.slice(0, 12) : 'unknown'}${s.commit.clean === false ? ' (tree modified)' : ''}` +
      (d.driver
        ? `, driver ${d.driver}, CUDA ${d.cudaDriverVersion ?? '?'} (driver) / ${d.cudaRuntime ?? '?'} (runtime)`
        : ''),
  );
  out.push(`- ${s.seconds} s in all (budget ${s.budgetSeconds} s); status: ${s.status}`);
  out.push('');
  out.push(
    mdTable(
      ['step', 'result', 'seconds', 'exit'],
      s.steps.map((st) => [st.name, stepResult(st, s), String(st.seconds), String(st.exit)]),
      ['l', 'l', 'r', 'r'],
    ),
  );

  out.push('');
  out.push(
    `### Ours beside mamba_ssm (${s.peer.dtype}, z, D, softplus, input-dependent B and C; ms; × = mamba_ssm time / ours, > 1: ours faster)`,
  );
  out.push('');
  if (s.peer.comparison.length) {
    out.push(
      mdTable(
        [
          'shape',
          'size',
          'ours fwd',
          'mamba fwd',
          '× fwd',
          'ours bwd',
          'mamba bwd',
          '× bwd',
          'ours fwd+bwd',
          'mamba fwd+bwd',
          '× fwd+bwd',
          'ours bwd-det',
          'mamba check',
        ],
        s.peer.comparison.map((c) => [
          c.shapeName,
          shapeText(c.shape),
          ms(c.ours.fwd),
          ms(c.mamba.fwd),
          times(c.speedup.fwd),
          ms(c.ours.bwd),
          ms(c.mamba.bwd),
          times(c.speedup.bwd),
          ms(c.ours.fwdBwd),
          ms(c.mamba.fwdBwd),
          times(c.speedup.fwdBwd),
          ms(c.ours.bwdDet),
          c.mamba.check === null ? '–' : c.mamba.check ? 'pass' : '**FAIL**',
        ]),
        ['l', 'l'],
      ),
    );
    const flushed = s.peer.comparison.filter((c) => c.mambaWithL2Flush);
    if (flushed.length)
      out.push(
        '',
        `mamba_ssm with the L2 flushed before each call (its own default): ${flushed.map((c) => `${c.shapeName} fwd ${ms(c.mambaWithL2Flush.fwd)} ms, fwd+bwd ${ms(c.mambaWithL2Flush.fwdBwd)} ms`).join('; ')}.`,
      );
  } else {
    out.push(`No mamba_ssm timings: ${s.peer.missing ?? 'see the mamba_ssm step above and the logs'}.`);
  }
  out.push('');
  out.push(
    'Both timed with CUDA events on the same inputs sizes, back to back without flushing the L2: ours around batches of calls (allocation of outputs included), mamba_ssm around each launcher call (its accumulators zeroed outside). mamba_ssm\'s forward always writes its (a, b) checkpoints; "ours fwd" writes none (ours fwd-save does: see the bench report).',
  );

  out.push('');
  out.push('### Goals of the first GPU run');
  out.push('');
  const met = (g) => (s.dryRun ? '(dry run)' : g.met === null ? 'not measured' : g.met ? 'yes' : '**no**');
  out.push(
    mdTable(
      ['goal', 'measured', 'target', 'met'],
      s.goals.map((g) => [g.goal, num(g.measured), g.target, met(g)]),
      ['l', 'r', 'l', 'l'],
    ),
  );
  const mem = s.bench?.memory?.find((m) => (m.kind ?? 'scan') === 'scan');
  if (mem) {
    out.push('');
    out.push(
      `Peak memory, forward + backward at ${mem.shapeName} ${mem.dtype}: ${gib(mem.peakAllocatedBytes)} (inputs ${gib(mem.inputBytes)}, out + checkpoints ${gib(mem.outputBytes)}, gradients ${gib(mem.gradientBytes)}).`,
    );
  }
  if (s.notes.length) out.push('', '### Notes', '', s.notes.map((n) => `- ${n}`).join('\n'));
  return `${out.join('\n')}\n`;
}
