// The fuzzer's random values: a seeded generator, and hostile values of every kind a caller could
// pass (test/fuzz/targets.mjs uses them in place of real arguments). Plain JavaScript: it runs in
// the child processes of test/fuzz.test.ts, which load the built package.

/** Thrown by the traps and getters of hostile values; it must come out of a call unchanged. */
export class FuzzTrap extends Error {
  constructor(where) {
    super(`fuzz trap: ${where}`);
    this.name = 'FuzzTrap';
  }
}

/** mulberry32: a seeded stream of uniforms; one per case, so that any case replays alone. */
export class Rng {
  constructor(seed) {
    this.s = seed >>> 0;
  }
  next() {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n) {
    return Math.floor(this.next() * n);
  }
  /** Integer in [lo, hi]. */
  between(lo, hi) {
    return lo + this.int(hi - lo + 1);
  }
  chance(p) {
    return this.next() < p;
  }
  pick(items) {
    return items[this.int(items.length)];
  }
  /** Values in [-1, 1): mild, so that every valid op result is finite. */
  values(n) {
    return Float32Array.from({ length: n }, () => this.next() * 2 - 1);
  }
}

// MurmurHash3's finaliser: every input bit reaches every output bit.
function mix(h) {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** The random stream of case `index` of a run with `seed`. */
export function caseRng(seed, index) {
  return new Rng(mix(mix(seed >>> 0) + Math.imul(index + 1, 0x9e3779b9)));
}

const TYPED_ARRAYS = [
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
];

function typedArray(rng, Type, length) {
  const a = new Type(length);
  for (let i = 0; i < length; i++) a[i] = Type.name.startsWith('Big') ? BigInt(rng.int(8)) : rng.int(8);
  return a;
}

/** Typed arrays that lie about themselves, or whose memory went away. */
function oddTypedArray(rng) {
  const length = rng.pick([0, 1, 2, 3, 4, 8, 16, 64]);
  const real = typedArray(rng, rng.pick(TYPED_ARRAYS), length);
  switch (rng.int(6)) {
    case 0: // a disguise: another type's prototype
      return Object.setPrototypeOf(real, rng.pick(TYPED_ARRAYS).prototype);
    case 1: // an own length that lies
      return Object.defineProperty(real, 'length', { value: rng.pick([0, 1, 1000, 2 ** 32, -1, Number.NaN]) });
    case 2: {
      // a detached buffer
      const a = typedArray(rng, rng.pick([Uint16Array, Int32Array, Float32Array]), length);
      structuredClone(a.buffer, { transfer: [a.buffer] });
      return a;
    }
    case 3: // shared memory
      return new (rng.pick([Uint16Array, Int32Array, Float32Array]))(new SharedArrayBuffer(4 * length));
    case 4: {
      // a length-tracking view of a resizable buffer
      const buffer = new ArrayBuffer(4 * length, { maxByteLength: 4 * length + 64 });
      const view = new (rng.pick([Uint16Array, Int32Array, Float32Array]))(buffer);
      buffer.resize(rng.int(4 * length + 64));
      return view;
    }
    default: // a view at an odd offset into a larger buffer
      return new Uint16Array(new ArrayBuffer(2 * length + 6), 2, length);
  }
}

/** An object whose every interaction throws a FuzzTrap, or lies (a different answer each time). */
function trickyObject(rng, target = {}) {
  switch (rng.int(5)) {
    case 0:
      return new Proxy(target, {
        get: () => {
          throw new FuzzTrap('proxy get');
        },
        has: () => {
          throw new FuzzTrap('proxy has');
        },
        ownKeys: () => {
          throw new FuzzTrap('proxy ownKeys');
        },
        getOwnPropertyDescriptor: () => {
          throw new FuzzTrap('proxy getOwnPropertyDescriptor');
        },
        getPrototypeOf: () => {
          throw new FuzzTrap('proxy getPrototypeOf');
        },
      });
    case 1: {
      const { proxy, revoke } = Proxy.revocable(target, {});
      revoke();
      return proxy;
    }
    case 2: {
      let reads = 0;
      return new Proxy(target, { get: (t, key) => (++reads % 2 ? Reflect.get(t, key) : 'changed') });
    }
    case 3:
      return {
        get length() {
          throw new FuzzTrap('length getter');
        },
        valueOf() {
          throw new FuzzTrap('valueOf');
        },
        toString() {
          throw new FuzzTrap('toString');
        },
        [Symbol.toPrimitive]() {
          throw new FuzzTrap('toPrimitive');
        },
      };
    default:
      return new Proxy(target, {}); // a transparent Proxy
  }
}

/** An array that is not what it seems. */
function oddArray(rng) {
  switch (rng.int(8)) {
    case 0:
      return new Array(rng.pick([1, 3, 65, 1000])); // holes
    case 1: {
      const a = [1, 2];
      Object.defineProperty(a, 0, {
        get() {
          throw new FuzzTrap('array element getter');
        },
      });
      return a;
    }
    case 2:
      return new Proxy([1, 2, 3], { get: (t, key) => (key === 'length' ? 2 ** 32 - 1 : Reflect.get(t, key)) });
    case 3:
      return trickyObject(rng, [1, 2]);
    case 4:
      return ['1', '2'];
    case 5:
      return [1n, 2n];
    case 6:
      return [[1], [2]];
    default:
      return Object.setPrototypeOf([1, 2], null);
  }
}

/** A shape: mostly small and valid, often huge, negative, fractional or not numbers at all. */
export function oddShape(rng) {
  return rng.pick([
    () => [],
    () => [0],
    () => [rng.between(1, 4), 0, 2 ** 52],
    () => [-1],
    () => [1.5],
    () => [Number.NaN],
    () => [Number.POSITIVE_INFINITY],
    () => [-0],
    () => [2 ** 53],
    () => [2 ** 31, 2 ** 31, 2 ** 31],
    () => [2 ** 48], // 2^50 bytes and more: no address space holds them
    () => [2 ** 26, 2 ** 26],
    () => new Array(rng.pick([64, 65, 100])).fill(1),
    () => Array.from({ length: rng.between(1, 4) }, () => rng.between(1, 5)),
    () => oddArray(rng),
    () => rng.pick([1, '2,3', {}, null, undefined, new Int32Array([2, 2])]),
  ])();
}

const PRIMITIVES = [
  undefined,
  null,
  true,
  false,
  0,
  -0,
  1,
  -1,
  0.5,
  3,
  4096,
  4097,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  2 ** 31,
  2 ** 32,
  2 ** 53,
  2 ** 64,
  1e308,
  Number.MIN_VALUE,
  '',
  'cpu',
  'cuda',
  'cuda:0',
  'cuda:1',
  'cuda:65535',
  'cuda:65536',
  'cuda:99999999999999999999',
  'cuda:-1',
  'CUDA',
  'float16',
  'bfloat16',
  'float32',
  'float64',
  '__proto__',
  'constructor',
  'x'.repeat(10_000),
  0n,
  -1n,
  16n,
  4096n,
  2n ** 64n,
  2n ** 70n,
];

/**
 * Any value at all: primitives, odd objects, functions, odd typed arrays and arrays, proxies,
 * throwing getters, and (from `tensors`) real, disposed or fake tensors.
 */
export function hostile(rng, tensors) {
  switch (rng.int(9)) {
    case 0:
    case 1:
      return rng.pick(PRIMITIVES);
    case 2:
      return rng.pick([
        () => Symbol('fuzz'),
        () => ({}),
        () => Object.create(null),
        () => [],
        () => new Date(0),
        () => /x/,
        () => () => 1,
        () => class {},
        () => new Map(),
        () => Promise.resolve(1),
        () => new Error('not a tensor'),
        () => new ArrayBuffer(8),
        () => new DataView(new ArrayBuffer(8)),
        () => JSON.parse('{"__proto__": {"deltaSoftplus": true}}'),
      ])();
    case 3:
      return oddTypedArray(rng);
    case 4:
      return typedArray(rng, rng.pick(TYPED_ARRAYS), rng.pick([0, 1, 2, 4, 16]));
    case 5:
      return oddShape(rng);
    case 6:
      return trickyObject(rng);
    default:
      return tensors.hostile(rng);
  }
}
