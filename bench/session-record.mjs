#!/usr/bin/env node
// Result files of bench/gpu-session.sh (docs/ARCHITECTURE.md, "Benchmarks and the roofline"), and its summary.
//   node bench/session-record.mjs tests --out F --vitest-json J --exit N --seconds S --log L --command C
//   node bench/session-record.mjs sanitizer --out F --command C --run TOOL:EXIT:SECONDS:LOG:COMMAND [--run ...]
//   node bench/session-record.mjs summary FILE.json...
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { cuda } from 'selective-scan';
import { resultHeader } from './lib/device.mjs';
import { makeTarget } from './lib/targets.mjs';

const [what, ...rest] = process.argv.slice(2);
const target = () => makeTarget(cuda.isAvailable() ? 'cuda' : 'cpu');
const readMaybe = (f) => {
  try {
    return fs.readFileSync(f, 'utf8');
  } catch {
    return null;
  }
};
const tail = (text, n = 30) => (text ?? '').split('\n').slice(-n).join('\n');

function tests() {
  const { values: v } = parseArgs({
    args: rest,
    options: {
      out: { type: 'string' },
      'vitest-json': { type: 'string' },
      exit: { type: 'string' },
      seconds: { type: 'string' },
      log: { type: 'string' },
      command: { type: 'string' },
    },
  });
  const exit = Number(v.exit);
  const res = {
    ...resultHeader('tests', target(), v.command ?? null),
    exitCode: exit,
    timedOut: exit === 124,
    seconds: Number(v.seconds),
  };
  const raw = v['vitest-json'] && readMaybe(v['vitest-json']);
  if (raw) {
    const j = JSON.parse(raw);
    res.success = !!j.success && exit === 0;
    res.counts = {
      total: j.numTotalTests,
      passed: j.numPassedTests,
      failed: j.numFailedTests,
      skipped: (j.numPendingTests ?? 0) + (j.numTodoTests ?? 0),
      suites: j.numTotalTestSuites,
    };
    res.files = (j.testResults ?? []).map((f) => ({
      file: path.relative(process.cwd(), f.name),
      status: f.status,
      tests: f.assertionResults?.length ?? 0,
      message: f.message || undefined,
    }));
    res.failures = (j.testResults ?? []).flatMap((f) =>
      (f.assertionResults ?? [])
        .filter((a) => a.status === 'failed')
        .map((a) => ({ name: a.fullName, message: (a.failureMessages ?? []).join('\n').slice(0, 800) })),
    );
    res.tests = (j.testResults ?? []).flatMap((f) =>
      (f.assertionResults ?? []).map((a) => ({ name: a.fullName, status: a.status, ms: a.duration ?? null })),
    );
  } else {
    res.success = false;
    res.counts = null;
    res.error = exit === 124 ? 'timed out' : 'no vitest JSON report (see logTail)';
  }
  res.logTail = tail(readMaybe(v.log), res.success ? 8 : 60);
  fs.writeFileSync(v.out, `${JSON.stringify(res, null, 1)}\n`);
}

function sanitizer() {
  const { values: v } = parseArgs({
    args: rest,
    options: { out: { type: 'string' }, command: { type: 'string' }, run: { type: 'string', multiple: true } },
  });
  const runs = (v.run ?? []).map((spec) => {
    const [tool, exit, seconds, log, command] = spec.split(':');
    const text = readMaybe(log);
    const r = {
      tool,
      command: command || undefined,
      exitCode: Number(exit),
      timedOut: Number(exit) === 124,
      seconds: Number(seconds),
    };
    if (exit === 'skipped')
      return {
        ...r,
        exitCode: null,
        ran: false,
        pass: false,
        error: 'skipped: compute-sanitizer not found, or no GPU',
      };
    if (text === null) return { ...r, ran: false, pass: false, error: 'no log' };
    const err = /ERROR SUMMARY:\s*(\d+)\s+error/.exec(text);
    const race = /RACECHECK SUMMARY:\s*(\d+)\s+hazards? displayed\s*\((\d+)\s+errors?,\s*(\d+)\s+warnings?\)/.exec(
      text,
    );
    const caseLine = text
      .split('\n')
      .reverse()
      .find((l) => l.startsWith('{"ok"'));
    r.ran = true;
    r.errors = err ? Number(err[1]) : race ? Number(race[2]) : null;
    if (race) r.racecheck = { hazards: Number(race[1]), errors: Number(race[2]), warnings: Number(race[3]) };
    r.case = caseLine ? JSON.parse(caseLine) : null;
    // The first reports, e.g. "Invalid __global__ read of size 4 bytes" with the kernel's name.
    r.firstReports = text
      .split('\n')
      .filter((l) => l.startsWith('=========') && !/SUMMARY|COMPUTE-SANITIZER|^=========\s*$/.test(l))
      .slice(0, 40);
    r.pass = r.exitCode === 0 && r.errors === 0 && (!race || Number(race[2]) === 0) && !!r.case?.ok;
    if (!r.pass) r.logTail = tail(text, 40);
    return r;
  });
  const res = {
    ...resultHeader('sanitizer', target(), v.command ?? null),
    runs,
    pass: runs.length > 0 && runs.every((r) => r.pass),
  };
  fs.writeFileSync(v.out, `${JSON.stringify(res, null, 1)}\n`);
}

function summary() {
  const lines = [];
  const ms = (x) =>
    x === null || x === undefined ? '–' : x >= 100 ? x.toFixed(0) : x >= 1 ? x.toFixed(2) : x.toPrecision(3);
  const pct = (x) => (x ? `${(x * 100).toFixed(0)} %` : '–');
  const gib = (b) => (b === null || b === undefined ? '–' : `${(b / 2 ** 30).toFixed(2)} GiB`);
  const files = rest.filter((f) => fs.existsSync(f));
  for (const f of files) {
    const r = JSON.parse(fs.readFileSync(f, 'utf8'));
    if (r.what === 'tests') {
      const c = r.counts;
      lines.push(
        c
          ? `tests: ${c.passed} passed, ${c.failed} failed, ${c.skipped} skipped (${r.seconds} s)${r.success ? '' : ' — FAILED'}` +
              (r.failures?.length
                ? `\n  failed: ${r.failures
                    .slice(0, 8)
                    .map((x) => x.name)
                    .join('; ')}`
                : '')
          : `tests: ${r.error} (exit ${r.exitCode}, ${r.seconds} s)`,
      );
    } else if (r.what === 'sanitizer') {
      for (const s of r.runs) {
        lines.push(
          `${s.tool}: ${s.ran ? `${s.errors ?? '?'} errors` : 'did not run'}` +
            (s.racecheck
              ? `, ${s.racecheck.hazards} hazards (${s.racecheck.errors} errors, ${s.racecheck.warnings} warnings)`
              : '') +
            (s.case ? `, case ${s.case.ok ? 'ok' : 'NOT ok'} (${s.case.calls} calls)` : '') +
            ` (${s.seconds} s${s.timedOut ? ', timed out' : ''})${s.pass ? '' : ' — FAILED'}`,
        );
        if (!s.pass && s.firstReports?.length) lines.push(...s.firstReports.slice(0, 6).map((l) => `    ${l}`));
      }
    } else if (r.what === 'bench') {
      const d = r.device;
      const num = (x, k, scale = 1) => (typeof x === 'number' ? (x / scale).toFixed(k) : '?');
      lines.push(
        `bench on ${d.name}: copy ${num(r.machine?.copyBandwidthGBps, 0)} GB/s, exp2 ${num(r.machine?.exp2Rate, 1, 1e9)} G/s`,
      );
      if (r.errors?.length)
        lines.push(
          `  ${r.errors.length} case(s) threw: ${r.errors
            .slice(0, 4)
            .map((e) => `${e.case}: ${e.message}`)
            .join('; ')}`,
        );
      const names = [...new Set(r.cases.filter((c) => c.kind === 'scan').map((c) => c.shapeName))];
      for (const name of names) {
        for (const dtype of ['bfloat16', 'float32']) {
          const get = (op) => r.cases.find((c) => c.shapeName === name && c.dtype === dtype && c.op === op);
          const f = get('fwd');
          const b = get('bwd');
          const bd = get('bwd-det');
          if (!f) continue;
          lines.push(
            `  ${name} ${dtype}: fwd ${ms(f.medianMs)} ms (${pct(f.roofline?.fractionOfFloor)} of floor)` +
              (b ? `, bwd ${ms(b.medianMs)} ms (${pct(b.roofline?.fractionOfFloor)})` : '') +
              (bd ? `, bwd-det ${ms(bd.medianMs)} ms` : ''),
          );
        }
      }
      const steps = r.cases.filter((c) => c.kind === 'step' && c.dtype === 'bfloat16');
      if (steps.length)
        lines.push(
          `  step bf16: ${steps.map((c) => `${c.shapeName.replace('step-', '')} ${ms(c.medianMs)} ms`).join(', ')}`,
        );
      for (const m of r.memory ?? []) {
        lines.push(
          `  peak memory ${m.shapeName} ${m.dtype} fwd+bwd: ${gib(m.peakAllocatedBytes)} (live before ${gib(m.allocatedBeforeBytes)}; inputs ${gib(m.inputBytes)}, out+checkpoints ${gib(m.outputBytes)}, gradients ${gib(m.gradientBytes)})`,
        );
      }
      for (const c of r.comparisons ?? []) {
        if (c.speedup?.torchFwd || c.speedup?.torchFwdBwd) {
          lines.push(
            `  vs ${c.torch?.kind?.split(' (')[0] ?? 'PyTorch'} at ${c.shapeName}: fwd ${c.speedup.torchFwd?.toFixed(1) ?? '–'}×, fwd+bwd ${c.speedup.torchFwdBwd?.toFixed(1) ?? '–'}×`,
          );
        }
      }
      if (r.ratio)
        lines.push(
          `  CPU ratio vs PyTorch at (2, 256, 1024, 16): fwd ${r.ratio.fwd.toFixed(1)}×, fwd+bwd ${r.ratio.fwdBwd.toFixed(1)}× (target 20×)`,
        );
      const failed = (r.checks ?? []).filter((c) => !c.pass);
      lines.push(
        `  agreement checks: ${(r.checks ?? []).length - failed.length} passed${failed.length ? `, FAILED: ${failed.map((c) => `${c.name} ${c.dtype}`).join('; ')}` : ''}`,
      );
    }
  }
  console.log(lines.join('\n'));
}

if (what === 'tests') tests();
else if (what === 'sanitizer') sanitizer();
else if (what === 'summary') summary();
else {
  console.error('usage: session-record.mjs tests|sanitizer|summary ...');
  process.exit(2);
}
