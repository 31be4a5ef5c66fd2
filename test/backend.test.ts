// buildInfo(), setNumThreads() and the cuda object.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { Tensor, buildInfo, cuda, selectiveScan, setNumThreads } from './helpers/api.js';
import { expectThrow } from './helpers/expect-code.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));

function childThreads(env: Record<string, string | undefined>): string {
  const script = "const s = require('selective-scan'); console.log(JSON.stringify(s.buildInfo().cpuThreads));";
  const childEnv = { ...process.env, ...env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete childEnv[k];
  return execFileSync(process.execPath, ['-e', script], { cwd: ROOT, env: childEnv, encoding: 'utf8' }).trim();
}

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
    const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
    expect(Number(childThreads({ SELECTIVE_SCAN_NUM_THREADS: undefined }))).toBe(cores);
    expect(Number(childThreads({ SELECTIVE_SCAN_NUM_THREADS: '3' }))).toBe(3);
    expect(Number(childThreads({ SELECTIVE_SCAN_NUM_THREADS: '1' }))).toBe(1);
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
