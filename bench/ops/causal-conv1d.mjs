// The causal convolution's rows: causalConv1d forward, backward (from a saved context) and both,
// with bias and SiLU, W = 4, at S1's and S3's (batch, dim, L) (the convolution a Mamba block runs
// before its scan; on the CPU the -cpu variants, S1 only with --quick). Floor: x and out read or
// written once (lib/roofline.mjs, convTraffic).
import { Tensor, causalConv1d, causalConv1dBackward } from 'selective-scan';
import { measure } from '../lib/measure.mjs';
import { fmtMs } from '../lib/progress.mjs';
import { convTraffic } from '../lib/roofline.mjs';
import * as S from '../lib/shapes.mjs';
import { disposeAll, tensorFromBits } from '../lib/tensors.mjs';

const VARIANTS = ['fwd', 'bwd', 'fwd+bwd'];
const WIDTH = 4;
const OF = ['S1', 'S3'];

/** @type {import('./index.mjs').BenchOp} */
export const causalConv1dRows = {
  kind: 'conv',
  shapes: ['conv'],
  variants: VARIANTS,
  sizeText: (s) => `(${s.batch}, ${s.dim}, ${s.L}), W=${s.W}`,
  plan(run) {
    const { target, o, cpu } = run;
    const base = target.simulated ? S.SIM_SCAN : cpu && !o.fullCpu ? S.CPU_SCAN : S.GPU_SCAN;
    const of = o.quick ? ['S1'] : OF;
    const convs = (o.shapes ?? ['conv']).includes('conv')
      ? base
          .filter((s) => of.includes(s.of ?? s.name))
          .map((s) => ({ name: `conv-${s.name}`, batch: s.batch, dim: s.dim, L: s.L, W: WIDTH }))
      : [];
    const ops = o.ops.filter((op) => VARIANTS.includes(op));
    const units = convs.length * o.dtypes.length * ops.length;
    return { units, summary: convs.length ? { convs: convs.map((c) => c.name) } : {}, convs, ops };
  },
  async rows(run, p) {
    for (const c of p.convs) await run.guarded(`${c.name} inputs`, () => convRows(run, p, c));
  },
};

async function convRows(run, p, c) {
  const { target, o, progress, factory } = run;
  const { name, ...shape } = c;
  const { batch, dim, L, W } = shape;
  for (const dtype of o.dtypes) {
    if (run.late(`${name} ${dtype}`)) continue;
    progress.status(`${name} ${dtype}`);
    const device = target.device;
    const t = {
      x: tensorFromBits(factory.bits(batch * dim * L, 'normal'), [batch, dim, L], dtype, device),
      dout: tensorFromBits(factory.bits(batch * dim * L, 'normal'), [batch, dim, L], dtype, device),
      weight: Tensor.from(
        factory.floats(dim * W, (r) => r.normal() * 0.5),
        [dim, W],
        { device },
      ),
      bias: Tensor.from(
        factory.floats(dim, (r) => r.normal() * 0.1),
        [dim],
        { device },
      ),
    };
    const opts = { bias: t.bias, activation: 'silu' };
    const saved = causalConv1d(t.x, t.weight, { ...opts, saveForBackward: true });
    const backward = (ctx) => {
      const g = causalConv1dBackward(ctx, t.dout);
      disposeAll(g);
    };
    const calls = {
      fwd: () => causalConv1d(t.x, t.weight, opts).out.dispose(),
      bwd: () => backward(saved.ctx),
      'fwd+bwd': () => {
        const r = causalConv1d(t.x, t.weight, { ...opts, saveForBackward: true });
        backward(r.ctx);
        r.out.dispose();
        r.ctx.dispose();
      },
    };
    for (const op of p.ops) {
      const m = await run.guarded(`${name} ${dtype} ${op}`, () => measure(target, calls[op], run.timing(shape)));
      if (!m) continue;
      const rec = run.record('conv', name, shape, dtype, op, m, convTraffic(shape, dtype, op));
      progress.done(
        `${name} ${dtype} ${op}: ${fmtMs(m.medianMs)} ms, ${rec.roofline.gbps.toFixed(1)} GB/s, ${(rec.roofline.fractionOfFloor * 100).toFixed(0)} % of floor`,
      );
    }
    saved.out.dispose();
    saved.ctx.dispose();
    disposeAll(t);
  }
}
