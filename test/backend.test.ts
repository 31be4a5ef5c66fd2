// buildInfo(), setNumThreads() and the cuda object.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { Tensor, buildInfo, cuda, selectiveScan, setNumThreads } from './helpers/api.js';
import { expectThrow } from './helpers/expect-code.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));

function childEnv(env: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const merged = { ...process.env, ...env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete merged[k];
  return merged;
}

function childThreads(env: Record<string, string | undefined>): string {
  const script = "const s = require('selective-scan'); console.log(JSON.stringify(s.buildInfo().cpuThreads));";
  return execFileSync(process.execPath, ['-e', script], { cwd: ROOT, env: childEnv(env), encoding: 'utf8' }).trim();
}

// A child that loads the package (in the main thread and then in a worker thread) and prints its
// thread count, instruction set and host cache limit; its stderr holds the process's warnings.
function childBackend(env: Record<string, string | undefined>) {
  const script = `
    const s = require('selective-scan');
    const { Worker } = require('node:worker_threads');
    new Worker("require('selective-scan')", { eval: true }).on('exit', () => {
      const { cpuThreads: threads, cpuIsa: isa } = s.buildInfo();
      console.log(JSON.stringify({ threads, isa, hostCacheLimit: s.hostMemoryInfo().cacheLimitBytes }));
    });`;
  const child = spawnSync(process.execPath, ['-e', script], { cwd: ROOT, env: childEnv(env), encoding: 'utf8' });
  expect(child.status, child.stderr).toBe(0);
  const warnings = child.stderr.split('\n').filter((line) => line.includes('SelectiveScanWarning'));
  return { ...(JSON.parse(child.stdout.trim()) as { threads: number; isa: string; hostCacheLimit: number }), warnings };
}

const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;

describe('buildInfo()', () => {
  it('has the documented fields with consistent values', () => {
    const info = buildInfo();
    expect(info.version).toBe(pkg.version);
    expect(typeof info.cuda).toBe('boolean');
    expect(Array.isArray(info.cudaArchitectures)).toBe(true);
    if (info.cuda) {
      expect(info.cudaRuntime).toMatch(/^\d+\.\d+$/);
      expect(info.cudaArchitectures.length).toBeGreaterThan(0);
      for (const a of info.cudaArchitectures) expect(a).toMatch(/^(sm|compute)_\d+[af]?$/);
    } else {
      expect(info.cudaRuntime).toBeNull();
      expect(info.cudaArchitectures).toEqual([]);
    }
    expect(Number.isInteger(info.cpuThreads)).toBe(true);
    expect(info.cpuThreads).toBeGreaterThanOrEqual(1);
  });

  it('a build without CUDA never reports CUDA available', () => {
    if (!buildInfo().cuda) {
      expect(cuda.isAvailable()).toBe(false);
      expect(cuda.deviceCount()).toBe(0);
    } else {
      expect(typeof cuda.isAvailable()).toBe('boolean');
    }
  });
});

describe('setNumThreads()', () => {
  const initial = buildInfo().cpuThreads;
  afterAll(() => setNumThreads(initial));

  it('changes the CPU thread count reported by buildInfo()', () => {
    setNumThreads(3);
    expect(buildInfo().cpuThreads).toBe(3);
    setNumThreads(1);
    expect(buildInfo().cpuThreads).toBe(1);
    // and the backend still works with one thread
    const r = selectiveScan(
      Tensor.from([1, 2], [1, 1, 2]),
      Tensor.from([0.5, 0.5], [1, 1, 2]),
      Tensor.from([-1], [1, 1]),
      Tensor.from([1], [1, 1]),
      Tensor.from([1], [1, 1]),
    );
    const h0 = 0.5,
      h1 = Math.exp(-0.5) * h0 + 1;
    const out = r.out.dataSync();
    expect(out[0]).toBeCloseTo(h0, 6);
    expect(out[1]).toBeCloseTo(h1, 6);
    setNumThreads(initial);
    expect(buildInfo().cpuThreads).toBe(initial);
  });

  it('rejects non-positive, fractional and non-finite counts with RangeError, non-numbers with TypeError', () => {
    for (const n of [0, -1, 1.5, NaN, Infinity]) expectThrow(() => setNumThreads(n), RangeError, /setNumThreads/);
    for (const n of ['2', null, undefined, 2n])
      expectThrow(() => setNumThreads(n as never), TypeError, /setNumThreads/);
    expect(buildInfo().cpuThreads).toBe(initial);
  });

  it("defaults to the machine's cores, or SELECTIVE_SCAN_NUM_THREADS", () => {
    expect(Number(childThreads({ SELECTIVE_SCAN_NUM_THREADS: undefined }))).toBe(cores);
    expect(Number(childThreads({ SELECTIVE_SCAN_NUM_THREADS: '3' }))).toBe(3);
    expect(Number(childThreads({ SELECTIVE_SCAN_NUM_THREADS: '1' }))).toBe(1);
  });
});

describe('environment variables with bad values: one warning per process, and the default', () => {
  it('SELECTIVE_SCAN_NUM_THREADS: 0, -1, abc, 4097, 8x, a space, 20 digits', () => {
    for (const value of ['0', '-1', 'abc', '4097', '8x', ' 8', '99999999999999999999']) {
      const r = childBackend({ SELECTIVE_SCAN_NUM_THREADS: value, SELECTIVE_SCAN_CPU_ISA: undefined });
      expect(r.threads, value).toBe(cores);
      expect(r.warnings, value).toHaveLength(1); // the worker thread's load does not repeat it
      expect(r.warnings[0]).toContain(
        `[SELECTIVE_SCAN_ENV] SelectiveScanWarning: SELECTIVE_SCAN_NUM_THREADS='${value}'`,
      );
      expect(r.warnings[0]).toContain(`is not an integer from 1 to 4096; using ${cores} threads`);
    }
  });

  it('valid, empty and unset values give no warning', () => {
    for (const value of ['1', '3', '4096', '', undefined]) {
      // 4096 threads start (and are never used: nothing runs an op).
      const r = childBackend({ SELECTIVE_SCAN_NUM_THREADS: value, SELECTIVE_SCAN_CPU_ISA: undefined });
      expect(r.threads, String(value)).toBe(value ? Number(value) : cores);
      expect(r.warnings, String(value)).toEqual([]);
    }
  });

  it('SELECTIVE_SCAN_CPU_ISA: an unknown name, or a set this CPU lacks', () => {
    const best = childBackend({ SELECTIVE_SCAN_CPU_ISA: undefined }).isa;
    const unknown = childBackend({ SELECTIVE_SCAN_CPU_ISA: 'AVX2' });
    expect(unknown.isa).toBe(best);
    expect(unknown.warnings).toHaveLength(1);
    expect(unknown.warnings[0]).toContain(
      `SELECTIVE_SCAN_CPU_ISA='AVX2' is not one of baseline, avx2, avx512; using ${best}`,
    );
    const slower = childBackend({ SELECTIVE_SCAN_CPU_ISA: 'baseline' });
    expect(slower).toMatchObject({ isa: 'baseline', warnings: [] });
    if (best !== 'avx512') {
      const faster = childBackend({ SELECTIVE_SCAN_CPU_ISA: 'avx512' });
      expect(faster.isa).toBe(best);
      expect(faster.warnings[0]).toContain(`this CPU does not support avx512; using ${best}`);
    }
  });
});

describe('SELECTIVE_SCAN_HOST_CACHE_LIMIT', () => {
  const MiB = 1 << 20;

  it('bytes, or K, M, G (KiB, MiB, GiB); empty or unset: 256 MiB', () => {
    const cases: [string | undefined, number][] = [
      ['0', 0],
      ['1000', 1000],
      ['64K', 64 << 10],
      ['8m', 8 * MiB],
      ['2G', 2 * 1024 * MiB],
      ['', 256 * MiB],
      [undefined, 256 * MiB],
    ];
    for (const [value, bytes] of cases) {
      const r = childBackend({ SELECTIVE_SCAN_HOST_CACHE_LIMIT: value });
      expect(r.hostCacheLimit, String(value)).toBe(bytes);
      expect(r.warnings, String(value)).toEqual([]);
    }
  });

  it('anything else: the default, and one warning that says why', () => {
    for (const value of ['-1', '1.5', '12x', '8MB', ' 8', '2048T', '99999999999999999', `${2 ** 40 + 1}K`]) {
      const r = childBackend({ SELECTIVE_SCAN_HOST_CACHE_LIMIT: value });
      expect(r.hostCacheLimit, value).toBe(256 * MiB);
      expect(r.warnings, value).toHaveLength(1);
      expect(r.warnings[0]).toContain(
        `[SELECTIVE_SCAN_ENV] SelectiveScanWarning: SELECTIVE_SCAN_HOST_CACHE_LIMIT='${value}' is not a byte count (an integer, optionally with K, M or G) of at most 2^50; using the default, 256 MiB`,
      );
    }
  });
});

// Run as an unprivileged user whose process limit is near what Node itself uses: the system
// refuses most of the threads. Needs root (to drop to nobody) and util-linux's setpriv and prlimit.
const canLimitThreads =
  process.getuid?.() === 0 && ['/usr/bin/setpriv', '/usr/bin/prlimit'].every((tool) => existsSync(tool));

describe.skipIf(!canLimitThreads)('setNumThreads when the system refuses threads', () => {
  it('is a RangeError that says so; the pool keeps its threads and ops still run', () => {
    const script = `
      const s = require(${JSON.stringify(ROOT)});
      const before = s.buildInfo().cpuThreads;
      let message = 'no error';
      try { s.setNumThreads(200); } catch (e) { message = e.constructor.name + ': ' + e.message; }
      const one = s.Tensor.from([1, 2], [1, 1, 2]), A = s.Tensor.from([-1], [1, 1]);
      const out = Array.from(s.selectiveScan(one, one, A, A, A).out.dataSync());
      console.log(JSON.stringify({ before, after: s.buildInfo().cpuThreads, message, out }));`;
    const child = spawnSync(
      '/usr/bin/prlimit',
      [
        '--nproc=60',
        '/usr/bin/setpriv',
        '--reuid=65534',
        '--regid=65534',
        '--clear-groups',
        process.execPath,
        '-e',
        script,
      ],
      { encoding: 'utf8', env: childEnv({ SELECTIVE_SCAN_NUM_THREADS: '2' }) },
    );
    expect(child.signal, child.stderr).toBeNull();
    const r = JSON.parse(child.stdout.trim());
    expect(r.message).toMatch(
      /^RangeError: setNumThreads: could not start 200 threads \(the system allowed only \d+ threads: .*\); the CPU backend runs with 2$/,
    );
    expect(r.after).toBe(r.before);
    expect(r.out[0]).toBeCloseTo(1, 6);
    expect(r.out[1]).toBeCloseTo(Math.exp(-2) + 2 * 2, 5); // h1 = exp(dt1 A) h0 + dt1 B u1, dt = u = [1, 2]
  });
});

describe('cuda', () => {
  it('isAvailable(), unavailableReason and deviceCount() agree', () => {
    const avail = cuda.isAvailable();
    expect(typeof avail).toBe('boolean');
    expect(cuda.isAvailable()).toBe(avail); // stable
    const n = cuda.deviceCount();
    expect(Number.isInteger(n)).toBe(true);
    if (avail) {
      expect(cuda.unavailableReason).toBeNull();
      expect(n).toBeGreaterThanOrEqual(1);
      expect(buildInfo().cuda).toBe(true);
    } else {
      expect(typeof cuda.unavailableReason).toBe('string');
      expect(cuda.unavailableReason!.length).toBeGreaterThan(5);
      expect(n).toBeGreaterThanOrEqual(0);
    }
  });

  it('synchronize is a function returning a promise', async () => {
    expect(typeof cuda.synchronize).toBe('function');
    const p = (async () => cuda.synchronize())();
    if (cuda.isAvailable()) await expect(p).resolves.toBeUndefined();
    else await expect(p).rejects.toMatchObject({ code: 'ERR_CUDA_UNAVAILABLE' });
  });
});
