// Where a benchmark runs: the CPU, a GPU, or the GPU code path of the harness simulated on the CPU.
import { cuda } from 'selective-scan';

/**
 * A target. kind: 'cpu' | 'cuda'; device: the tensors' device; index: the native device number
 * (-1 = CPU). simulated: the GPU flow on the CPU (tests of this harness).
 */
export function makeTarget(spec, { simulated = false } = {}) {
  if (simulated) return { id: 'cuda:sim', kind: 'cuda', device: 'cpu', index: -1, simulated: true };
  if (spec === 'cpu') return { id: 'cpu', kind: 'cpu', device: 'cpu', index: -1, simulated: false };
  const index = spec === 'cuda' ? 0 : Number(/^cuda:(\d+)$/.exec(spec)?.[1]);
  if (!Number.isInteger(index)) throw new Error(`unknown device ${spec}`);
  return { id: `cuda:${index}`, kind: 'cuda', device: `cuda:${index}`, index, simulated: false };
}

/**
 * The targets of --device (and --simulate-gpu), in run order. 'all' is the first GPU when
 * cuda.isAvailable(), then the CPU. Throws an Error whose message is for the command line.
 */
export function targetsFor(devices, { simulate }) {
  const targets = [];
  if (simulate) targets.push(makeTarget('cuda', { simulated: true }));
  for (const d of devices) {
    if (d === 'all') {
      if (cuda.isAvailable() && cuda.deviceCount() > 0) targets.push(makeTarget('cuda:0'));
      targets.push(makeTarget('cpu'));
    } else if (d === 'cpu') targets.push(makeTarget('cpu'));
    else if (/^cuda(:\d+)?$/.test(d)) {
      if (!cuda.isAvailable()) throw new Error(`${d} requested but CUDA is not available: ${cuda.unavailableReason}`);
      targets.push(makeTarget(d));
    } else {
      throw new Error(`unknown device ${d}`);
    }
  }
  return targets;
}
