// The CPU backend under several JavaScript threads (worker_threads): ops on worker threads while the
// main thread changes the thread count with setNumThreads, which before ThreadPool::Session crashed
// the process (per-worker scratch sized from a count that changed under the op). Each run is a
// child process (test/concurrency/threads.cjs), so that a crash is a signal here and not a dead
// test runner; every result must match the single-threaded one bit for bit.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SCRIPT = fileURLToPath(new URL('./concurrency/threads.cjs', import.meta.url));

function race(workers: number, iterations: number) {
  const child = spawnSync(process.execPath, [SCRIPT, String(workers), String(iterations)], {
    encoding: 'utf8',
    timeout: 100_000,
  });
  const detail = `signal ${child.signal}, status ${child.status}\n${child.stderr}`;
  expect(child.signal, detail).toBeNull();
  expect(child.status, detail).toBe(0);
  return JSON.parse(child.stdout.trim().split('\n').pop()!) as {
    ops: number;
    mismatches: number;
    threadChanges: number;
  };
}

describe('setNumThreads while other threads run ops', () => {
  it('one worker running 100 forward + backward + step calls: no crash, every result bit-identical', () => {
    const r = race(1, 100);
    expect(r.ops).toBe(100);
    expect(r.mismatches).toBe(0);
    expect(r.threadChanges).toBeGreaterThan(100); // the count really changed during the ops
  });

  it('two workers at once (their ops take turns on the pool): no crash, every result bit-identical', () => {
    const r = race(2, 50);
    expect(r.ops).toBe(100);
    expect(r.mismatches).toBe(0);
  });
});
