// The cache of host memory (issue #10): setHostCacheLimit, emptyHostCache, hostMemoryInfo. Every
// tensor here is disposed as soon as it is done with, so that the counts move only as the test
// says (vitest runs each test file in a process of its own: no other file allocates here).
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { Tensor, emptyHostCache, hostMemoryInfo, selectiveScan, setHostCacheLimit } from './helpers/api.js';
import { expectThrow } from './helpers/expect-code.js';

const MiB = 1 << 20;
const DEFAULT_LIMIT = 256 * MiB;

/** A float32 CPU tensor of exactly `bytes` (a multiple of 4 MiB / 4 is its own size class). */
function tensorOf(bytes: number): Tensor {
  return Tensor.zeros([bytes / 4]);
}

/** Resident memory of this process, in MiB. */
function rssMiB(): number {
  return process.memoryUsage().rss / MiB;
}

beforeEach(() => {
  setHostCacheLimit(DEFAULT_LIMIT);
  emptyHostCache();
});
afterAll(() => setHostCacheLimit(DEFAULT_LIMIT));

describe('hostMemoryInfo()', () => {
  it('starts at the default limit of 256 MiB (SELECTIVE_SCAN_HOST_CACHE_LIMIT is unset here)', () => {
    expect(process.env.SELECTIVE_SCAN_HOST_CACHE_LIMIT).toBeUndefined();
    const info = hostMemoryInfo();
    expect(Object.keys(info).sort()).toEqual(
      ['allocatedBytes', 'cacheHits', 'cacheLimitBytes', 'cacheMisses', 'cachedBytes', 'peakAllocatedBytes'].sort(),
    );
    expect(info.cacheLimitBytes).toBe(DEFAULT_LIMIT);
    expect(info.cachedBytes).toBe(0);
    for (const v of Object.values(info)) expect(Number.isSafeInteger(v) && v >= 0).toBe(true);
  });

  it('counts a tensor as allocated while it lives, then as cached; the next one of its size is a hit', () => {
    const before = hostMemoryInfo();
    const t = tensorOf(MiB);
    const live = hostMemoryInfo();
    expect(live.allocatedBytes - before.allocatedBytes).toBe(MiB);
    expect(live.cacheMisses - before.cacheMisses).toBe(1);
    expect(live.peakAllocatedBytes).toBeGreaterThanOrEqual(live.allocatedBytes);
    t.dispose();
    const freed = hostMemoryInfo();
    expect(freed.allocatedBytes).toBe(before.allocatedBytes);
    expect(freed.cachedBytes).toBe(MiB);
    const again = tensorOf(MiB);
    const reused = hostMemoryInfo();
    expect(reused.cacheHits - freed.cacheHits).toBe(1);
    expect(reused.cacheMisses).toBe(freed.cacheMisses);
    expect(reused.cachedBytes).toBe(0);
    expect(again.dataSync().every((v) => v === 0)).toBe(true); // zeros, though the block was used before
    again.dispose();
  });

  it("counts an op's outputs and its scratch, and nothing stays allocated after dispose", () => {
    const before = hostMemoryInfo();
    const [b, d, L, N] = [1, 8, 300, 4];
    const inputs = [
      Tensor.zeros([b, d, L]),
      Tensor.zeros([b, d, L]),
      Tensor.from(new Float32Array(d * N).fill(-1), [d, N]),
      Tensor.zeros([b, N, L]),
      Tensor.zeros([b, N, L]),
    ] as const;
    const { out } = selectiveScan(...inputs);
    expect(hostMemoryInfo().allocatedBytes - before.allocatedBytes).toBeGreaterThanOrEqual(
      (3 * b * d * L + d * N + 2 * b * N * L) * 4,
    );
    for (const t of [...inputs, out]) t.dispose();
    expect(hostMemoryInfo().allocatedBytes).toBe(before.allocatedBytes);
  });
});

describe('setHostCacheLimit()', () => {
  it('bounds the cache: beyond the limit the blocks released longest ago are freed', () => {
    setHostCacheLimit(3 * MiB);
    const ts = [tensorOf(MiB), tensorOf(MiB), tensorOf(MiB), tensorOf(MiB)];
    for (const t of ts) t.dispose();
    expect(hostMemoryInfo()).toMatchObject({ cachedBytes: 3 * MiB, cacheLimitBytes: 3 * MiB });
    // A block larger than the whole limit is freed at once and leaves the cache as it was.
    tensorOf(4 * MiB).dispose();
    expect(hostMemoryInfo().cachedBytes).toBe(3 * MiB);
  });

  it('frees at once what no longer fits under a lower limit', () => {
    for (const t of [tensorOf(MiB), tensorOf(MiB), tensorOf(2 * MiB)]) t.dispose();
    expect(hostMemoryInfo().cachedBytes).toBe(4 * MiB);
    setHostCacheLimit(2 * MiB);
    expect(hostMemoryInfo().cachedBytes).toBe(2 * MiB); // the two 1 MiB blocks, released first, went
    setHostCacheLimit(0);
    expect(hostMemoryInfo().cachedBytes).toBe(0);
  });

  it('0 turns the cache off: dispose() returns the memory to the system at once', () => {
    // 64 MiB: above glibc's largest mmap threshold (32 MiB), so a free unmaps it and RSS shows it.
    const size = 64 * MiB;
    const cached = tensorOf(size);
    const rssLive = rssMiB();
    cached.dispose();
    expect(hostMemoryInfo().cachedBytes).toBe(size);
    expect(rssMiB()).toBeGreaterThan(rssLive - 16); // kept by the cache
    setHostCacheLimit(0);
    expect(rssMiB()).toBeLessThan(rssLive - 48); // the limit freed it

    const t = tensorOf(size);
    const rssBefore = rssMiB();
    const before = hostMemoryInfo();
    t.dispose();
    expect(hostMemoryInfo()).toMatchObject({ cachedBytes: 0, allocatedBytes: before.allocatedBytes - size });
    expect(rssMiB()).toBeLessThan(rssBefore - 48);
  });

  it('takes an integer from 0 to 2^50: TypeError for a non-number, RangeError otherwise; a failed call changes nothing', () => {
    setHostCacheLimit(5 * MiB);
    for (const n of [-1, 0.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 50 + 2, -0.1]) {
      expectThrow(
        () => setHostCacheLimit(n),
        RangeError,
        /^setHostCacheLimit: bytes must be an integer from 0 to 2\^50, got /,
      );
    }
    for (const n of ['1024', null, undefined, 1024n, { valueOf: () => 1024 }]) {
      expectThrow(() => setHostCacheLimit(n as never), TypeError, /^setHostCacheLimit: bytes must be a number, got /);
    }
    expect(hostMemoryInfo().cacheLimitBytes).toBe(5 * MiB);
    setHostCacheLimit(2 ** 50);
    expect(hostMemoryInfo().cacheLimitBytes).toBe(2 ** 50);
  });
});

describe('emptyHostCache()', () => {
  it('frees every cached block and leaves live tensors alone', () => {
    const live = Tensor.from([1, 2, 3], [3]);
    for (const t of [tensorOf(MiB), tensorOf(2 * MiB)]) t.dispose();
    const before = hostMemoryInfo();
    expect(before.cachedBytes).toBe(3 * MiB);
    emptyHostCache();
    const after = hostMemoryInfo();
    expect(after.cachedBytes).toBe(0);
    expect(after.allocatedBytes).toBe(before.allocatedBytes);
    expect(after.cacheLimitBytes).toBe(DEFAULT_LIMIT);
    expect(Array.from(live.dataSync())).toEqual([1, 2, 3]);
    live.dispose();
  });
});
