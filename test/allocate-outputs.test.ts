// An op allocates its outputs before its native call; if a later allocation fails (device memory
// runs out), the earlier ones are disposed at once, not left to the garbage collector.
import { describe, expect, it } from 'vitest';
import { liveTensorCount } from '../dist/internal.js';
import { allocateOutputs } from '../dist/ops/common.js';

describe('allocateOutputs', () => {
  it('allocates each output asked for, in order, and none for an undefined spec', () => {
    const before = liveTensorCount();
    const { out, lastState, checkpoints } = allocateOutputs('someOp', 'cpu', {
      out: [[2, 3], 'float32'],
      lastState: undefined,
      checkpoints: [[5], 'bfloat16'],
    });
    expect(out.shape).toEqual([2, 3]);
    expect(lastState).toBeUndefined();
    expect([checkpoints?.shape, checkpoints?.dtype]).toEqual([[5], 'bfloat16']);
    expect(liveTensorCount()).toBe(before + 2);
    out.dispose();
    checkpoints?.dispose();
    expect(liveTensorCount()).toBe(before);
  });

  it('disposes the outputs already made when a later allocation fails, and names the op', () => {
    const before = liveTensorCount();
    // 2^50 float32 values (4 PiB): no machine has the memory.
    expect(() =>
      allocateOutputs('someOp', 'cpu', { out: [[1024], 'float32'], lastState: [[2 ** 25, 2 ** 25], 'float32'] }),
    ).toThrow(/someOp/);
    expect(liveTensorCount()).toBe(before);
  });
});
