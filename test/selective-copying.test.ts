// The Selective Copying task of the example (examples/selective-copying.ts): its generator.
import { describe, expect, it } from 'vitest';
import { Rng } from '../examples/mamba.js';
import { Curriculum, DATA_TOKENS, MARKER, NOISE, copyingBatch } from '../examples/selective-copying.js';

describe('the Selective Copying generator', () => {
  it('scatters 16 data tokens in order among noise, then 16 markers', () => {
    const [batch, seqLen] = [50, 64];
    const { tokens, targets } = copyingBatch(new Rng(4), batch, seqLen);
    const positionsSeen = new Set<number>();
    for (let b = 0; b < batch; b++) {
      const row = Array.from(tokens.subarray(b * seqLen, (b + 1) * seqLen));
      expect(row.slice(seqLen - DATA_TOKENS).every((t) => t === MARKER)).toBe(true);
      const region = row.slice(0, seqLen - DATA_TOKENS);
      const data = region.filter((t) => t !== NOISE);
      expect(data).toEqual(Array.from(targets.subarray(b * DATA_TOKENS, (b + 1) * DATA_TOKENS)));
      expect(data.every((t) => t >= 1 && t < MARKER)).toBe(true);
      region.forEach((t, i) => {
        if (t !== NOISE) positionsSeen.add(i);
      });
    }
    // The positions vary from sequence to sequence (selective, not plain, copying).
    expect(positionsSeen.size).toBeGreaterThan(seqLen / 2);
  });
});

describe('the curriculum of the Selective Copying example', () => {
  it('moves to the next length once its own average accuracy reaches advanceAt, then stays at the final one', () => {
    const c = new Curriculum([64, 128], 256, 0.9, 1e9);
    let step = 0;
    const run = (accuracy: number, steps: number) => {
      const ended: string[] = [];
      for (let i = 0; i < steps; i++) {
        const why = c.update(++step, step, accuracy);
        if (why) ended.push(why);
      }
      return ended;
    };
    expect(c.seqLen).toBe(64);
    expect(run(0.5, 500)).toEqual([]); // an average of 0.5 never reaches 0.9
    // From an average of 0.5, 80 steps at 1 reach 0.9 (1 - 0.5 * 0.98^80 > 0.9).
    expect(run(1, 100)).toEqual(['training accuracy 90% reached at L=64']);
    expect(c.stages.map((s) => [s.step, s.seqLen])).toEqual([
      [0, 64],
      [580, 128],
    ]);
    // The average starts again from zero at L = 128: 114 steps at 1 (1 - 0.98^114 > 0.9), not one.
    expect(run(1, 120)).toEqual(['training accuracy 90% reached at L=128']);
    expect(c.stages[2]).toEqual({ step: 580 + 114, seconds: 580 + 114, seqLen: 256 });
    expect(c.seqLen).toBe(256);
    expect(run(1, 1000)).toEqual([]);
    expect(c.seqLen).toBe(256);
  });

  it('ends a stage after stageSeconds when the accuracy never gets there', () => {
    const c = new Curriculum([64], 256, 0.9, 30);
    expect(c.update(1, 29.9, 0)).toBeUndefined();
    expect(c.update(2, 30, 0)).toBe('0:30 at L=64 without reaching 90%');
    expect(c.stages).toEqual([
      { step: 0, seconds: 0, seqLen: 64 },
      { step: 2, seconds: 30, seqLen: 256 },
    ]);
    expect(c.update(3, 1000, 0)).toBeUndefined();
  });

  it('with no curriculum, trains at the final length from the start', () => {
    const c = new Curriculum([], 256, 0.9, 1);
    expect(c.seqLen).toBe(256);
    expect(c.update(1, 100, 1)).toBeUndefined();
  });
});
