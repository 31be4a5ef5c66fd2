// Runs fuzz cases in this process and prints one line per case; test/fuzz.test.ts runs batches of
// them in child processes, so that a crash costs one batch and names its case.
//
//   node test/fuzz/batch.mjs <seed> <first> <count>      cases first .. first + count - 1
//   node test/fuzz/batch.mjs <seed> 17,42                 just these cases
//   ... --verbose                                          also print each case's arguments
//
// Output: `start <i>` before case i and `calling { i, target, mutations }` just before its call
// (written synchronously: they survive a crash), then one JSON line { i, target, mutations, ok,
// problem, outcome }.
//
// A case picks a target (test/fuzz/targets.mjs), makes valid arguments, then usually mutates them:
// hostile values in place of arguments, options or the receiver, near misses (a size off, another
// dtype), missing arguments, disposed tensors (hostile mutations: any clear error or a well-formed
// result), or a polluted Object.prototype and writes to tensor metadata (benign mutations: the
// result must equal that of the same call without them, bit for bit). A case passes when the call
// returns a well-formed result, or throws a TypeError, RangeError or coded Error whose message
// starts with the function's name, or lets a FuzzTrap of a hostile value through.
import { writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { types } from 'node:util';
import { TARGETS } from './targets.mjs';
import { caseRng, FuzzTrap, hostile, Rng } from './values.mjs';

// SELECTIVE_SCAN_PACKAGE: another build of the package to fuzz (default: this repository's).
const ROOT = process.env.SELECTIVE_SCAN_PACKAGE ?? path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const require = createRequire(import.meta.url);
const api = require(ROOT);
// A second instance of the package (its module cache cleared): its tensors must be refused.
for (const key of Object.keys(require.cache)) if (key.startsWith(path.join(ROOT, 'dist'))) delete require.cache[key];
const other = require(ROOT);

const CODES = new Set([
  'ERR_DISPOSED',
  'ERR_DEVICE_MISMATCH',
  'ERR_CUDA_UNAVAILABLE',
  'ERR_CUDA_OOM',
  'ERR_CUDA',
  'ERR_OUT_OF_MEMORY',
]);
const GPU = api.cuda.isAvailable();
const INITIAL_THREADS = api.buildInfo().cpuThreads;
// Ops are where most can go wrong: they are drawn more often.
const WEIGHTED = TARGETS.flatMap((t) =>
  ['selectiveScan', 'selectiveScanBackward', 'selectiveStateUpdate'].includes(t.name) ? [t, t, t, t] : [t],
);

/** Makes a case's tensors, on its device, from its own random stream. */
class Maker {
  constructor(rng, device) {
    this.rng = rng;
    this.device = device;
  }
  shape() {
    return Array.from({ length: this.rng.between(0, 3) }, () => this.rng.between(1, 4));
  }
  tensor(shape, dtype = 'float32', lo = -1, hi = 1) {
    const n = shape.reduce((a, b) => a * b, 1);
    const values = this.rng.values(n).map((v) => lo + ((v + 1) / 2) * (hi - lo));
    return api.Tensor.from(values, shape, { dtype, device: this.device });
  }
  /** Tensors as hostile values: wrong shapes and dtypes, disposed, fakes, another instance's, another device's. */
  hostile(rng) {
    const t = this.tensor(this.shape(), rng.pick(['float32', 'float16', 'bfloat16']));
    switch (rng.int(7)) {
      case 0:
        t.dispose();
        return t;
      case 1:
        return Object.create(t);
      case 2:
        return new Proxy(t, {});
      case 3:
        return other.Tensor.from([1, 2], [1, 1, 2]);
      case 4:
        return GPU ? t.to(this.device === 'cpu' ? 'cuda' : 'cpu') : t;
      case 5: {
        const [u, A] = [this.tensor([1, 1, 2]), this.tensor([1, 1])];
        return api.selectiveScan(u, u, A, A, A, { saveForBackward: true }).ctx;
      }
      default:
        return t;
    }
  }
}

/** A short text for a value in a case's description. */
function show(v, depth = 0) {
  try {
    if (typeof v === 'string') return JSON.stringify(v.length > 30 ? `${v.slice(0, 30)}...` : v);
    if (typeof v === 'bigint') return `${v}n`;
    if (typeof v === 'symbol' || typeof v === 'function') return typeof v;
    if (v === null || typeof v !== 'object') return String(v);
    if (types.isProxy(v)) return 'a Proxy';
    if (isRealTensor(v)) return String(v);
    if (Array.isArray(v)) return `array(${v.length})`;
    if (Object.getPrototypeOf(v) === Object.prototype && depth === 0) {
      return `{ ${ownData(v)
        .map(([key, value]) => `${key}: ${show(value, 1)}`)
        .join(', ')} }`;
    }
    return Object.prototype.toString.call(v);
  } catch {
    return 'an object that throws';
  }
}

/** `v instanceof cls`, false where asking runs code that throws (a Proxy up the prototype chain). */
function isInstance(v, cls) {
  try {
    return !types.isProxy(v) && v instanceof cls;
  } catch {
    return false;
  }
}

/** A Tensor itself: not a Proxy, nor an object that inherits from one (whose metadata is not own). */
const isRealTensor = (v) => isInstance(v, api.Tensor) && Object.hasOwn(v, 'shape');

/** The own data properties of a plain object (no getters run, no Proxy asked), as [key, value]. */
function ownData(object) {
  if (typeof object !== 'object' || object === null || types.isProxy(object)) return [];
  return Object.entries(Object.getOwnPropertyDescriptors(object))
    .filter(([, d]) => 'value' in d)
    .map(([key, d]) => [key, d.value]);
}

/** The tensors among a case's arguments and option values. */
function tensorsIn(args) {
  const found = [];
  const visit = (v) => {
    if (isRealTensor(v) && !found.includes(v)) found.push(v);
  };
  for (const a of args) {
    visit(a);
    if (ownData(a).length > 0 && Object.getPrototypeOf(a) === Object.prototype)
      for (const [, v] of ownData(a)) visit(v);
  }
  return found;
}

// ---- Mutations ---------------------------------------------------------------------------------------

const HOSTILE = {
  argument(rng, c, g) {
    const i = rng.int(Math.max(1, c.args.length));
    c.args[i] = hostile(rng, g);
    return `argument ${i} = ${show(c.args[i])}`;
  },
  missing(rng, c) {
    c.args.length = rng.int(c.args.length + 1);
    return `only ${c.args.length} arguments`;
  },
  option(rng, c, g, target) {
    if (target.options === undefined) return HOSTILE.argument(rng, c, g);
    const opts = Object.fromEntries(ownData(c.args[target.options]));
    const key = rng.pick([...target.optionKeys, 'unknown', '__proto__', 'constructor']);
    const value = rng.chance(0.5) ? g.hostile(rng) : hostile(rng, g);
    Object.defineProperty(opts, key, { value, enumerable: true, writable: true, configurable: true });
    c.args[target.options] = opts;
    return `option ${key} = ${show(value)}`;
  },
  options(rng, c, g, target) {
    const i = target.options ?? rng.int(Math.max(1, c.args.length));
    c.args[i] = hostile(rng, g);
    return `options = ${show(c.args[i])}`;
  },
  receiver(rng, c, g, target) {
    if (!target.receiver) return HOSTILE.argument(rng, c, g);
    c.receiver = rng.chance(0.5) ? g.hostile(rng) : hostile(rng, g);
    return `receiver = ${show(c.receiver)}`;
  },
  // A tensor argument or option replaced by a near miss: one size off, a size more or less, or
  // another dtype (what the shape and dtype checks, and the addon's size checks, are for).
  nearMiss(rng, c, g, target) {
    const slots = [];
    c.args.forEach((a, i) => {
      if (isRealTensor(a)) slots.push([c.args, i]);
      else if (i === target.options) for (const [key, v] of ownData(a)) if (isRealTensor(v)) slots.push([a, key]);
    });
    if (slots.length === 0) return HOSTILE.argument(rng, c, g);
    const [holder, key] = rng.pick(slots);
    const t = holder[key];
    const shape = [...t.shape];
    let dtype = t.dtype;
    const d = rng.int(Math.max(1, shape.length));
    switch (rng.int(5)) {
      case 0:
        shape[d] = (shape[d] ?? 1) + 1;
        break;
      case 1:
        shape[d] = Math.max(0, (shape[d] ?? 1) - 1);
        break;
      case 2:
        shape.splice(d, 0, rng.between(1, 3));
        break;
      case 3:
        shape.splice(d, 1);
        break;
      default:
        dtype = rng.pick(['float32', 'float16', 'bfloat16'].filter((x) => x !== t.dtype));
    }
    holder[key] = g.tensor(shape, dtype);
    return `${typeof key === 'number' ? `argument ${key}` : `option ${key}`}: ${t.dtype}${JSON.stringify(t.shape)} -> ${dtype}${JSON.stringify(shape)}`;
  },
  dispose(rng, c) {
    const candidates = tensorsIn([...c.args, c.receiver]);
    const ctx = c.args.find((a) => isInstance(a, api.ScanContext));
    if (ctx) candidates.push(ctx);
    if (candidates.length === 0) return 'nothing to dispose';
    rng.pick(candidates).dispose();
    return 'a disposed argument';
  },
};

// How often each hostile mutation is drawn: near misses most, as they reach the deepest checks.
const HOSTILE_DRAW = Object.entries({
  argument: 2,
  missing: 1,
  option: 2,
  options: 1,
  receiver: 1,
  dispose: 1,
  nearMiss: 4,
}).flatMap(([kind, weight]) => new Array(weight).fill(kind));

// Mutations that must not change the result.
const BENIGN = {
  pollute(rng, c, g, target) {
    const keys = [...(target.optionKeys ?? []), 'device', 'dtype', 'kind', 'groups', 'data', 'length', '0'];
    for (let k = rng.between(1, 3); k > 0; k--) {
      c.pollution[rng.pick(keys)] = rng.chance(0.5)
        ? g.tensor([rng.between(1, 3)])
        : rng.pick([true, 1, 'cuda', 'float16', -1]);
    }
    return `Object.prototype gets ${Object.keys(c.pollution).join(', ')}`;
  },
  metadata(_rng, c) {
    const tensors = tensorsIn([...c.args, c.receiver]);
    for (const t of tensors) {
      Reflect.set(t, 'dtype', 'float16');
      Reflect.set(t, 'shape', [2 ** 40, 2 ** 40]);
      Reflect.set(t, 'numel', 2 ** 80);
      Reflect.defineProperty(t, 'device', { value: 'cuda:7' });
      Reflect.set(t, 'note', 'an expando property');
    }
    return `writes to the metadata of ${tensors.length} tensors`;
  },
};

// ---- One case ------------------------------------------------------------------------------------------

async function call(target, c) {
  const proto = Object.prototype;
  const keys = Object.keys(c.pollution);
  for (const key of keys) proto[key] = c.pollution[key];
  try {
    const result = target.call(api, c.args, c.receiver);
    return { result: await result };
  } catch (error) {
    return { error };
  } finally {
    for (const key of keys) delete proto[key];
  }
}

function errorVerdict(error, target, expectedFailure) {
  if (error instanceof FuzzTrap) return null; // the hostile value's own error, unchanged
  if (error instanceof TypeError && /revoked/.test(error.message)) return null; // ditto, from a revoked Proxy
  const named =
    error instanceof Error && typeof error.message === 'string' && error.message.startsWith(`${target.name}:`);
  if (named && (error instanceof TypeError || error instanceof RangeError || CODES.has(error.code))) {
    if (expectedFailure === undefined) return 'a valid call threw';
    return null;
  }
  return 'not a clear error of the function';
}

const withBigInts = (_key, v) => (typeof v === 'bigint' ? `${v}n` : v);

function describeError(error) {
  return error instanceof Error
    ? `${error.constructor.name}${error.code ? ` ${error.code}` : ''}: ${error.message}`
    : show(error);
}

const bitsOfInPlace = (t) =>
  isRealTensor(t) && !t.isDisposed ? Array.from(new Uint32Array(t.dataSync().buffer)) : null;

/** One case; `announce(target, mutations, args)` is called just before the call it makes. */
export async function runCase(seed, index, announce = () => {}) {
  const rng = caseRng(seed, index);
  const target = rng.pick(WEIGHTED);
  const argsSeed = rng.int(2 ** 32);
  const device = GPU && rng.chance(0.5) ? 'cuda' : 'cpu';
  const build = () => {
    const g = new Maker(new Rng(argsSeed), device);
    return { g, c: { ...target.valid(g, api), pollution: {} } };
  };
  const { g, c } = build();
  const expectedFailure = c.fails;
  const mutations = [];
  let hostileMutation = false;
  // 12 % of the cases are valid calls; the others get one or two mutations, a quarter benign.
  if (rng.next() >= 0.12) {
    for (let k = rng.chance(0.7) ? 1 : 2; k > 0; k--) {
      const benign = rng.chance(0.25);
      const kinds = benign ? BENIGN : HOSTILE;
      const kind = rng.pick(benign ? Object.keys(BENIGN) : HOSTILE_DRAW);
      hostileMutation ||= !benign;
      mutations.push(`${kind}: ${kinds[kind](rng, c, g, target)}`);
    }
  }
  const inPlaceBefore = target.inPlace === undefined ? null : bitsOfInPlace(c.args[target.inPlace]);
  announce(target.name, mutations, c.args);
  const { result, error } = await call(target, c);
  const verdict = (problem, outcome) => ({
    i: index,
    target: target.name,
    mutations,
    ok: problem === null,
    problem,
    outcome,
  });

  try {
    if (error !== undefined) {
      const problem = errorVerdict(error, target, hostileMutation ? 'any' : expectedFailure);
      if (problem === null && inPlaceBefore !== null) {
        const after = bitsOfInPlace(c.args[target.inPlace]);
        if (after?.some((b, j) => b !== inPlaceBefore[j]))
          return verdict('an argument changed by a call that threw', describeError(error));
      }
      return verdict(problem, describeError(error));
    }
    if (expectedFailure !== undefined && !hostileMutation)
      return verdict('a call that must fail returned', show(result));
    target.check(result, c.args, api);
    if (!hostileMutation && mutations.length > 0) {
      // Benign mutations only: the same call on the same (rebuilt) arguments, without them.
      const clean = build().c;
      const reference = await call(target, clean);
      if (reference.error) return verdict('the clean call threw', describeError(reference.error));
      const got = JSON.stringify(target.outputs(result, c.args, c.receiver), withBigInts);
      const want = JSON.stringify(target.outputs(reference.result, clean.args, clean.receiver), withBigInts);
      if (got !== want) return verdict('the result changed', `${got.slice(0, 200)} vs ${want.slice(0, 200)}`);
    }
    return verdict(null, `returned ${show(result)}`);
  } catch (problem) {
    return verdict(`a malformed result: ${problem instanceof Error ? problem.message : show(problem)}`, show(result));
  } finally {
    if (target.name === 'setNumThreads' || mutations.length > 0) api.setNumThreads(INITIAL_THREADS);
  }
}

// ---- Main ------------------------------------------------------------------------------------------------

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [seedText, from, count] = process.argv.slice(2).filter((a) => !a.startsWith('--'));
  const verbose = process.argv.includes('--verbose');
  const seed = Number(seedText);
  const indices =
    count === undefined
      ? from.split(',').map(Number)
      : Array.from({ length: Number(count) }, (_, k) => Number(from) + k);
  for (const i of indices) {
    writeSync(1, `start ${i}\n`);
    const announce = (target, mutations, args) => {
      const about = verbose
        ? { i, target, mutations, args: args.map((a) => show(a)), gpu: GPU }
        : { i, target, mutations };
      writeSync(1, `calling ${JSON.stringify(about)}\n`);
    };
    const line = await runCase(seed, i, announce).catch((error) => ({
      i,
      ok: false,
      problem: `the fuzzer failed: ${error?.stack ?? error}`,
    }));
    writeSync(1, `${JSON.stringify(line)}\n`);
  }
}
