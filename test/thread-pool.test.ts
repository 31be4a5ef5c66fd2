// The CPU thread pool (csrc/cpu/thread_pool.h) under the decoding steps, which keep each thread on
// the same range of tasks from one call to the next (Balance::KeepAffinity) and hand a range over
// only when its owner has not begun it. Every way a call can find the workers is exercised: polling
// (calls back to back), asleep (a pause longer than their polling between calls), and more threads
// than cores (workers descheduled, so that others take over their ranges). Each loop must give the
// float64 reference's values and the same bits at every thread count. And the pool itself, in C++
// (test/native/thread_pool_test.cc, built here with g++ and ThreadSanitizer): every task of a job
// exactly once, exceptions, sessions from several threads.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { Tensor, buildInfo, causalConv1dUpdate, selectiveStateUpdate, setNumThreads } from './helpers/api.js';
import { convUpdateRef } from './helpers/conv-reference.js';
import { Rng } from './helpers/random.js';
import { makeStepCase, refStep } from './helpers/stepcase.js';
import { expectBitsEqual, expectRelClose, tensor } from './helpers/run.js';

const THREADS = [1, 2, 3, 8];
const initial = buildInfo().cpuThreads;
afterAll(() => setNumThreads(initial));

const sleeper = new Int32Array(new SharedArrayBuffer(4));
/** Longer than a worker polls for the next job (200 us): the next call finds it asleep. */
const pause = () => Atomics.wait(sleeper, 0, 0, 2);

describe('the thread pool under decoding loops', () => {
  it('selectiveStateUpdate, 12 tasks a step, calls back to back and after pauses: the reference, the same bits at 1, 2, 3 and 8 threads', () => {
    const c = makeStepCase({ form: 'headsScalar', batch: 2, H: 24, P: 32, N: 64, L: 8, G: 1, seed: 9101 });
    const refState = Float64Array.from(c.init);
    const refYs = Array.from({ length: c.spec.L }, (_, t) => refStep(c, t, refState));
    const runs = THREADS.map((n) => {
      setNumThreads(n);
      const state = tensor(c.init, c.shapes.state);
      const A = tensor(c.A, c.shapes.A);
      const ys = [];
      for (let t = 0; t < c.spec.L; t++) {
        if (t % 3 === 2) pause();
        const x = tensor(c.xs[t], c.shapes.x);
        const dt = tensor(c.dts[t], c.shapes.dt);
        const B = tensor(c.Bs[t], c.shapes.B);
        const C = tensor(c.Cs[t], c.shapes.B);
        const y = selectiveStateUpdate(state, x, dt, A, B, C);
        ys.push(y.dataSync());
        for (const u of [x, dt, B, C, y]) u.dispose();
      }
      const finalState = state.dataSync();
      state.dispose();
      A.dispose();
      return { ys, finalState };
    });
    for (let t = 0; t < c.spec.L; t++) expectRelClose(runs[0]!.ys[t]!, refYs[t]!, 1e-5, `y at step ${t}`);
    expectRelClose(runs[0]!.finalState, refState, 1e-5, 'state');
    for (let k = 1; k < runs.length; k++) {
      for (let t = 0; t < c.spec.L; t++)
        expectBitsEqual(runs[k]!.ys[t]!, runs[0]!.ys[t]!, `y at step ${t}, ${THREADS[k]} threads vs 1`);
      expectBitsEqual(runs[k]!.finalState, runs[0]!.finalState, `state, ${THREADS[k]} threads vs 1`);
    }
  });

  it('causalConv1dUpdate, 16 tasks a step, with pauses: the reference, the same bits at 1, 2, 3 and 8 threads', () => {
    const rng = new Rng(9102);
    const batch = 4,
      dim = 1000,
      W = 4,
      steps = 9;
    const init = Float64Array.from({ length: batch * dim * (W - 1) }, () => rng.normal());
    const weight = Float64Array.from({ length: dim * W }, () => rng.normal(0, 0.5));
    const xs = Array.from({ length: steps }, () => Float64Array.from({ length: batch * dim }, () => rng.normal()));
    const refState = Float64Array.from(init);
    const refOuts = xs.map((x) => convUpdateRef(refState, x, weight, batch, dim, W, { silu: true }));
    const runs = THREADS.map((n) => {
      setNumThreads(n);
      const state = tensor(init, [batch, dim, W - 1]);
      const w = tensor(weight, [dim, W]);
      const outs = xs.map((x, t) => {
        if (t % 4 === 3) pause();
        const xt = tensor(x, [batch, dim]);
        const out = causalConv1dUpdate(state, xt, w, { activation: 'silu' });
        const data = out.dataSync();
        xt.dispose();
        out.dispose();
        return data;
      });
      const finalState = state.dataSync();
      state.dispose();
      w.dispose();
      return { outs, finalState };
    });
    for (let t = 0; t < steps; t++) expectRelClose(runs[0]!.outs[t]!, refOuts[t]!, 1e-5, `out at step ${t}`);
    expectRelClose(runs[0]!.finalState, refState, 1e-6, 'convState');
    for (let k = 1; k < runs.length; k++) {
      for (let t = 0; t < steps; t++)
        expectBitsEqual(runs[k]!.outs[t]!, runs[0]!.outs[t]!, `out at step ${t}, ${THREADS[k]} threads vs 1`);
      expectBitsEqual(runs[k]!.finalState, runs[0]!.finalState, `convState, ${THREADS[k]} threads vs 1`);
    }
  });

  it('a 16-task call after 200 calls of one task (which never wake the workers, so they sleep) fills every row', () => {
    setNumThreads(8);
    expect(buildInfo().cpuThreads).toBe(8);
    // A 1-task call never wakes the workers; the next many-task call must still find them.
    const state = Tensor.zeros([1, 8, 3]);
    const x = Tensor.zeros([1, 8]);
    const w = Tensor.zeros([8, 4]);
    for (let i = 0; i < 200; i++) causalConv1dUpdate(state, x, w).dispose();
    const big = Tensor.from(new Float32Array(4 * 1000 * 3).fill(1), [4, 1000, 3]);
    const bx = Tensor.from(new Float32Array(4 * 1000).fill(2), [4, 1000]);
    const bw = Tensor.from(new Float32Array(1000 * 4).fill(0.5), [1000, 4]);
    const out = causalConv1dUpdate(big, bx, bw);
    expect(Array.from(new Set(out.dataSync()))).toEqual([2.5]); // 0.5 * (1 + 1 + 1 + 2)
    for (const t of [state, x, w, big, bx, bw, out]) t.dispose();
  });
});

describe('the thread pool in C++ (test/native/thread_pool_test.cc, ThreadSanitizer)', () => {
  it('every task exactly once at 1-17 threads, both balances, polling, asleep and descheduled workers; exceptions; concurrent sessions; no data race', () => {
    const root = fileURLToPath(new URL('..', import.meta.url));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ss-pool-'));
    const exe = path.join(dir, 'thread_pool_test');
    try {
      const build = spawnSync(
        'g++',
        [
          '-std=c++17',
          '-O1',
          '-g',
          '-fsanitize=thread',
          '-pthread',
          'test/native/thread_pool_test.cc',
          'csrc/cpu/thread_pool.cc',
          '-o',
          exe,
        ],
        { cwd: root, encoding: 'utf8', timeout: 120_000 },
      );
      expect(build.status, build.stderr).toBe(0);
      const run = spawnSync(exe, [], {
        encoding: 'utf8',
        timeout: 120_000,
        env: { ...process.env, TSAN_OPTIONS: 'halt_on_error=1' },
      });
      const detail = `signal ${run.signal}, status ${run.status}\n${run.stdout}\n${run.stderr}`;
      expect(run.stderr, detail).not.toMatch(/ThreadSanitizer/);
      expect(run.status, detail).toBe(0);
      expect(run.stdout.trim().split('\n').pop(), detail).toBe('ok');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 240_000);
});
