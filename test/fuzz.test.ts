// Random hostile input at every public function (issue #10): wrong types, disguised typed arrays,
// proxies, getters that throw, huge, odd, negative and NaN shapes, a polluted Object.prototype,
// writes to tensor metadata, disposed tensors, tensors of another instance of the package or of
// another device. Each case must end with a clear error naming the function or a well-formed
// result (equal to the clean call's where the mutation must not matter), never a signal or an
// internal error. The cases run in batches in child processes (test/fuzz/batch.mjs; the targets
// are listed in test/fuzz/targets.mjs, one entry per function); a crash costs one batch, names its
// case, and the case is replayed alone to say whether it crashes by itself.
//
//   SELECTIVE_SCAN_FUZZ_SEED=<n>     replay a run (the seed is printed; default: a random one)
//   SELECTIVE_SCAN_FUZZ_CASES=<n>    how many cases (default 2,000)
//   SELECTIVE_SCAN_FUZZ_ONLY=17,42   just these cases of the seed
//   node test/fuzz/batch.mjs <seed> 17 --verbose     one case, in this terminal
import { spawn } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import * as api from './helpers/api.js';

const BATCH = fileURLToPath(new URL('./fuzz/batch.mjs', import.meta.url));
const SEED = Number(process.env.SELECTIVE_SCAN_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const COUNT = Number(process.env.SELECTIVE_SCAN_FUZZ_CASES ?? 2000);
const ONLY = process.env.SELECTIVE_SCAN_FUZZ_ONLY?.split(',').map(Number);
const CASES = ONLY ?? Array.from({ length: COUNT }, (_, i) => i);
const PER_CHILD = 250;
const CHILD_TIMEOUT_MS = 60_000;

interface CaseLine {
  i: number;
  target?: string;
  mutations?: string[];
  ok: boolean;
  problem: string | null;
  outcome?: string;
}

interface Failure extends Partial<CaseLine> {
  i: number;
  problem: string;
  alone?: string;
}

interface ChildRun {
  lines: CaseLine[];
  started: number[];
  calling: Map<number, { target: string; mutations: string[] }>;
  signal: NodeJS.Signals | 'hung' | null; // hung: killed after CHILD_TIMEOUT_MS
  status: number | null;
  stderr: string;
}

function runChild(indices: number[]): Promise<ChildRun> {
  return new Promise((resolve) => {
    const start = Date.now();
    const child = spawn(process.execPath, [BATCH, String(SEED), indices.join(',')], { timeout: CHILD_TIMEOUT_MS });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('close', (status, signal) => {
      const lines: CaseLine[] = [];
      const started: number[] = [];
      const calling = new Map<number, { target: string; mutations: string[] }>();
      for (const line of stdout.split('\n')) {
        if (line.startsWith('start ')) started.push(Number(line.slice(6)));
        else if (line.startsWith('calling ')) {
          const about = JSON.parse(line.slice(8));
          calling.set(about.i, about);
        } else if (line.startsWith('{')) lines.push(JSON.parse(line));
      }
      const hung = signal === 'SIGTERM' && Date.now() - start >= CHILD_TIMEOUT_MS;
      resolve({ lines, started, calling, signal: hung ? 'hung' : signal, status, stderr: stderr.slice(-2000) });
    });
  });
}

/** Runs `indices` in as many children as it takes: after a crash, the rest go to a new child. */
async function runBatch(indices: number[]): Promise<{ lines: CaseLine[]; failures: Failure[] }> {
  const lines: CaseLine[] = [];
  const failures: Failure[] = [];
  let rest = indices;
  while (rest.length > 0) {
    const run = await runChild(rest);
    lines.push(...run.lines);
    const done = new Set(run.lines.map((l) => l.i));
    const crashed = run.started.find((i) => !done.has(i));
    if (crashed === undefined && run.status === 0) break;
    if (crashed === undefined) {
      failures.push({
        i: rest[0]!,
        problem: `the batch exited with status ${run.status} before its first case: ${run.stderr}`,
      });
      break;
    }
    // Replayed alone: does the case crash by itself, or only after the cases before it?
    const alone = await runChild([crashed]);
    failures.push({
      ...run.calling.get(crashed),
      i: crashed,
      problem: `the process ended (${run.signal ?? `status ${run.status}`}) during this case: ${run.stderr}`,
      alone:
        alone.lines.length === 1
          ? `alone it ${alone.lines[0]!.ok ? 'passes' : 'fails'}`
          : `alone it ends the process too (${alone.signal ?? alone.status})`,
    });
    rest = rest.slice(rest.indexOf(crashed) + 1);
  }
  return { lines, failures };
}

describe('fuzz: every public function against random hostile input', () => {
  it('every runtime export of the package has a fuzz target, and every target an export', async () => {
    const { TARGETS } = (await import('./fuzz/targets.mjs')) as { TARGETS: { name: string; export: string }[] };
    const exported = Object.keys(api).sort();
    const covered = [...new Set(TARGETS.map((t) => t.export))].sort();
    expect(covered).toEqual(exported);
    // Every method and getter of the classes too ([Symbol.dispose] calls dispose).
    for (const [cls, prototype] of [
      ['Tensor', api.Tensor.prototype],
      ['ScanContext', api.ScanContext.prototype],
      ['SsdContext', api.SsdContext.prototype],
    ] as const) {
      for (const m of Object.getOwnPropertyNames(prototype).filter((m) => m !== 'constructor')) {
        expect(TARGETS.map((t) => t.name)).toContain(`${cls}.${m}`);
      }
    }
  });

  it(`${CASES.length} cases (seed ${SEED}): a clear error or a well-formed result, never a crash`, async () => {
    console.log(`fuzz: seed ${SEED}; replay with SELECTIVE_SCAN_FUZZ_SEED=${SEED}`);
    const start = Date.now();
    const batches: number[][] = [];
    for (let k = 0; k < CASES.length; k += PER_CHILD) batches.push(CASES.slice(k, k + PER_CHILD));
    // As many children at once as there are cores.
    const parallel = Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
    const results: { lines: CaseLine[]; failures: Failure[] }[] = [];
    for (let k = 0; k < batches.length; k += parallel) {
      results.push(...(await Promise.all(batches.slice(k, k + parallel).map(runBatch))));
    }
    const lines = results.flatMap((r) => r.lines);
    const failures: Failure[] = [
      ...results.flatMap((r) => r.failures),
      ...lines.filter((l) => !l.ok).map((l) => ({ ...l, problem: l.problem ?? 'failed' })),
    ].sort((a, b) => a.i - b.i);
    const seconds = (Date.now() - start) / 1000;
    const targets = new Set(lines.map((l) => l.target)).size;
    console.log(
      `fuzz: ${lines.length} cases over ${targets} targets in ${seconds.toFixed(1)} s, ${failures.length} failed`,
    );
    const report = failures
      .slice(0, 20)
      .map(
        (f) =>
          `case ${f.i} (${f.target ?? '?'}; ${f.mutations?.join('; ') || 'valid'}): ${f.problem}${f.outcome ? ` -> ${f.outcome}` : ''}${f.alone ? ` [${f.alone}]` : ''}`,
      )
      .join('\n');
    expect(
      failures,
      `seed ${SEED}: replay with SELECTIVE_SCAN_FUZZ_SEED=${SEED} SELECTIVE_SCAN_FUZZ_ONLY=${failures
        .slice(0, 20)
        .map((f) => f.i)
        .join(',')}\n${report}`,
    ).toEqual([]);
    expect(lines.length).toBe(CASES.length);
  }, 180_000);
});
