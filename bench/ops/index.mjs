// The ops of `npm run bench`, one line each, in run order. An op's rows live in its own module here
// (bench/README.md, "Adding an op's rows"); the harness (bench/lib/device-run.mjs) runs each phase
// of every module in this order: checks, rows, sweep, finish.
import { causalConv1dRows } from './causal-conv1d.mjs';
import { hostCacheRows } from './host-cache.mjs';
import { packedScanRows } from './packed-scan.mjs';
import { selectiveScanRows } from './selective-scan.mjs';
import { ssdScanRows } from './ssd-scan.mjs';
import { stateUpdateRows } from './state-update.mjs';

export const BENCH_OPS = [
  selectiveScanRows,
  stateUpdateRows,
  hostCacheRows,
  causalConv1dRows,
  ssdScanRows,
  packedScanRows,
];

/**
 * What a module gives the harness. `run` is the DeviceRun (bench/lib/device-run.mjs): target, o
 * (the options), cpu, gpu, factory (seeded inputs), machine (the ceilings), res (the result),
 * progress, torch ({ python, baselineScript, ... }), guarded(label, fn), late(what), timing(shape),
 * record(kind, shapeName, shape, dtype, op, measured, traffic, extra).
 *
 * @typedef {object} BenchOp
 * @property {string} kind            the `kind` of its rows in the result ('scan', 'step')
 * @property {string[]} shapes        the --shapes names it answers ('S1', 'sweep', 'step', ...)
 * @property {string[]} [variants]    the --ops names it measures, e.g. ['fwd', 'bwd']; without them
 *                                    --ops does not select its rows
 * @property {{ syntax: string, parse: (token: string) => object | null }} [customShape]
 *                                    a --shapes token of its own (e.g. 'BxDxLxN')
 * @property {(shape: object) => string} sizeText  a row's shape in the report's "size" column
 * @property {(run: object) => OpPlan} plan        what it will run on this device (nothing: units 0)
 * @property {(run: object, plan: OpPlan) => Promise<void>} [checks]  agreement checks, before any timing
 * @property {(run: object, plan: OpPlan) => Promise<void>} rows      the timed rows: run.record() each
 * @property {(run: object, plan: OpPlan) => Promise<void>} [sweep]   series against a size, after every op's rows
 * @property {(run: object, plan: OpPlan) => Promise<void>} [finish]  after every op: references, comparisons
 * @property {(res: object) => string | null} [reportSection]  markdown of its own for the report, after the rows
 *
 * @typedef {object} OpPlan           anything the module keeps, and:
 * @property {number} units           progress units it will report with progress.done()
 * @property {object} summary         merged into the result's `plan`
 */
