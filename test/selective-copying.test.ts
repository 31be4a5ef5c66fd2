// The Selective Copying task of the example (examples/selective-copying.ts): its generator.
import { describe, expect, it } from 'vitest';
import { Rng } from '../examples/mamba.js';
import { DATA_TOKENS, MARKER, NOISE, copyingBatch } from '../examples/selective-copying.js';

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
