#!/usr/bin/env node
// The result files of bench/gpu-session.sh (docs/ARCHITECTURE.md, "Benchmarks and the roofline"):
//   node bench/session-record.mjs preflight [--dry-run]
//       the addon must have CUDA for sm_90 and see a GPU: prints what it found as JSON; exit 2 and
//       the reason on stderr when not (with --dry-run: exit 0, the reason in the JSON)
//   node bench/session-record.mjs tests --out F --vitest-json J --exit N --seconds S --log L --command C
//   node bench/session-record.mjs sanitizer --out F --command C --run TOOL:EXIT:SECONDS:LOG:COMMAND ...
//                                 [--skip TOOL:REASON ...]
//   node bench/session-record.mjs sanitizer-refused LOG
//       prints why the device refused compute-sanitizer, per its log; nothing when it did not
//   node bench/session-record.mjs report --out-json F --out-md F [--tests F] [--sanitizer F] [--bench F]
//        [--peer-jsonl F | --peer-missing REASON] --step NAME:EXIT:SECONDS ... --budget S --seconds S [--dry-run]
//       the session's report (ours beside mamba_ssm, the goals); prints it; exit 1 when something failed
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { buildInfo, cuda } from 'selective-scan';
import { resultHeader } from './lib/device.mjs';
import {
  peerComparison,
  preflightProblems,
  readPeerLines,
  readSanitizerRun,
  sessionGoals,
  sessionMarkdown,
} from './lib/session.mjs';
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
const readJson = (f) => (f && readMaybe(f) ? JSON.parse(readMaybe(f)) : null);
const tail = (text, n = 30) => (text ?? '').split('\n').slice(-n).join('\n');
const write = (file, obj) => fs.writeFileSync(file, `${JSON.stringify(obj, null, 1)}\n`);

function preflight() {
  const dryRun = rest.includes('--dry-run');
  const build = buildInfo();
  const problems = preflightProblems(build, { available: cuda.isAvailable(), reason: cuda.unavailableReason });
  const found = { build, cudaAvailable: cuda.isAvailable(), unavailableReason: cuda.unavailableReason, problems };
  if (cuda.isAvailable()) found.devices = cuda.deviceCount();
  console.log(JSON.stringify(found));
  if (problems.length && !dryRun) {
    console.error(problems.map((p) => `gpu-session: ${p}`).join('\n'));
    process.exitCode = 2;
  }
}

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
    res.error = exit === 124 ? `timed out after ${v.seconds} s` : 'no vitest JSON report (see logTail)';
  }
  res.logTail = tail(readMaybe(v.log), res.success ? 8 : 60);
  write(v.out, res);
}

function sanitizer() {
  const { values: v } = parseArgs({
    args: rest,
    options: {
      out: { type: 'string' },
      command: { type: 'string' },
      run: { type: 'string', multiple: true },
      skip: { type: 'string', multiple: true },
    },
  });
  const runs = (v.run ?? []).map((spec) => {
    const [tool, exit, seconds, log, ...command] = spec.split(':');
    return readSanitizerRun({
      tool,
      exit: Number(exit),
      seconds: Number(seconds),
      log: readMaybe(log),
      command: command.join(':'),
    });
  });
  for (const spec of v.skip ?? []) {
    const [tool, ...reason] = spec.split(':');
    runs.push({ tool, ran: false, pass: null, skipped: reason.join(':') });
  }
  const res = {
    ...resultHeader('sanitizer', target(), v.command ?? null),
    runs,
    // Skipped runs (no compute-sanitizer, or the device refused it) neither pass nor fail.
    pass: runs.every((r) => r.pass !== false),
    ran: runs.some((r) => r.ran),
  };
  write(v.out, res);
}

function sanitizerRefused() {
  const r = readSanitizerRun({ tool: '', exit: 0, seconds: 0, log: readMaybe(rest[0]) });
  if (r.skipped) console.log(r.skipped);
}

function report() {
  const { values: v } = parseArgs({
    args: rest,
    options: {
      'out-json': { type: 'string' },
      'out-md': { type: 'string' },
      tests: { type: 'string' },
      sanitizer: { type: 'string' },
      bench: { type: 'string' },
      'peer-jsonl': { type: 'string' },
      'peer-missing': { type: 'string' },
      step: { type: 'string', multiple: true },
      budget: { type: 'string' },
      seconds: { type: 'string' },
      'dry-run': { type: 'boolean' },
    },
  });
  const bench = readJson(v.bench);
  const lines = v['peer-jsonl'] ? readPeerLines(readMaybe(v['peer-jsonl']) ?? '') : [];
  const comparison = peerComparison(bench, lines);
  const s = {
    ...resultHeader('session', target(), 'bash bench/gpu-session.sh'),
    dryRun: !!v['dry-run'],
    budgetSeconds: Number(v.budget),
    seconds: Number(v.seconds),
    steps: (v.step ?? []).map((spec) => {
      const [name, exit, seconds] = spec.split(':');
      return { name, exit: Number(exit), seconds: Number(seconds) };
    }),
    tests: readJson(v.tests),
    sanitizer: readJson(v.sanitizer),
    bench,
    peer: { dtype: 'bfloat16', missing: v['peer-missing'], lines, comparison },
    goals: sessionGoals(bench, comparison),
    notes: [],
  };
  const failures = [];
  if (!s.tests?.success) failures.push('tests');
  if (s.sanitizer && !s.sanitizer.pass) failures.push('sanitizer');
  if (!bench) failures.push('bench (no result)');
  else if (bench.errors.length || bench.checks.some((c) => !c.pass)) failures.push('bench (errors or checks)');
  if (lines.some((p) => p.check && !p.check.pass)) failures.push("mamba_ssm's --check");
  s.status = failures.length ? `FAILED: ${failures.join(', ')}` : 'all passed';
  if (s.dryRun)
    s.notes.push('Dry run: no GPU; the benchmark ran its GPU code path on the CPU at tiny shapes (CPU numbers).');
  if (s.sanitizer && !s.sanitizer.ran) s.notes.push('compute-sanitizer did not run: see the sanitizer step.');
  const md = sessionMarkdown(s);
  // The full bench and test results are in their own files; the session keeps what it adds.
  const { bench: _b, tests: _t, sanitizer: _s, ...kept } = s;
  write(v['out-json'], { ...kept, files: { tests: v.tests, sanitizer: v.sanitizer, bench: v.bench } });
  fs.writeFileSync(v['out-md'], md);
  process.stdout.write(md);
  process.exitCode = failures.length ? 1 : 0;
}

const commands = { preflight, tests, sanitizer, 'sanitizer-refused': sanitizerRefused, report };
if (commands[what]) commands[what]();
else {
  console.error(`usage: session-record.mjs ${Object.keys(commands).join('|')} ...`);
  process.exit(2);
}
