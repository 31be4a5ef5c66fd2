// The CUDA kernels on the CPU. No machine that builds or tests this project has a GPU, so here the
// real CUDA sources of csrc/ run on an emulator of the CUDA execution model (every thread a
// fiber, warp shuffles and barriers exact; see test/emulation/README.md), and every op of the CUDA
// backend is compared with the CPU backend over the option space: forward, backward (default and
// deterministic), the step in its three forms. The emulator also reports what a GPU would fault on
// (misaligned vector loads, writes out of bounds, divergent shuffles, deadlocks, launches the
// runtime rejects, races between blocks) and reruns each op under other thread and block orders: a result that changes
// is a missing barrier or a dependence on block order.
//
// Needs only g++; skipped, with the reason, where there is none. The binary is cached in
// build/emulation by a hash of its sources: a rerun compiles nothing.
import { execFileSync, spawn } from 'node:child_process';
import os from 'node:os';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildEmulator, findCompiler } from './emulation/build.mjs';

interface CheckLine {
  what: string;
  pass: boolean;
  rel: number | null;
  elem: number | null;
  tol: number | null;
  tolElem: number | null;
  detail: string;
}
interface CaseLine {
  group: string;
  name: string;
  pass: boolean;
  ms: number;
  checks: CheckLine[];
  faults: string[];
}
interface Summary {
  cases: number;
  failed: number;
  seconds: number;
  launches: number;
  collectives: number;
  vectorLoads: number;
  cpuIsa: string;
}

const compiler = findCompiler();
const SKIP = compiler.missing ?? null;
if (SKIP) console.warn(`kernel emulation tests skipped: ${SKIP}`);
const TITLE = SKIP ? `CUDA kernels on the CPU emulator (skipped: ${SKIP})` : 'CUDA kernels on the CPU emulator';

// The binary is built while the tests are collected (a rerun compiles nothing), so that the groups
// of cases come from the binary itself (`--groups`: one test each) rather than a hand-kept list.
// The first build compiles every kernel, the CPU backend three times and the cases: about a minute
// on two idle cores, several on a busy machine. Each compiled file is reported as it starts, and
// a compile that takes long is reported every 30 s, so that `npm test` is never silent for long
// (vitest prints these lines as they come, while the other test files run).
async function buildWithProgress() {
  const started = Date.now();
  let lastMessage = started;
  const log = (message: string) => {
    lastMessage = Date.now();
    console.info(`kernel emulation: ${message}`);
  };
  const progress = setInterval(() => {
    if (Date.now() - lastMessage >= 30_000) log(`still compiling (${Math.round((Date.now() - started) / 1000)} s)`);
  }, 5_000);
  try {
    return await buildEmulator({ log });
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  } finally {
    clearInterval(progress);
  }
}
const build = SKIP ? null : await buildWithProgress();
const built = build instanceof Error ? null : build;
const GROUPS: string[] = built
  ? execFileSync(built.binary, ['--groups'], { encoding: 'utf8' }).split('\n').filter(Boolean)
  : [];

interface ShardRun {
  stdout: string;
  stderr: string;
  code: number | null;
  signal: NodeJS.Signals | null;
}

function runShard(binary: string, shard: number, shards: number): Promise<ShardRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, ['--shard', `${shard}/${shards}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, UBSAN_OPTIONS: 'print_stacktrace=1' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ stdout, stderr, code, signal }));
  });
}

/** A failed case, with the numbers that failed it. */
function describeFailure(c: CaseLine): string {
  const num = (x: number | null) => (x === null ? 'n/a' : x.toExponential(2));
  const lines = [`${c.name}:`];
  for (const k of c.checks.filter((x) => !x.pass)) {
    const numbers =
      k.rel !== null || k.tol !== null
        ? ` rel ${num(k.rel)} (tol ${num(k.tol)}), worst element ${num(k.elem)} (tol ${num(k.tolElem)});`
        : '';
    lines.push(`  ${k.what}:${numbers} ${k.detail}`);
  }
  for (const f of c.faults) lines.push(`  fault: ${f}`);
  if (c.checks.length === 0 && c.faults.length === 0) lines.push('  no check ran');
  return lines.join('\n');
}

describe.skipIf(SKIP !== null)(TITLE, () => {
  const cases: CaseLine[] = [];
  const summaries: Summary[] = [];
  const runs: ShardRun[] = [];

  if (build instanceof Error) {
    it('builds', () => {
      throw build;
    });
    return;
  }

  beforeAll(async () => {
    if (!built) return;
    // The cases are independent: two processes use both cores of a CI machine.
    const shards = Math.max(1, Math.min(2, os.availableParallelism?.() ?? os.cpus().length));
    const started = Date.now();
    runs.push(...(await Promise.all(Array.from({ length: shards }, (_, i) => runShard(built.binary, i, shards)))));
    for (const run of runs) {
      for (const line of run.stdout.split('\n')) {
        if (!line.startsWith('{')) continue;
        const parsed = JSON.parse(line) as CaseLine | { summary: Summary };
        if ('summary' in parsed) summaries.push(parsed.summary);
        else cases.push(parsed);
      }
    }
    console.info(
      `kernel emulation: ${cases.length} cases; build ${built.seconds.toFixed(1)} s ` +
        `(${built.compiled} objects compiled${built.sanitizer ? ', UBSan' : ''}), run ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
  }, 900_000);

  for (const group of GROUPS) {
    it(group, () => {
      const inGroup = cases.filter((c) => c.group === group);
      expect(inGroup.length, `no case of '${group}' ran (did the emulator crash? see the last test)`).toBeGreaterThan(
        0,
      );
      expect(inGroup.filter((c) => !c.pass).map(describeFailure), `failed cases of '${group}'`).toEqual([]);
    });
  }

  it('ran to the end: no crash, no sanitizer report', () => {
    const tail = runs.map((r) => r.stderr.slice(-4000)).join('\n---\n');
    for (const run of runs) {
      expect(run.signal, `the emulator was killed by ${run.signal}; its stderr ends with:\n${tail}`).toBeNull();
    }
    expect(summaries.length, `a shard did not finish; stderr ends with:\n${tail}`).toBe(runs.length);
    expect(GROUPS.length, 'the emulator lists no groups of cases').toBeGreaterThan(0);
    // UBSan reports (misaligned stores, out-of-bounds indices, overflow) go to stderr, after the
    // "case: ..." line of the case that made them.
    const reports: string[] = [];
    for (const run of runs) {
      let current = '';
      for (const line of run.stderr.split('\n')) {
        if (line.startsWith('case: ')) current = line;
        else if (line.includes('runtime error:')) reports.push(`${current}\n${line}`);
      }
    }
    expect(reports, 'undefined behaviour in the kernels').toEqual([]);
    // The vectorized (16-byte) loads ran: cases with full, aligned chunks exist.
    expect(summaries.reduce((n, s) => n + s.vectorLoads, 0)).toBeGreaterThan(0);
  });
});
