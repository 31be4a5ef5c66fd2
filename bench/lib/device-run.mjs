// One device's run of `npm run bench`: the machine's ceilings, then each op module's phases in turn
// (bench/ops/index.mjs says what a module provides), into one result object.
import os from 'node:os';
import { buildInfo, setNumThreads } from 'selective-scan';
import { resultHeader } from './device.mjs';
import { copyBandwidth, exp2Rate } from './measure.mjs';
import { Progress } from './progress.mjs';
import { InputFactory } from './random.mjs';
import { roofline, tensorCoreRate } from './roofline.mjs';

const START = performance.now();

/** Units of progress the run itself takes (copy bandwidth, exp2 rate), before the ops' own. */
const CEILING_UNITS = 2;

export class DeviceRun {
  /**
   * target: lib/targets.mjs; o: lib/cli.mjs's options; command: the command line for the result;
   * ops: the op modules; torch: { python, torchVersion, ... } from findTorchPython and baselineScript.
   */
  constructor(target, o, command, ops, torch) {
    this.target = target;
    this.o = o;
    this.torch = torch;
    this.cpu = target.kind === 'cpu';
    /** A real GPU (not the CPU, not the simulated GPU path). */
    this.gpu = !this.cpu && !target.simulated;
    this.factory = new InputFactory(o.seed);
    /** @type {{ copyBandwidthGBps: number, exp2Rate: number, tensorFlops: object | null, copy?: object }} */
    this.machine = { copyBandwidthGBps: NaN, exp2Rate: NaN, tensorFlops: null };
    this.skipped = [];
    this.res = {
      ...resultHeader('bench', target, command),
      argv: process.argv.slice(2),
      settings: {},
      machine: null,
      cases: [],
      comparisons: [],
      ratio: null,
      sweep: null,
      memory: [],
      checks: [],
      errors: [],
      torch: null,
      notes: [],
    };
    this.plans = ops.map((op) => ({ op, plan: op.plan(this) }));
    const total = CEILING_UNITS + this.plans.reduce((a, p) => a + p.plan.units, 0);
    this.progress = new Progress(total);
    this.progress.prefix = `${target.id} `;
  }

  /** fn's result, or null after recording its error (a failing case must not lose the others). */
  async guarded(label, fn) {
    try {
      return await fn();
    } catch (error) {
      const message = `${error?.code ? `${error.code}: ` : ''}${error?.message ?? error}`.split('\n')[0].slice(0, 400);
      this.res.errors.push({ case: label, message });
      this.progress.done(`${label}: FAILED: ${message}`);
      return null;
    }
  }

  /** True once --deadline-s has passed (noting what is skipped). */
  late(what) {
    if (!this.o.deadlineS || (performance.now() - START) / 1000 < this.o.deadlineS) return false;
    this.skipped.push(what);
    return true;
  }

  /** measure()'s settings for a case (shape.heavy: fewer repetitions on a GPU). */
  timing(shape) {
    const o = this.o;
    const reps = o.reps ?? (o.quick ? (this.gpu ? 10 : 5) : this.gpu ? (shape?.heavy ? 10 : 20) : 7);
    return {
      warmup: o.warmup ?? 2,
      reps,
      targetMs: o.targetMs ?? (this.gpu ? 10 : 20),
      maxTotalMs: o.maxCaseMs ?? 4000,
      maxCalls: 1000,
    };
  }

  /** Adds a row to the result: measure()'s figures and the roofline of traffic ({ bytes, exps, parts }). */
  record(kind, shapeName, shape, dtype, op, m, traffic, extra = {}) {
    const rec = {
      kind,
      shapeName,
      shape,
      dtype,
      op,
      medianMs: m.medianMs,
      minMs: m.minMs,
      maxMs: m.maxMs,
      reps: m.reps,
      callsPerRep: m.callsPerRep,
      hostMsPerCall: m.hostMsPerCall,
      samplesMs: m.samplesMs.map((x) => +x.toPrecision(4)),
      ...extra,
      roofline: roofline(traffic, m.medianMs, this.machine, dtype),
      bytesBreakdown: traffic.parts,
    };
    this.res.cases.push(rec);
    return rec;
  }

  async run() {
    const { target, o, res, progress } = this;
    if (o.threads) setNumThreads(o.threads);
    const loadAtStart = os.loadavg();
    res.settings = {
      quick: o.quick,
      dtypes: o.dtypes,
      ops: o.ops,
      seed: o.seed,
      timing: this.gpu
        ? 'CUDA events around a batch of calls (recordEvent/elapsedMs), median over repetitions'
        : 'wall clock (performance.now) around a batch of calls, median over repetitions',
      defaults: this.timing(null),
      inputs:
        'bfloat16-exact values (both dtypes see the same data): pools of 2^22 randn / U[-2,0) values, tiled in 4096-value windows at random offsets; A, D drawn per element',
      cpuThreads: buildInfo().cpuThreads,
    };
    res.plan = Object.assign({}, ...this.plans.map((p) => p.plan.summary));

    await this.ceilings();
    // Each phase over every op before the next phase: checks before any timing, the sweeps (long,
    // and the first to go when --deadline-s presses) after every op's rows, comparisons last.
    for (const phase of ['checks', 'rows', 'sweep', 'finish']) {
      for (const { op, plan } of this.plans) if (op[phase]) await op[phase](this, plan);
    }
    if (this.skipped.length) res.notes.push(`--deadline-s ${o.deadlineS} passed: skipped ${this.skipped.join('; ')}.`);
    // The machine may have changed under the run (shared or throttled cores): measure again.
    res.machine.exp2RateAtEnd = (await this.guarded('exp2 rate at the end', () => exp2Rate(target))) ?? null;
    res.loadAverage = { start: loadAtStart, end: os.loadavg() };
    progress.end();
    return res;
  }

  /** The device's copy bandwidth and exp2 rate: the roofline's two ceilings. */
  async ceilings() {
    const { target, res, progress } = this;
    progress.status('copy bandwidth');
    // CPU: 256 MiB, past glibc's threshold for non-temporal stores (smaller copies read the destination too).
    const copyBytes = this.gpu ? 2 ** 30 : 256 * 2 ** 20;
    const copy = (await this.guarded('copy bandwidth', () => copyBandwidth(target, { bytes: copyBytes }))) ?? {
      copyBandwidthGBps: NaN,
      method: 'failed',
    };
    if (copy.method !== 'failed') progress.done(`copy bandwidth ${copy.copyBandwidthGBps.toFixed(1)} GB/s`);
    progress.status('exp2 rate');
    const rate = (await this.guarded('exp2 rate', () => exp2Rate(target))) ?? NaN;
    if (Number.isFinite(rate)) progress.done(`exp2 rate ${(rate / 1e9).toFixed(2)} G/s`);
    // The tensor-core rate is the spec sheet's (lib/roofline.mjs), not measured: a GPU's only.
    const tensor = this.gpu ? tensorCoreRate(res.device.name) : null;
    this.machine = { copyBandwidthGBps: copy.copyBandwidthGBps, exp2Rate: rate, copy, tensorFlops: tensor };
    res.machine = {
      copyBandwidthGBps: copy.copyBandwidthGBps,
      copyMethod: copy.method,
      copy,
      exp2Rate: rate,
      tensorFlops: tensor,
      exp2Method: `measureExp2Rate(${target.device}): exp2 evaluations per second (${this.gpu ? 'the whole GPU' : 'all CPU threads'}), best of 3`,
    };
  }
}
