// Timing: device events on a GPU (recordEvent before and after a batch of calls, elapsedMs, from
// the package's internal entry), the wall clock on the CPU; warm-up, a batch size chosen so that one batch takes
// targetMs, medians over repetitions. And the machine's two ceilings: copy bandwidth and exp2 rate.
import { Tensor, cuda } from 'selective-scan';
import { copyInto, elapsedMs, measureExp2Rate, recordEvent } from 'selective-scan/internal';

const usesEvents = (target) => target.index >= 0;

export async function sync(target) {
  if (usesEvents(target)) await cuda.synchronize(target.device);
}

/** Runs fn k times; returns { ms: per call (events or wall clock), hostMs: wall clock per call }. */
export function timeBatch(target, fn, k) {
  if (usesEvents(target)) {
    const t0 = performance.now();
    const start = recordEvent(target.device);
    for (let i = 0; i < k; i++) fn();
    const end = recordEvent(target.device);
    const submitted = performance.now();
    const ms = elapsedMs(start, end); // waits for `end`
    return { ms: ms / k, hostMs: (submitted - t0) / k };
  }
  const t0 = performance.now();
  for (let i = 0; i < k; i++) fn();
  const ms = (performance.now() - t0) / k;
  return { ms, hostMs: ms };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/**
 * Times fn (one call; it disposes what it makes). warmup calls, then one call alone to size the
 * batch (k calls take ~targetMs), then reps batches; reps shrink to fit maxTotalMs (not below minReps).
 */
export async function measure(target, fn, o) {
  const { warmup = 2, reps = 10, targetMs = 20, maxCalls = 1000, maxTotalMs = 5000, minReps = 3 } = o;
  for (let i = 0; i < warmup; i++) fn();
  await sync(target);
  const one = timeBatch(target, fn, 1).ms;
  const k = Math.max(1, Math.min(maxCalls, Math.round(targetMs / Math.max(one, 1e-6))));
  const n = Math.max(Math.min(minReps, reps), Math.min(reps, Math.floor(maxTotalMs / (one * k))));
  const ms = [];
  const hostMs = [];
  for (let r = 0; r < n; r++) {
    const t = timeBatch(target, fn, k);
    ms.push(t.ms);
    hostMs.push(t.hostMs);
  }
  await sync(target);
  return {
    medianMs: median(ms),
    minMs: Math.min(...ms),
    maxMs: Math.max(...ms),
    reps: n,
    callsPerRep: k,
    hostMsPerCall: median(hostMs),
    samplesMs: ms,
  };
}

/** Times a plain JS function (the CPU comparisons): one call to warm up, then up to reps calls within maxTotalMs. */
export function measureJs(fn, { reps, maxTotalMs }) {
  let t0 = performance.now();
  fn(); // warm-up (and the JIT)
  const first = performance.now() - t0;
  const n = Math.max(1, Math.min(reps, Math.floor(maxTotalMs / first)));
  const ms = [];
  for (let i = 0; i < n; i++) {
    t0 = performance.now();
    fn();
    ms.push(performance.now() - t0);
  }
  return { medianMs: median(ms), minMs: Math.min(...ms), reps: n };
}

/**
 * Copy bandwidth of the device, counting bytes read plus bytes written: a large same-device copy,
 * (a) Tensor.to() (allocates the destination: on the CPU fresh pages fault in, on a GPU the pool
 * serves it) and (b) the same copy into a destination allocated and touched beforehand. The
 * roofline uses the faster.
 */
export async function copyBandwidth(target, { bytes }) {
  const numel = Math.floor(bytes / 4);
  const src = Tensor.zeros([numel], { device: target.device });
  const dst = Tensor.zeros([numel], { device: target.device });
  const copyIntoDst = () => copyInto(dst, src);
  const moved = 2 * numel * 4;
  const viaTo = await measure(target, () => src.to(target.device).dispose(), {
    warmup: 1,
    reps: 5,
    targetMs: 1,
    maxCalls: 10,
    maxTotalMs: 4000,
  });
  const into = await measure(target, copyIntoDst, { warmup: 1, reps: 7, targetMs: 1, maxCalls: 10, maxTotalMs: 4000 });
  src.dispose();
  dst.dispose();
  const gbps = (m) => moved / (m.minMs * 1e-3) / 1e9; // best repetition: a ceiling
  const result = {
    bytesPerCopy: numel * 4,
    toGBps: gbps(viaTo),
    preallocatedGBps: gbps(into),
    toMedianMs: viaTo.medianMs,
    preallocatedMedianMs: into.medianMs,
  };
  result.copyBandwidthGBps = Math.max(result.toGBps, result.preallocatedGBps);
  result.method =
    `same-device copy of ${(numel * 4) / 2 ** 20} MiB float32, bytes read + written, best of the repetitions, ` +
    `the faster of Tensor.to() (${result.toGBps.toFixed(1)} GB/s) and a copy into a preallocated tensor ` +
    `(${result.preallocatedGBps.toFixed(1)} GB/s)` +
    (target.index < 0 ? '; the CPU copy is one thread (memmove)' : '');
  return result;
}

/** exp2 evaluations per second (all CPU threads, or the GPU), best of a few calls. */
export function exp2Rate(target) {
  let best = 0;
  for (let i = 0; i < 3; i++) best = Math.max(best, measureExp2Rate(target.device));
  return best;
}
