// Seeded inputs for the benchmarks, fast enough for S2's 268M-element tensors.
//
// Values are produced as bfloat16 bit patterns: a pool of 2^22 standard normals (Box-Muller on a
// counter-based hash) and one of 2^22 uniforms in [-2, 0) is made once per seed, and a tensor is
// filled with windows of POOL_BLOCK consecutive pool values taken at random offsets. The float32
// runs get the same (bfloat16-exact) values, widened on the device, so both dtypes see the same data.
// Generating a fresh Box-Muller value per element costs ~30 ns in V8 (8 s for one S2 tensor); the
// tiled copy runs at memory speed. The statistics (mean, variance, range) are those of randn/rand.

export const POOL_SIZE = 1 << 22;
export const POOL_BLOCK = 4096;

/** murmur3's 32-bit finaliser: a good counter-based hash. */
function hash32(x) {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** A small seeded generator of 32-bit integers and uniforms in [0, 1). */
export class Rng {
  constructor(seed) {
    this.state = Math.imul(seed | 0, 0x9e3779b9) ^ 0x5bd1e995;
  }
  u32() {
    this.state = (this.state + 0x6d2b79f5) | 0;
    return hash32(this.state);
  }
  uniform() {
    return this.u32() * 2.3283064365386963e-10;
  }
  normal() {
    const u1 = (this.u32() + 1) * 2.3283064365386963e-10;
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(6.283185307179586 * this.uniform());
  }
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float -> bfloat16 bits, round to nearest even (finite inputs). */
export function bf16Bits(x) {
  f32[0] = x;
  const u = u32[0];
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

/** bfloat16 bits -> Float32Array of the same values. */
export function bitsToFloat32(bits) {
  const out = new Float32Array(bits.length);
  const o = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) o[i] = bits[i] << 16;
  return out;
}

function normalPool(rng) {
  const pool = new Uint16Array(POOL_SIZE);
  for (let i = 0; i < POOL_SIZE; i += 2) {
    const r = Math.sqrt(-2 * Math.log((rng.u32() + 1) * 2.3283064365386963e-10));
    const th = 6.283185307179586 * rng.uniform();
    pool[i] = bf16Bits(r * Math.cos(th));
    pool[i + 1] = bf16Bits(r * Math.sin(th));
  }
  return pool;
}

function uniformPool(rng, lo, hi) {
  const pool = new Uint16Array(POOL_SIZE);
  for (let i = 0; i < POOL_SIZE; i++) {
    pool[i] = bf16Bits(lo + (hi - lo) * rng.uniform()); // never rounds up to hi = 0: bf16 keeps float32's exponents
  }
  return pool;
}

/** Makes the bfloat16 bit patterns of benchmark inputs. One per run (pools are made lazily). */
export class InputFactory {
  constructor(seed = 0) {
    this.rng = new Rng(seed);
    this.pools = {};
  }
  pool(kind) {
    if (!this.pools[kind]) {
      const r = new Rng(kind === 'normal' ? 1 : 2);
      this.pools[kind] = kind === 'normal' ? normalPool(r) : uniformPool(r, -2, 0);
    }
    return this.pools[kind];
  }
  /** n values as bfloat16 bits; kind: 'normal' (randn) or 'delta' (uniform in [-2, 0)). */
  bits(n, kind) {
    const pool = this.pool(kind);
    const out = new Uint16Array(n);
    for (let off = 0; off < n; off += POOL_BLOCK) {
      const len = Math.min(POOL_BLOCK, n - off);
      const start = this.rng.u32() % (POOL_SIZE - POOL_BLOCK);
      out.set(pool.subarray(start, start + len), off);
    }
    return out;
  }
  /** n float32 values drawn one by one (small parameters: A, D, biases). */
  floats(n, fn) {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = fn(this.rng);
    return out;
  }
}
