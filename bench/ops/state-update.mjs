// The stepwise update's rows: selectiveStateUpdate at batch 1, 64 and 256 in the channels form
// (state (b, 5120, 16)) and the heads form (80 heads of 64, one A and dt per head, dtBias).
import { Tensor, selectiveStateUpdate } from 'selective-scan';
import { measure } from '../lib/measure.mjs';
import { fmtMs } from '../lib/progress.mjs';
import { stepTraffic } from '../lib/roofline.mjs';
import * as S from '../lib/shapes.mjs';
import { disposeAll, tensorFromBits } from '../lib/tensors.mjs';

/** @type {import('./index.mjs').BenchOp} */
export const stateUpdateRows = {
  kind: 'step',
  shapes: ['step'],
  sizeText: S.stepShapeText,
  plan(run) {
    const { o } = run;
    const steps = (o.shapes ?? ['step']).includes('step') ? S.stepCases(o.quick ? [1, 64] : S.STEP_BATCHES) : [];
    return { units: steps.length * o.dtypes.length, summary: { steps: steps.map((s) => s.name) }, steps };
  },
  async rows(run, p) {
    for (const st of p.steps) await run.guarded(`${st.name} inputs`, () => stepRows(run, st));
  },
};

function stepInputs(factory, st, dtype, device) {
  const bits = (n, kind, shape) => tensorFromBits(factory.bits(n, kind), shape, dtype, device);
  const f32 = (n, fn, shape) => Tensor.from(factory.floats(n, fn), shape, { device });
  const { batch, N } = st;
  if (st.form === 'channels') {
    const dim = st.dim;
    return {
      state: Tensor.zeros([batch, dim, N], { device }),
      x: bits(batch * dim, 'normal', [batch, dim]),
      dt: bits(batch * dim, 'delta', [batch, dim]),
      z: bits(batch * dim, 'normal', [batch, dim]),
      A: f32(dim * N, (r) => -Math.exp(r.uniform()), [dim, N]),
      B: bits(batch * N, 'normal', [batch, N]),
      C: bits(batch * N, 'normal', [batch, N]),
      D: f32(dim, (r) => r.normal(), [dim]),
    };
  }
  const { H, P } = st;
  return {
    state: Tensor.zeros([batch, H, P, N], { device }),
    x: bits(batch * H * P, 'normal', [batch, H, P]),
    dt: bits(batch * H, 'delta', [batch, H]),
    z: bits(batch * H * P, 'normal', [batch, H, P]),
    A: f32(H, (r) => -Math.exp(r.uniform()), [H]),
    B: bits(batch * N, 'normal', [batch, 1, N]),
    C: bits(batch * N, 'normal', [batch, 1, N]),
    D: f32(H, (r) => r.normal(), [H]),
    dtBias: f32(H, (r) => -r.uniform(), [H]),
  };
}

async function stepRows(run, st) {
  const { target, o, progress } = run;
  const { name, ...shape } = st;
  for (const dtype of o.dtypes) {
    if (run.late(`${name} ${dtype}`)) continue;
    progress.status(`${name} ${dtype}`);
    const t = stepInputs(run.factory, st, dtype, target.device);
    const opts = { D: t.D, z: t.z, dtSoftplus: true, ...(t.dtBias ? { dtBias: t.dtBias } : {}) };
    const fn = () => selectiveStateUpdate(t.state, t.x, t.dt, t.A, t.B, t.C, opts).dispose();
    const m = await run.guarded(`${name} ${dtype}`, () =>
      measure(target, fn, { ...run.timing(null), targetMs: run.cpu ? 20 : 5 }),
    );
    if (m) {
      const rec = run.record('step', name, shape, dtype, 'step', m, stepTraffic(st, dtype));
      progress.done(
        `${name} ${dtype}: ${fmtMs(m.medianMs)} ms, ${rec.roofline.gbps.toFixed(1)} GB/s, ${(rec.roofline.fractionOfFloor * 100).toFixed(0)} % of floor`,
      );
    }
    disposeAll(t);
  }
}
