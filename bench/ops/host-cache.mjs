// The host cache's rows (issue #10): the forward at (1, 2048, 4096, 16), float32, whose 32 MiB
// output is the case the cache is for, with the cache on (its limit, or the default 256 MiB) and
// off (setHostCacheLimit(0)). Off, every call's output is memory fresh from the system (a new
// mapping: the C library maps blocks this large), and its first touch pays a page fault per 4 KiB;
// on, it is the block the previous call's output left. CPU only: GPU tensors come from the
// device's own pool. Not in --quick runs unless named (--shapes host-cache).
import { hostMemoryInfo, setHostCacheLimit } from 'selective-scan';
import { measure } from '../lib/measure.mjs';
import { fmtMs } from '../lib/progress.mjs';
import { scanTraffic } from '../lib/roofline.mjs';
import * as S from '../lib/shapes.mjs';
import { disposeAll } from '../lib/tensors.mjs';
import { chunkLengthOf, scanBits, scanCalls, scanTensors } from './selective-scan-inputs.mjs';

const SHAPE = { name: 'host-cache', batch: 1, dim: 2048, L: 4096, N: 16, G: 1 };
const DEFAULT_LIMIT = 256 * 2 ** 20;

/** @type {import('./index.mjs').BenchOp} */
export const hostCacheRows = {
  kind: 'host-cache',
  shapes: ['host-cache'],
  variants: ['fwd'],
  sizeText: S.shapeText,
  plan(run) {
    const { o } = run;
    const named = o.shapes ? o.shapes.includes('host-cache') : !o.quick;
    const runs = run.cpu && named && o.ops.includes('fwd') && o.dtypes.includes('float32');
    return { units: runs ? 2 : 0, summary: runs ? { hostCache: S.shapeText(SHAPE) } : {}, runs };
  },
  async rows(run, p) {
    if (p.runs) await run.guarded('host-cache inputs', () => cacheRows(run));
  },
};

async function cacheRows(run) {
  const { target, progress } = run;
  const { name, ...shape } = SHAPE;
  progress.status(`${name}: making inputs`);
  const t = scanTensors(scanBits(run.factory, SHAPE), SHAPE, 'float32', target.device);
  const { fwd } = scanCalls(t);
  const traffic = scanTraffic(shape, 'float32', 'fwd', chunkLengthOf(target, SHAPE));
  const limit = hostMemoryInfo().cacheLimitBytes;
  try {
    for (const [op, bytes] of [
      ['fwd, host cache on', limit || DEFAULT_LIMIT],
      ['fwd, setHostCacheLimit(0)', 0],
    ]) {
      if (run.late(`${name} ${op}`)) continue;
      setHostCacheLimit(bytes);
      progress.status(`${name} ${S.shapeText(SHAPE)} float32 ${op}`);
      const before = hostMemoryInfo();
      const m = await run.guarded(`${name} ${op}`, () => measure(target, fwd, run.timing(SHAPE)));
      if (!m) continue;
      const after = hostMemoryInfo();
      const rec = run.record('host-cache', name, shape, 'float32', op, m, traffic, {
        cacheLimitBytes: bytes,
        // Of the host allocations while it was measured: the output's and each worker's scratch.
        cacheHits: after.cacheHits - before.cacheHits,
        cacheMisses: after.cacheMisses - before.cacheMisses,
      });
      progress.done(`${name} ${op}: ${fmtMs(m.medianMs)} ms, ${rec.roofline.gbps.toFixed(1)} GB/s`);
    }
  } finally {
    setHostCacheLimit(limit);
    disposeAll(t);
  }
}
