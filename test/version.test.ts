// The version counter (issue #10 item 4): an in-place op (selectiveStateUpdate's state,
// causalConv1dUpdate's convState) bumps the version of the tensor it writes, and a backward whose
// saved forward input changed since the forward throws ERR_MODIFIED before it computes or
// allocates anything, as PyTorch does. Without an in-place write the backward runs as before.
import { describe, expect, it } from 'vitest';
import {
  Tensor,
  causalConv1dUpdate,
  hostMemoryInfo,
  selectiveScan,
  selectiveScanBackward,
  selectiveStateUpdate,
  ssdScan,
  ssdScanBackward,
} from './helpers/api.js';
import { expectCode } from './helpers/expect-code.js';
import { Rng } from './helpers/random.js';

const rng = new Rng(10);
const rand = (shape: number[], scale = 1) =>
  Tensor.from(
    Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => scale * (rng.uniform() - 0.5)),
    shape,
  );
const negative = (shape: number[]) =>
  Tensor.from(
    Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => -0.5 - rng.uniform()),
    shape,
  );
const bitsOf = (grads: Record<string, Tensor | undefined>) =>
  Object.fromEntries(Object.entries(grads).map(([k, t]) => [k, Array.from(t!.dataSync())]));

// selectiveScan at (batch 1, dim 2, L 5, N 3) with an initial state, and one decoding step that
// advances a (1, 2, 3) state in place: the channels form of selectiveStateUpdate.
const [batch, dim, L, N] = [1, 2, 5, 3];
function scanCase() {
  const inputs = {
    u: rand([batch, dim, L]),
    delta: rand([batch, dim, L]),
    A: negative([dim, N]),
    B: rand([batch, N, L]),
    C: rand([batch, N, L]),
    initialState: rand([batch, dim, N]),
  };
  const { u, delta, A, B, C, initialState } = inputs;
  const { out, ctx } = selectiveScan(u, delta, A, B, C, { initialState, deltaSoftplus: true, saveForBackward: true });
  const dout = rand([batch, dim, L]);
  return { ...inputs, out, ctx: ctx!, dout };
}
function stepOn(state: Tensor): Tensor {
  return selectiveStateUpdate(
    state,
    rand([batch, dim]),
    rand([batch, dim]),
    negative([dim, N]),
    rand([batch, N]),
    rand([batch, N]),
  );
}

describe('selectiveScanBackward after an in-place update of a saved input', () => {
  it('throws ERR_MODIFIED naming the input and both versions, before it allocates anything', () => {
    const c = scanCase();
    stepOn(c.initialState).dispose();
    const before = hostMemoryInfo().allocatedBytes;
    expectCode(
      () => selectiveScanBackward(c.ctx, c.dout),
      'ERR_MODIFIED',
      /^selectiveScanBackward: initialState \(an input of the forward\) was modified in place after the forward \(version 0 → 1\); the backward would read its new values/,
    );
    expect(hostMemoryInfo().allocatedBytes).toBe(before);
    // Every later call says so too, with the count of writes since the forward.
    stepOn(c.initialState).dispose();
    expectCode(() => selectiveScanBackward(c.ctx, c.dout), 'ERR_MODIFIED', /\(version 0 → 2\)/);
    // Before any check of the other arguments: the saved state is what is wrong.
    expectCode(() => selectiveScanBackward(c.ctx, Tensor.zeros([1])), 'ERR_MODIFIED');
  });

  it('causalConv1dUpdate bumps its convState too (here the u of a scan: (batch, dim, W - 1))', () => {
    const W = L + 1;
    const c = scanCase();
    causalConv1dUpdate(c.u, rand([batch, dim]), rand([dim, W])).dispose();
    expectCode(() => selectiveScanBackward(c.ctx, c.dout), 'ERR_MODIFIED', /: u \(an input of the forward\)/);
  });

  it('runs unchanged when nothing saved was written: a copy updated, a failed update, other tensors', () => {
    const c = scanCase();
    const want = bitsOf(selectiveScanBackward(c.ctx, c.dout) as never);
    const copy = c.initialState.to('cpu');
    stepOn(copy).dispose(); // the copy has its own version
    // A call that throws writes nothing and bumps nothing (x of the wrong shape).
    expect(() =>
      selectiveStateUpdate(
        c.initialState,
        rand([batch, dim + 1]),
        rand([batch, dim]),
        negative([dim, N]),
        rand([batch, N]),
        rand([batch, N]),
      ),
    ).toThrow(RangeError);
    stepOn(Tensor.zeros([batch, dim, N])).dispose();
    expect(bitsOf(selectiveScanBackward(c.ctx, c.dout) as never)).toEqual(want);
    expect(Array.from(copy.dataSync())).not.toEqual(Array.from(c.initialState.dataSync()));
  });

  it('a new forward on the updated tensor saves its new version', () => {
    const c = scanCase();
    stepOn(c.initialState).dispose();
    const again = selectiveScan(c.u, c.delta, c.A, c.B, c.C, {
      initialState: c.initialState,
      deltaSoftplus: true,
      saveForBackward: true,
    });
    const grads = selectiveScanBackward(again.ctx!, c.dout);
    expect(grads.dInitialState!.shape).toEqual([batch, dim, N]);
    stepOn(c.initialState).dispose();
    expectCode(() => selectiveScanBackward(again.ctx!, c.dout), 'ERR_MODIFIED', /\(version 1 → 2\)/);
  });
});

describe('ssdScanBackward after an in-place update of a saved input', () => {
  // (batch 1, L 4, H 2 heads of P 2, G 1, N 3), and a step in the heads form, one A per head.
  const [H, P, G] = [2, 2, 1];
  function ssdCase() {
    const x = rand([batch, L, H, P]);
    const dt = rand([batch, L, H]);
    const A = negative([H]);
    const B = rand([batch, L, G, N]);
    const C = rand([batch, L, G, N]);
    const initialState = rand([batch, H, P, N]);
    const { ctx } = ssdScan(x, dt, A, B, C, { initialState, dtSoftplus: true, saveForBackward: true });
    return { initialState, ctx: ctx!, dout: rand([batch, L, H, P]) };
  }
  const step = (state: Tensor) =>
    selectiveStateUpdate(
      state,
      rand([batch, H, P]),
      rand([batch, H]),
      negative([H]),
      rand([batch, G, N]),
      rand([batch, G, N]),
    );

  it('throws ERR_MODIFIED naming initialState, and nothing is allocated', () => {
    const c = ssdCase();
    step(c.initialState).dispose();
    const before = hostMemoryInfo().allocatedBytes;
    expectCode(
      () => ssdScanBackward(c.ctx, c.dout),
      'ERR_MODIFIED',
      /^ssdScanBackward: initialState \(an input of the forward\) was modified in place after the forward \(version 0 → 1\)/,
    );
    expect(hostMemoryInfo().allocatedBytes).toBe(before);
  });

  it('runs, the same every time, while nothing saved is written', () => {
    const c = ssdCase();
    const want = bitsOf(ssdScanBackward(c.ctx, c.dout) as never);
    step(c.initialState.to('cpu')).dispose();
    expect(bitsOf(ssdScanBackward(c.ctx, c.dout) as never)).toEqual(want);
  });
});
