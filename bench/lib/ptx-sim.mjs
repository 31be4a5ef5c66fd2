// A SIMT interpreter of PTX, for counting the instructions a kernel issues (ptx-parse.mjs,
// ptx-cfg.mjs). It runs one thread block of a real launch (grid, block, shared memory and the
// kernel's parameter bytes, as the host code made them) over a sparse simulated global memory,
// warp by warp in lockstep:
//  - every instruction a warp reaches is one issue, whatever its guard predicate says for each lane;
//  - a branch that splits a warp runs the taken lanes, then the others, and they reconverge at the
//    branch's immediate post-dominator (the classic reconvergence stack);
//  - bar.sync waits for the block's other warps; shuffles and votes read the other lanes' values.
// Floating point is float32 through Math.fround (fma and the approximate functions to within an
// ulp or so: branch outcomes, not bits, are what the counts need). The subset of PTX covered is
// what nvcc emits for these kernels; anything else stops the run with an error naming it.
import { buildCfg, postDominators } from './ptx-cfg.mjs';
import { isBranch, isExit, registerType, typeBytes } from './ptx-parse.mjs';

const WARP = 32;
const FULL = 0xffffffff;
const TWO64 = 2 ** 64;
// Generic addresses of the parameter, shared and local windows (global addresses are the host's).
export const PARAM_WINDOW = 2 ** 49;
export const SHARED_WINDOW = 2 ** 50;
export const LOCAL_WINDOW = 2 ** 51;
const PAGE = 1 << 16;

const F = new Float32Array(1);
const U = new Uint32Array(F.buffer);
export const f32 = (bits) => {
  U[0] = bits;
  return F[0];
};
export const bits32 = (x) => {
  F[0] = x;
  return U[0];
};
const wrap64 = (x) => {
  if (Number.isSafeInteger(x) || !Number.isFinite(x)) return x;
  return Number(BigInt.asIntN(64, BigInt(Math.round(x))));
};
const big = (x) => BigInt(Math.round(x));
const fromBig64 = (b) => Number(BigInt.asIntN(64, b));

// ---- float16 / bfloat16 ----------------------------------------------------------------------
export function halfToFloat(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0x1f) return m ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  if (e === 0) return sign * m * 2 ** -24;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}
export function floatToHalf(x) {
  const b = bits32(x);
  const sign = (b >>> 16) & 0x8000;
  const mag = b & 0x7fffffff;
  if (mag >= 0x7f800000) return sign | 0x7c00 | (mag > 0x7f800000 ? 0x200 : 0);
  if (mag >= 0x477ff000) return sign | 0x7c00;
  if (mag < 0x38800000) {
    const e = mag >>> 23;
    if (e < 102) return sign;
    const sig = (mag & 0x7fffff) | 0x800000;
    const shift = 126 - e;
    let m = sig >>> shift;
    const rest = sig & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rest > half || (rest === half && m & 1)) m += 1;
    return sign | m;
  }
  return sign | (((mag + 0xfff + ((mag >>> 13) & 1)) >>> 13) - (112 << 10));
}
const bf16ToFloat = (h) => f32((h & 0xffff) << 16);
function floatToBf16(x) {
  const b = bits32(x);
  if ((b & 0x7fffffff) > 0x7f800000) return ((b >>> 16) | 0x40) & 0xffff;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

// ---- values by PTX type ----------------------------------------------------------------------
// Registers hold: integers and float32 of up to 32 bits as their unsigned bit pattern, 64-bit
// integers as signed numbers (exact below 2^53, which addresses and sizes are), predicates 0 / 1.
const is64 = (t) => typeBytes(t) === 8;
function reader(type) {
  switch (type) {
    case 'f32':
      return f32;
    case 's32':
      return (v) => v | 0;
    case 's16':
      return (v) => (v << 16) >> 16;
    case 's8':
      return (v) => (v << 24) >> 24;
    case 'u16':
    case 'b16':
      return (v) => v & 0xffff;
    case 'u8':
    case 'b8':
      return (v) => v & 0xff;
    case 'u64':
      return (v) => (v < 0 ? v + TWO64 : v);
    case 'f16':
      return (v) => halfToFloat(v & 0xffff);
    case 'bf16':
      return (v) => bf16ToFloat(v);
    case 'pred':
    case 's64':
    case 'b64':
      return (v) => v;
    default:
      if (typeBytes(type) === 4) return (v) => v >>> 0;
      throw new Error(`type .${type} is not supported`);
  }
}
function writer(type) {
  switch (type) {
    case 'f32':
      return (x) => bits32(x);
    case 'f16':
      return (x) => floatToHalf(x);
    case 'bf16':
      return (x) => floatToBf16(x);
    case 'pred':
      return (x) => (x ? 1 : 0);
    default: {
      const bytes = typeBytes(type);
      if (bytes === 8) return wrap64;
      if (bytes === 4) return (x) => (Number.isSafeInteger(x) ? x >>> 0 : Number(BigInt.asUintN(32, big(x))));
      if (bytes === 2) return (x) => x & 0xffff;
      if (bytes === 1) return (x) => x & 0xff;
      throw new Error(`type .${type} is not supported`);
    }
  }
}
function immediate(text, type) {
  const t = text.replace(/U$/, '');
  if (/^0[fF]/.test(t)) return Number.parseInt(t.slice(2), 16) >>> 0;
  if (/^0[dD]/.test(t)) throw new Error('float64 immediates are not supported');
  const neg = t.startsWith('-');
  const body = t.replace(/^[-+]/, '');
  const v = /^0[xX]/.test(body) ? Number.parseInt(body.slice(2), 16) : Number(body);
  const signed = neg ? -v : v;
  if (type === 'f32') return bits32(signed);
  return writer(type ?? 's64')(signed);
}

// ---- memory ----------------------------------------------------------------------------------
/**
 * Global memory: the regions a launch may touch, [{ name, address, bytes, fill(view, offset) }]
 * where fill writes the region's initial contents into `view` (a DataView over one page, starting
 * at byte `offset` of the region). Pages are filled on first touch; an access outside every
 * region is an error that names the address.
 */
export class GlobalMemory {
  constructor(regions) {
    this.regions = [...regions].sort((a, b) => a.address - b.address);
    this.pages = new Map();
  }
  regionAt(address) {
    for (const r of this.regions) if (address >= r.address && address < r.address + r.bytes) return r;
    return null;
  }
  view(address, bytes) {
    const key = Math.floor(address / PAGE);
    let page = this.pages.get(key);
    if (!page) {
      const region = this.regionAt(address);
      if (!region) throw new Error(`global access at 0x${address.toString(16)} outside every buffer`);
      const base = key * PAGE;
      const dv = new DataView(new ArrayBuffer(PAGE));
      const from = Math.max(base, region.address);
      const to = Math.min(base + PAGE, region.address + region.bytes);
      region.fill?.(new DataView(dv.buffer, from - base, to - from), from - region.address);
      page = { dv, base, from, to, region };
      this.pages.set(key, page);
    }
    const off = address - page.base;
    if (address < page.from || address + bytes > page.to)
      throw new Error(`global access of ${bytes} bytes at 0x${address.toString(16)} outside ${page.region.name}`);
    return { dv: page.dv, off };
  }
}

function loadValue(dv, off, type) {
  switch (typeBytes(type)) {
    case 1:
      return dv.getUint8(off);
    case 2:
      return dv.getUint16(off, true);
    case 4:
      return dv.getUint32(off, true);
    case 8:
      return fromBig64(dv.getBigUint64(off, true));
    default:
      throw new Error(`load of .${type}`);
  }
}
function storeValue(dv, off, type, v) {
  switch (typeBytes(type)) {
    case 1:
      return dv.setUint8(off, v & 0xff);
    case 2:
      return dv.setUint16(off, v & 0xffff, true);
    case 4:
      return dv.setUint32(off, v >>> 0, true);
    case 8:
      return dv.setBigUint64(off, BigInt.asUintN(64, big(v)), true);
    default:
      throw new Error(`store of .${type}`);
  }
}

// ---- decoding ----------------------------------------------------------------------------------
const TYPES = new Set(['b8', 'b16', 'b32', 'b64', 'u8', 'u16', 'u32', 'u64', 's8', 's16', 's32', 's64']);
for (const t of ['f16', 'bf16', 'f32', 'f64', 'pred', 'f16x2', 'bf16x2']) TYPES.add(t);
const SPACES = new Set(['global', 'shared', 'local', 'param', 'const', 'generic']);
const typesOf = (ins) => ins.mods.filter((m) => TYPES.has(m));
const has = (ins, m) => ins.mods.includes(m);

const SPECIAL = /^%(tid|ntid|ctaid|nctaid)\.([xyz])$/;

/** Everything the interpreter needs about one function, decoded once. */
class Program {
  constructor(module, fn) {
    this.fn = fn;
    this.cfg = buildCfg(fn);
    const ipdom = postDominators(this.cfg);
    this.reconvergeAt = new Int32Array(fn.instructions.length).fill(-1);
    for (const b of this.cfg.blocks) {
      this.reconvergeAt[b.end - 1] = ipdom[b.index] === -1 ? -1 : this.cfg.blocks[ipdom[b.index]].start;
    }
    this.registers = new Map();
    this.paramOffsets = new Map();
    let offset = 0;
    for (const p of fn.params) {
      offset = Math.ceil(offset / p.align) * p.align;
      this.paramOffsets.set(p.name, offset);
      offset += p.size;
    }
    this.paramBytes = offset;
    // Shared memory: the function's and the module's static arrays, then the dynamic (extern) one.
    this.sharedSymbols = new Map();
    let shared = 0;
    const dynamic = [];
    for (const a of [...module.arrays, ...fn.arrays].filter((x) => x.space === 'shared')) {
      if (a.bytes === 0) {
        dynamic.push(a);
        continue;
      }
      shared = Math.ceil(shared / a.align) * a.align;
      this.sharedSymbols.set(a.name, shared);
      shared += a.bytes;
    }
    this.staticShared = Math.ceil(shared / 16) * 16;
    for (const a of dynamic) this.sharedSymbols.set(a.name, this.staticShared);
    this.localSymbols = new Map();
    let local = 0;
    for (const a of fn.arrays.filter((x) => x.space === 'local')) {
      local = Math.ceil(local / a.align) * a.align;
      this.localSymbols.set(a.name, local);
      local += a.bytes;
    }
    this.localBytes = local;
    this.code = fn.instructions.map((ins, pc) => this.decode(ins, pc));
  }

  reg(name) {
    let r = this.registers.get(name);
    if (r === undefined) {
      r = this.registers.size;
      this.registers.set(name, r);
    }
    return r * WARP;
  }
  regBytes(name) {
    const t = registerType(this.fn, name);
    return t === 'pred' ? 0 : t ? typeBytes(t) : 4;
  }

  /** A source operand as (warp, lane) -> raw value of `type`. */
  source(op, type) {
    if (op.kind === 'reg') {
      const s = SPECIAL.exec(op.name);
      if (s) {
        const axis = 'xyz'.indexOf(s[2]);
        return (w, l) => w.block.special(s[1], axis, w, l);
      }
      if (op.name === '%laneid') return (_w, l) => l;
      if (op.name === '%warpid') return (w) => w.index;
      if (/^%lanemask_/.test(op.name)) {
        const kind = op.name.slice(10);
        return (_w, l) =>
          ({
            eq: 2 ** l,
            lt: 2 ** l - 1,
            le: 2 ** (l + 1) - 1,
            gt: FULL - (2 ** (l + 1) - 1),
            ge: FULL - (2 ** l - 1),
          })[kind] >>> 0;
      }
      if (/^%(clock|clock64|globaltimer)/.test(op.name)) return (w) => w.issues;
      if (op.name === '%dynamic_smem_size') return (w) => w.block.dynamicShared;
      const r = this.reg(op.name);
      return (w, l) => w.regs[r + l];
    }
    if (op.kind === 'imm') {
      const v = immediate(op.text, type);
      return () => v;
    }
    if (op.kind === 'sym') {
      if (this.sharedSymbols.has(op.name)) {
        const v = this.sharedSymbols.get(op.name);
        return () => v;
      }
      if (this.localSymbols.has(op.name)) {
        const v = this.localSymbols.get(op.name);
        return () => v;
      }
      if (this.paramOffsets.has(op.name)) {
        const v = this.paramOffsets.get(op.name); // its address in the parameter space
        return () => v;
      }
      throw new Error(`unknown symbol ${op.name}`);
    }
    throw new Error(`operand kind ${op.kind} is not supported here`);
  }

  /** A destination register as (warp, lane, raw value) => void. */
  dest(op) {
    if (op.kind === 'sink') return () => {};
    if (op.kind !== 'reg') throw new Error('destination is not a register');
    const r = this.reg(op.name);
    return (w, l, v) => {
      w.regs[r + l] = v;
    };
  }

  /** The address of a memory operand within its state space: (warp, lane) -> address. */
  address(op) {
    const offset = op.offset;
    const base = op.base;
    if (base?.kind === 'sym') {
      if (this.paramOffsets.has(base.name)) {
        const at = this.paramOffsets.get(base.name);
        if (at === undefined) throw new Error(`unknown parameter ${base.name}`);
        return () => at + offset;
      }
      const at = this.sharedSymbols.get(base.name) ?? this.localSymbols.get(base.name);
      if (at === undefined) throw new Error(`unknown symbol ${base.name}`);
      return () => at + offset;
    }
    const get = this.source(base, 'u64');
    return (w, l) => get(w, l) + offset;
  }

  decode(ins, pc) {
    try {
      return this.decodeOp(ins, pc);
    } catch (e) {
      // Decoding errors surface only if the instruction is reached.
      const message = `${this.fn.name}: PTX line ${ins.line} '${ins.text}': ${e.message}`;
      return {
        kind: 'op',
        exec: () => {
          throw new Error(message);
        },
      };
    }
  }

  decodeOp(ins, pc) {
    const guard = ins.guard ? { r: this.reg(ins.guard.reg), negated: ins.guard.negated } : null;
    const out = { kind: 'op', guard, ins };
    if (isBranch(ins)) {
      const t = ins.operands[ins.operands.length - 1];
      return { ...out, kind: 'branch', target: this.fn.labels.get(t.name), reconverge: this.reconvergeAt[pc] };
    }
    if (isExit(ins)) {
      if (ins.op === 'trap')
        return {
          ...out,
          kind: 'op',
          exec: () => {
            throw new Error('trap');
          },
        };
      return { ...out, kind: 'exit' };
    }
    if (ins.op === 'bar' || ins.op === 'barrier') {
      if (has(ins, 'warp')) return { ...out, kind: 'nop' };
      if (has(ins, 'sync') || ins.mods.length === 0) return { ...out, kind: 'barrier' };
      throw new Error(`${ins.opcode} is not supported`);
    }
    if (['membar', 'fence', 'nanosleep', 'pmevent', 'prefetch', 'prefetchu', 'discard'].includes(ins.op))
      return { ...out, kind: 'nop' };
    const exec = this.semantics(ins);
    return { ...out, exec };
  }

  // Each returns exec(w, lanes) applying the instruction to the lanes (an array of lane indices).
  semantics(ins) {
    const ops = ins.operands;
    const types = typesOf(ins);
    const type = types[types.length - 1];
    const map1 = (fn) => {
      const d = this.dest(ops[0]);
      const a = this.source(ops[1], type);
      const rd = reader(type);
      const wr = writer(type);
      return (w, lanes) => {
        for (const l of lanes) d(w, l, wr(fn(rd(a(w, l)))));
      };
    };
    const map2 = (fn, bType = type) => {
      const d = this.dest(ops[0]);
      const a = this.source(ops[1], type);
      const b = this.source(ops[2], bType);
      const ra = reader(type);
      const rb = reader(bType);
      const wr = writer(type);
      return (w, lanes) => {
        for (const l of lanes) d(w, l, wr(fn(ra(a(w, l)), rb(b(w, l)))));
      };
    };
    const map3 = (fn) => {
      const d = this.dest(ops[0]);
      const [a, b, c] = [1, 2, 3].map((i) => this.source(ops[i], type));
      const rd = reader(type);
      const wr = writer(type);
      return (w, lanes) => {
        for (const l of lanes) d(w, l, wr(fn(rd(a(w, l)), rd(b(w, l)), rd(c(w, l)))));
      };
    };
    const isFloat = type === 'f32';
    const fr = Math.fround;
    const wide = has(ins, 'wide');
    const hi = has(ins, 'hi');
    switch (ins.op) {
      case 'mov':
        return this.mov(ins, type);
      case 'add':
      case 'sub': {
        const sign = ins.op === 'add' ? 1 : -1;
        return isFloat ? map2((a, b) => fr(a + sign * b)) : map2((a, b) => a + sign * b);
      }
      case 'mul':
        if (isFloat) return map2((a, b) => fr(a * b));
        if (wide) return this.wideMul(ins, type, false);
        if (hi) return map2((a, b) => Number((big(a) * big(b)) >> BigInt(8 * typeBytes(type))));
        if (is64(type)) return map2((a, b) => (Number.isSafeInteger(a * b) ? a * b : fromBig64(big(a) * big(b))));
        return map2((a, b) => Math.imul(a, b));
      case 'mad':
        if (isFloat) return map3((a, b, c) => fr(a * b + c));
        if (wide) return this.wideMul(ins, type, true);
        if (hi) return map3((a, b, c) => Number((big(a) * big(b)) >> BigInt(8 * typeBytes(type))) + c);
        if (is64(type))
          return map3((a, b, c) => (Number.isSafeInteger(a * b) ? a * b + c : fromBig64(big(a) * big(b) + big(c))));
        return map3((a, b, c) => Math.imul(a, b) + c);
      case 'fma':
        return map3((a, b, c) => fr(a * b + c));
      case 'div':
        if (isFloat) return map2((a, b) => fr(a / b));
        return map2((a, b) => (b === 0 ? -1 : Math.trunc(a / b)));
      case 'rem':
        return map2((a, b) => (b === 0 ? a : a % b));
      case 'neg':
        return map1((a) => -a);
      case 'abs':
        return map1((a) => Math.abs(a));
      case 'min':
        return map2((a, b) =>
          isFloat && (Number.isNaN(a) || Number.isNaN(b)) ? (Number.isNaN(a) ? b : a) : Math.min(a, b),
        );
      case 'max':
        return map2((a, b) =>
          isFloat && (Number.isNaN(a) || Number.isNaN(b)) ? (Number.isNaN(a) ? b : a) : Math.max(a, b),
        );
      case 'rcp':
        return map1((a) => fr(1 / a));
      case 'sqrt':
        return map1((a) => fr(Math.sqrt(a)));
      case 'rsqrt':
        return map1((a) => fr(1 / Math.sqrt(a)));
      case 'ex2':
        return map1((a) => fr(2 ** a));
      case 'lg2':
        return map1((a) => fr(Math.log2(a)));
      case 'sin':
        return map1((a) => fr(Math.sin(a)));
      case 'cos':
        return map1((a) => fr(Math.cos(a)));
      case 'tanh':
        return map1((a) => fr(Math.tanh(a)));
      case 'copysign':
        return map2((a, b) => (Math.sign(b) < 0 || Object.is(b, -0) ? -Math.abs(a) : Math.abs(a)));
      case 'and':
      case 'or':
      case 'xor':
        return this.bitwise(ins, type);
      case 'not':
        if (type === 'pred') return map1((a) => !a);
        if (is64(type)) return map1((a) => fromBig64(~big(a)));
        return map1((a) => ~a);
      case 'cnot':
        return map1((a) => (a === 0 ? 1 : 0));
      case 'shl':
      case 'shr':
        return this.shift(ins, type);
      case 'popc':
        return map1((a) => {
          let v = a >>> 0;
          let c = 0;
          for (; v; v &= v - 1) c += 1;
          return c;
        });
      case 'clz':
        return map1((a) => Math.clz32(a));
      case 'brev':
        return map1((a) => {
          let v = a >>> 0;
          let r = 0;
          for (let i = 0; i < 32; i += 1, v >>>= 1) r = (r << 1) | (v & 1);
          return r >>> 0;
        });
      case 'bfe':
        return this.bfe(ins, type);
      case 'prmt':
        return this.prmt(ins);
      case 'lop3':
        return this.lop3(ins);
      case 'setp':
        return this.setp(ins, type);
      case 'selp': {
        const d = this.dest(ops[0]);
        const a = this.source(ops[1], type);
        const b = this.source(ops[2], type);
        const c = this.source(ops[3], 'pred');
        return (w, lanes) => {
          for (const l of lanes) d(w, l, c(w, l) ? a(w, l) : b(w, l));
        };
      }
      case 'cvt':
        return this.cvt(ins);
      case 'cvta':
        return this.cvta(ins);
      case 'ld':
      case 'ldu':
        return this.load(ins, type);
      case 'st':
        return this.store(ins, type);
      case 'atom':
      case 'red':
        return this.atomic(ins, type);
      case 'shfl':
        return this.shuffle(ins);
      case 'vote':
        return this.vote(ins);
      case 'activemask': {
        const d = this.dest(ops[0]);
        return (w, lanes) => {
          let m = 0;
          for (const l of lanes) m |= 1 << l;
          for (const l of lanes) d(w, l, m >>> 0);
        };
      }
      default:
        throw new Error(`instruction ${ins.opcode} is not supported`);
    }
  }

  mov(ins, type) {
    const [dst, src] = ins.operands;
    if (dst.kind === 'vec') {
      // unpack: {lo, hi} = value
      const parts = dst.items.map((o) => this.dest(o));
      const width = (8 * typeBytes(type)) / parts.length;
      const get = this.source(src, type);
      return (w, lanes) => {
        for (const l of lanes) {
          let v = get(w, l);
          if (width === 32) {
            const b = BigInt.asUintN(64, big(v));
            parts[0](w, l, Number(b & 0xffffffffn));
            parts[1](w, l, Number(b >> 32n));
          } else {
            v >>>= 0;
            for (let k = 0; k < parts.length; k += 1) parts[k](w, l, (v >>> (k * width)) & (2 ** width - 1));
          }
        }
      };
    }
    const d = this.dest(dst);
    if (src.kind === 'vec') {
      const parts = src.items.map((o) => this.source(o, 'u32'));
      const width = (8 * typeBytes(type)) / parts.length;
      return (w, lanes) => {
        for (const l of lanes) {
          if (width === 32) d(w, l, fromBig64((big(parts[1](w, l)) << 32n) | big(parts[0](w, l) >>> 0)));
          else {
            let v = 0;
            for (let k = 0; k < parts.length; k += 1) v += (parts[k](w, l) & (2 ** width - 1)) * 2 ** (k * width);
            d(w, l, v >>> 0);
          }
        }
      };
    }
    const get = this.source(src, type);
    const narrow = typeBytes(type) < 4 ? writer(type) : (v) => v;
    return (w, lanes) => {
      for (const l of lanes) d(w, l, narrow(get(w, l)));
    };
  }

  wideMul(ins, type, add) {
    const ops = ins.operands;
    const d = this.dest(ops[0]);
    const a = this.source(ops[1], type);
    const b = this.source(ops[2], type);
    const c = add
      ? this.source(
          ops[3],
          type.replace(/\d+/, (n) => String(2 * Number(n))),
        )
      : () => 0;
    const r = reader(type);
    const bytes = typeBytes(type);
    const wr = bytes === 4 ? wrap64 : writer(type.replace(/\d+/, (n) => String(2 * Number(n))));
    return (w, lanes) => {
      for (const l of lanes) {
        const p = r(a(w, l)) * r(b(w, l)) + c(w, l);
        d(w, l, wr(Number.isSafeInteger(p) ? p : fromBig64(big(r(a(w, l))) * big(r(b(w, l))) + big(c(w, l)))));
      }
    };
  }

  bitwise(ins, type) {
    const ops = ins.operands;
    const d = this.dest(ops[0]);
    const a = this.source(ops[1], type);
    const b = this.source(ops[2], type);
    const op = ins.op;
    if (type === 'pred') {
      const f = op === 'and' ? (x, y) => x && y : op === 'or' ? (x, y) => x || y : (x, y) => x !== y;
      return (w, lanes) => {
        for (const l of lanes) d(w, l, f(a(w, l), b(w, l)) ? 1 : 0);
      };
    }
    if (is64(type)) {
      const f = op === 'and' ? (x, y) => x & y : op === 'or' ? (x, y) => x | y : (x, y) => x ^ y;
      return (w, lanes) => {
        for (const l of lanes) {
          const x = a(w, l);
          const y = b(w, l);
          // both in 0 .. 2^31: plain 32-bit operations are exact
          d(w, l, x >= 0 && y >= 0 && x < 2 ** 31 && y < 2 ** 31 ? f(x, y) : fromBig64(f(big(x), big(y))));
        }
      };
    }
    const mask = typeBytes(type) === 2 ? 0xffff : typeBytes(type) === 1 ? 0xff : FULL;
    const f = op === 'and' ? (x, y) => x & y : op === 'or' ? (x, y) => x | y : (x, y) => x ^ y;
    return (w, lanes) => {
      for (const l of lanes) d(w, l, (f(a(w, l), b(w, l)) & mask) >>> 0);
    };
  }

  shift(ins, type) {
    const ops = ins.operands;
    const d = this.dest(ops[0]);
    const a = this.source(ops[1], type);
    const b = this.source(ops[2], 'u32');
    const bits = 8 * typeBytes(type);
    const signed = type.startsWith('s');
    const left = ins.op === 'shl';
    if (bits === 64) {
      return (w, lanes) => {
        for (const l of lanes) {
          const n = Math.min(b(w, l) >>> 0, 64);
          const x = big(a(w, l));
          const u = signed ? BigInt.asIntN(64, x) : BigInt.asUintN(64, x);
          d(w, l, fromBig64(left ? u << BigInt(n) : u >> BigInt(n)));
        }
      };
    }
    const rd = reader(type);
    const mask = bits === 32 ? FULL : 2 ** bits - 1;
    return (w, lanes) => {
      for (const l of lanes) {
        const n = b(w, l) >>> 0;
        const x = rd(a(w, l));
        let v;
        if (left) v = n >= bits ? 0 : (x << n) & mask;
        else if (signed) v = n >= bits ? (x < 0 ? mask : 0) : (x >> n) & mask;
        else v = n >= bits ? 0 : (x >>> n) & mask;
        d(w, l, v >>> 0);
      }
    };
  }

  bfe(ins, type) {
    const ops = ins.operands;
    const d = this.dest(ops[0]);
    const a = this.source(ops[1], type);
    const pos = this.source(ops[2], 'u32');
    const len = this.source(ops[3], 'u32');
    const signed = type.startsWith('s');
    return (w, lanes) => {
      for (const l of lanes) {
        const p = pos(w, l) & 0xff;
        const n = len(w, l) & 0xff;
        const x = a(w, l) >>> 0;
        if (n === 0) {
          d(w, l, 0);
          continue;
        }
        let v = p >= 32 ? 0 : x >>> p;
        if (n < 32) v &= 2 ** n - 1;
        if (signed && n < 32) {
          const msb = Math.min(p + n - 1, 31);
          if ((x >>> msb) & 1) v |= FULL << n;
        }
        d(w, l, v >>> 0);
      }
    };
  }

  prmt(ins) {
    const ops = ins.operands;
    const d = this.dest(ops[0]);
    const a = this.source(ops[1], 'b32');
    const b = this.source(ops[2], 'b32');
    const c = this.source(ops[3], 'b32');
    if (ins.mods.some((m) => ['f4e', 'b4e', 'rc8', 'ecl', 'ecr', 'rc16'].includes(m)))
      throw new Error('prmt modes are not supported');
    return (w, lanes) => {
      for (const l of lanes) {
        const bytes = [a(w, l), b(w, l)].flatMap((v) => [0, 8, 16, 24].map((s) => (v >>> s) & 0xff));
        const sel = c(w, l);
        let v = 0;
        for (let k = 0; k < 4; k += 1) {
          const s = (sel >>> (4 * k)) & 0xf;
          let byte = bytes[s & 7];
          if (s & 8) byte = byte & 0x80 ? 0xff : 0;
          v += byte * 2 ** (8 * k);
        }
        d(w, l, v >>> 0);
      }
    };
  }

  lop3(ins) {
    const ops = ins.operands;
    const d = this.dest(ops[0]);
    const [a, b, c, lut] = [1, 2, 3, 4].map((i) => this.source(ops[i], 'b32'));
    return (w, lanes) => {
      for (const l of lanes) {
        const x = a(w, l);
        const y = b(w, l);
        const z = c(w, l);
        const t = lut(w, l);
        let v = 0;
        for (let k = 0; k < 8; k += 1) {
          if (!((t >>> k) & 1)) continue;
          v |= (k & 4 ? x : ~x) & (k & 2 ? y : ~y) & (k & 1 ? z : ~z);
        }
        d(w, l, v >>> 0);
      }
    };
  }

  setp(ins, type) {
    const ops = ins.operands;
    const cmp = ins.mods[0];
    const combine = ['and', 'or', 'xor'].find((m) => ins.mods.includes(m));
    const dsts = ops[0].kind === 'pair' ? ops[0].items : [ops[0]];
    const [d, dNot] = dsts.map((o) => this.dest(o));
    const rd = reader(type);
    const a = this.source(ops[1], type);
    const b = this.source(ops[2], type);
    const cOp = ops[3];
    const c = cOp ? (cOp.kind === 'not' ? this.source(cOp.item, 'pred') : this.source(cOp, 'pred')) : null;
    const cNeg = cOp?.kind === 'not';
    const unsigned = type.startsWith('u') || type.startsWith('b');
    const isF = type === 'f32' || type === 'f16' || type === 'bf16';
    const nan = (x, y) => Number.isNaN(x) || Number.isNaN(y);
    const tests = {
      eq: (x, y) => x === y,
      ne: (x, y) => (isF ? !nan(x, y) && x !== y : x !== y),
      lt: (x, y) => x < y,
      le: (x, y) => x <= y,
      gt: (x, y) => x > y,
      ge: (x, y) => x >= y,
      lo: (x, y) => x < y,
      ls: (x, y) => x <= y,
      hi: (x, y) => x > y,
      hs: (x, y) => x >= y,
      equ: (x, y) => nan(x, y) || x === y,
      neu: (x, y) => nan(x, y) || x !== y,
      ltu: (x, y) => nan(x, y) || x < y,
      leu: (x, y) => nan(x, y) || x <= y,
      gtu: (x, y) => nan(x, y) || x > y,
      geu: (x, y) => nan(x, y) || x >= y,
      num: (x, y) => !nan(x, y),
      nan,
    };
    const test = tests[cmp];
    if (!test) throw new Error(`setp.${cmp} is not supported`);
    const u64 = reader('u64');
    const value = unsigned && is64(type) ? (v) => u64(v) : rd;
    const join =
      combine === 'and'
        ? (p, q) => p && q
        : combine === 'or'
          ? (p, q) => p || q
          : combine === 'xor'
            ? (p, q) => p !== q
            : (p) => p;
    return (w, lanes) => {
      for (const l of lanes) {
        const t = test(value(a(w, l)), value(b(w, l)));
        const q = c ? Boolean(c(w, l)) !== cNeg : true;
        d(w, l, join(t, q) ? 1 : 0);
        if (dNot) dNot(w, l, join(!t, q) ? 1 : 0);
      }
    };
  }

  cvt(ins) {
    const types = typesOf(ins);
    const [dt, st] = types;
    const ops = ins.operands;
    const d = this.dest(ops[0]);
    const fr = Math.fround;
    const sat = has(ins, 'sat');
    const round = ins.mods.find((m) => /^r[nzmp]i?$/.test(m));
    const toInt = {
      rni: (x) => {
        const r = Math.round(x);
        return Math.abs(x % 1) === 0.5 ? 2 * Math.round(x / 2) : r;
      },
      rzi: Math.trunc,
      rmi: Math.floor,
      rpi: Math.ceil,
    };
    if (dt === 'f16x2' || dt === 'bf16x2') {
      const a = this.source(ops[1], 'f32');
      const b = this.source(ops[2], 'f32');
      const pack = dt === 'f16x2' ? floatToHalf : floatToBf16;
      return (w, lanes) => {
        for (const l of lanes) d(w, l, ((pack(f32(a(w, l))) << 16) | pack(f32(b(w, l)))) >>> 0);
      };
    }
    const rs = reader(st);
    const a = this.source(ops[1], st);
    const floatSrc = ['f32', 'f16', 'bf16'].includes(st);
    const floatDst = ['f32', 'f16', 'bf16'].includes(dt);
    let f;
    if (floatSrc && floatDst) {
      const integral = round?.endsWith('i') ? toInt[round] : (x) => x;
      f = (x) => {
        let v = integral(x);
        if (sat) v = Number.isNaN(v) ? 0 : Math.min(1, Math.max(0, v));
        return v;
      };
    } else if (floatSrc) {
      const r = toInt[round ?? 'rzi'];
      const bytes = typeBytes(dt);
      const signed = dt.startsWith('s');
      const max = signed ? 2 ** (8 * bytes - 1) - 1 : 2 ** (8 * bytes) - 1;
      const min = signed ? -(2 ** (8 * bytes - 1)) : 0;
      f = (x) => (Number.isNaN(x) ? 0 : Math.min(max, Math.max(min, r(x))));
    } else if (floatDst) {
      f = (x) => fr(x);
    } else {
      f = (x) => x;
    }
    const wr = writer(dt);
    return (w, lanes) => {
      for (const l of lanes) d(w, l, wr(f(rs(a(w, l)))));
    };
  }

  cvta(ins) {
    const ops = ins.operands;
    const d = this.dest(ops[0]);
    const a = this.source(ops[1], 'u64');
    const space = ins.mods.find((m) => SPACES.has(m));
    const to = has(ins, 'to');
    const window = { shared: SHARED_WINDOW, local: LOCAL_WINDOW, param: PARAM_WINDOW }[space] ?? 0;
    return (w, lanes) => {
      for (const l of lanes) d(w, l, to ? a(w, l) - window : a(w, l) + window);
    };
  }

  /** (warp, lane, address, bytes) -> { dv, off } for the instruction's state space. */
  memory(ins) {
    const space = ins.mods.find((m) => SPACES.has(m)) ?? 'generic';
    const param = (w, _l, at, bytes) => {
      if (at + bytes > w.block.params.byteLength) throw new Error(`parameter read past the end at ${at}`);
      return { dv: w.block.params, off: at };
    };
    const shared = (w, _l, at, bytes) => {
      if (at < 0 || at + bytes > w.block.shared.byteLength)
        throw new Error(`shared access at ${at} outside ${w.block.shared.byteLength} bytes`);
      return { dv: w.block.shared, off: at };
    };
    const local = (w, l, at, bytes) => {
      const dv = w.local[l];
      if (at < 0 || at + bytes > dv.byteLength) throw new Error(`local access at ${at} outside ${dv.byteLength} bytes`);
      return { dv, off: at };
    };
    const global = (w, _l, at, bytes) => w.block.global.view(at, bytes);
    switch (space) {
      case 'param':
        return param;
      case 'shared':
        return shared;
      case 'local':
        return local;
      case 'global':
        return global;
      case 'generic':
        return (w, l, at, bytes) =>
          at >= LOCAL_WINDOW
            ? local(w, l, at - LOCAL_WINDOW, bytes)
            : at >= SHARED_WINDOW
              ? shared(w, l, at - SHARED_WINDOW, bytes)
              : at >= PARAM_WINDOW
                ? param(w, l, at - PARAM_WINDOW, bytes)
                : global(w, l, at, bytes);
      default:
        throw new Error(`state space .${space} is not supported`);
    }
  }

  load(ins, type) {
    const [dst, src] = ins.operands;
    const mem = this.memory(ins);
    const addr = this.address(src);
    const bytes = typeBytes(type);
    const dsts = dst.kind === 'vec' ? dst.items : [dst];
    const ds = dsts.map((o) => this.dest(o));
    // A narrower signed load into a wider register is sign-extended.
    const extend = dsts.map((o) => {
      const regBytes = o.kind === 'reg' ? this.regBytes(o.name) : bytes;
      if (!type.startsWith('s') || regBytes <= bytes) return (v) => v;
      const rd = reader(type);
      return regBytes === 8 ? (v) => rd(v) : (v) => rd(v) >>> 0;
    });
    return (w, lanes) => {
      for (const l of lanes) {
        const at = addr(w, l);
        for (let k = 0; k < ds.length; k += 1) {
          const { dv, off } = mem(w, l, at + k * bytes, bytes);
          ds[k](w, l, extend[k](loadValue(dv, off, type)));
        }
      }
    };
  }

  store(ins, type) {
    const [dst, src] = ins.operands;
    const mem = this.memory(ins);
    const addr = this.address(dst);
    const bytes = typeBytes(type);
    const srcs = (src.kind === 'vec' ? src.items : [src]).map((o) => this.source(o, type));
    return (w, lanes) => {
      for (const l of lanes) {
        const at = addr(w, l);
        for (let k = 0; k < srcs.length; k += 1) {
          const { dv, off } = mem(w, l, at + k * bytes, bytes);
          storeValue(dv, off, type, srcs[k](w, l));
        }
      }
    };
  }

  atomic(ins, type) {
    const ops = ins.operands;
    const isRed = ins.op === 'red';
    const d = isRed ? null : this.dest(ops[0]);
    const memOp = isRed ? ops[0] : ops[1];
    const vals = ops.slice(isRed ? 1 : 2).map((o) => this.source(o, type));
    const mem = this.memory(ins);
    const addr = this.address(memOp);
    const rd = reader(type);
    const wr = writer(type);
    const op = ins.mods.find((m) => ['add', 'min', 'max', 'exch', 'cas', 'and', 'or', 'xor', 'inc', 'dec'].includes(m));
    const bytes = typeBytes(type);
    const fr = Math.fround;
    const combine = {
      add: (x, v) => (type === 'f32' ? fr(x + v) : x + v),
      min: Math.min,
      max: Math.max,
      exch: (_x, v) => v,
      and: (x, v) => x & v,
      or: (x, v) => x | v,
      xor: (x, v) => x ^ v,
      inc: (x, v) => (x >= v ? 0 : x + 1),
      dec: (x, v) => (x === 0 || x > v ? v : x - 1),
    }[op];
    if (!combine && op !== 'cas') throw new Error(`atom.${op} is not supported`);
    return (w, lanes) => {
      for (const l of lanes) {
        const { dv, off } = mem(w, l, addr(w, l), bytes);
        const old = loadValue(dv, off, type);
        const x = rd(old);
        const next = op === 'cas' ? (x === rd(vals[0](w, l)) ? vals[1](w, l) : old) : wr(combine(x, rd(vals[0](w, l))));
        storeValue(dv, off, type, next);
        if (d) d(w, l, old);
      }
    };
  }

  shuffle(ins) {
    const ops = ins.operands;
    const mode = ins.mods.find((m) => ['up', 'down', 'bfly', 'idx'].includes(m));
    const dsts = ops[0].kind === 'pair' ? ops[0].items : [ops[0]];
    const [d, dp] = dsts.map((o) => this.dest(o));
    const a = this.source(ops[1], 'b32');
    const b = this.source(ops[2], 'b32');
    const c = this.source(ops[3], 'b32');
    const values = new Float64Array(WARP);
    return (w, lanes) => {
      for (let l = 0; l < WARP; l += 1) values[l] = a(w, l);
      const results = lanes.map((l) => {
        const bval = b(w, l) & 0x1f;
        const cval = c(w, l);
        const clamp = cval & 0x1f;
        const segmask = (cval >>> 8) & 0x1f;
        const maxLane = (l & segmask) | (clamp & ~segmask);
        const minLane = l & segmask;
        let j;
        let ok;
        if (mode === 'up') {
          j = l - bval;
          ok = j >= maxLane;
        } else if (mode === 'down') {
          j = l + bval;
          ok = j <= maxLane;
        } else if (mode === 'bfly') {
          j = l ^ bval;
          ok = j <= maxLane;
        } else {
          j = minLane | (bval & ~segmask);
          ok = j <= maxLane;
        }
        return ok ? [values[j], 1] : [values[l], 0];
      });
      lanes.forEach((l, k) => {
        d(w, l, results[k][0]);
        if (dp) dp(w, l, results[k][1]);
      });
    };
  }

  vote(ins) {
    const ops = ins.operands;
    const mode = ins.mods.find((m) => ['ballot', 'any', 'all', 'uni'].includes(m));
    const d = this.dest(ops[0]);
    const pOp = ops[1];
    const p = this.source(pOp.kind === 'not' ? pOp.item : pOp, 'pred');
    const neg = pOp.kind === 'not';
    return (w, lanes) => {
      let ballot = 0;
      for (const l of lanes) if (Boolean(p(w, l)) !== neg) ballot |= 1 << l;
      ballot >>>= 0;
      let all = 0;
      for (const l of lanes) all |= 1 << l;
      all >>>= 0;
      const v =
        mode === 'ballot'
          ? ballot
          : mode === 'any'
            ? Number(ballot !== 0)
            : mode === 'all'
              ? Number(ballot === all)
              : Number(ballot === 0 || ballot === all);
      for (const l of lanes) d(w, l, v);
    };
  }
}

const programCache = new WeakMap();
/** The decoded form of a function of a parsed module (cached per function object). */
export function program(module, fn) {
  let p = programCache.get(fn);
  if (!p) {
    p = new Program(module, fn);
    programCache.set(fn, p);
  }
  return p;
}

const laneLists = new Map();
function lanesOf(mask) {
  let list = laneLists.get(mask);
  if (!list) {
    list = [];
    for (let l = 0; l < WARP; l += 1) if ((mask >>> l) & 1) list.push(l);
    laneLists.set(mask, list);
  }
  return list;
}

/**
 * Runs thread block `blockIdx` of a launch of `fn` (a function of the parsed `module`).
 *   launch: { grid: [x, y, z], block: [x, y, z], sharedBytes (dynamic), params: Uint8Array (the
 *           parameters laid out at their PTX offsets), blockIdx: [x, y, z] (default 0) }
 *   global: a GlobalMemory
 *   onIssue(warp, pc, activeMask, executedMask): called for every issue; returning true stops
 *           the run. activeMask: the lanes the warp runs the instruction for; executedMask: those
 *           whose guard predicate holds (the branch's taken lanes for a branch).
 *   maxIssues: a bound on the block's issues (an error beyond it).
 * Returns { issues, stopped, warps }.
 */
export function runBlock(module, fn, launch, global, { onIssue = () => false, maxIssues = 5e7 } = {}) {
  const prog = program(module, fn);
  const [bx, by, bz] = launch.block;
  const threads = bx * by * bz;
  const blockIdx = launch.blockIdx ?? [0, 0, 0];
  const params = new DataView(new ArrayBuffer(Math.max(prog.paramBytes, launch.params.length, 8)));
  new Uint8Array(params.buffer).set(launch.params);
  const block = {
    params,
    shared: new DataView(new ArrayBuffer(prog.staticShared + (launch.sharedBytes ?? 0))),
    dynamicShared: launch.sharedBytes ?? 0,
    global,
    special(kind, axis, w, l) {
      const t = w.index * WARP + l;
      if (kind === 'tid') return [t % bx, Math.floor(t / bx) % by, Math.floor(t / (bx * by))][axis];
      if (kind === 'ntid') return launch.block[axis];
      if (kind === 'ctaid') return blockIdx[axis];
      return launch.grid[axis];
    },
  };
  const registers = () => new Float64Array(Math.max(prog.registers.size, 1) * WARP);
  const warps = [];
  for (let i = 0; i * WARP < threads; i += 1) {
    const live = Math.min(WARP, threads - i * WARP);
    const mask = live === WARP ? FULL : (2 ** live - 1) >>> 0;
    warps.push({
      index: i,
      block,
      regs: registers(),
      local: Array.from({ length: WARP }, () => new DataView(new ArrayBuffer(Math.max(prog.localBytes, 8)))),
      stack: [{ pc: 0, mask, rpc: -1 }],
      exited: 0,
      atBarrier: false,
      done: false,
      issues: 0,
    });
  }

  let issues = 0;
  let stopped = false;
  const code = prog.code;
  const guardMask = (w, op, mask) => {
    if (!op.guard) return mask;
    const { r, negated } = op.guard;
    let m = 0;
    for (const l of lanesOf(mask)) if (Boolean(w.regs[r + l]) !== negated) m |= 1 << l;
    return m >>> 0;
  };

  // Runs warp w until it blocks, finishes, or `quantum` issues pass.
  const runWarp = (w, quantum) => {
    for (let n = 0; n < quantum; n += 1) {
      const top = w.stack[w.stack.length - 1];
      if (!top) {
        w.done = true;
        return;
      }
      const mask = (top.mask & ~w.exited) >>> 0;
      if (mask === 0 || top.pc === top.rpc || top.pc < 0) {
        w.stack.pop();
        continue;
      }
      if (top.pc >= code.length) {
        w.exited = (w.exited | mask) >>> 0; // ran off the end: as ret
        continue;
      }
      const op = code[top.pc];
      const executed = guardMask(w, op, mask);
      w.issues += 1;
      issues += 1;
      if (issues > maxIssues) throw new Error(`${fn.name}: more than ${maxIssues} issues in one block`);
      if (onIssue(w, top.pc, mask, executed)) {
        stopped = true;
        return;
      }
      switch (op.kind) {
        case 'branch': {
          if (executed === mask) top.pc = op.target;
          else if (executed === 0) top.pc += 1;
          else {
            const fall = top.pc + 1;
            top.pc = op.reconverge;
            const rpc = op.reconverge;
            if (fall !== rpc) w.stack.push({ pc: fall, mask: (mask & ~executed) >>> 0, rpc });
            if (op.target !== rpc) w.stack.push({ pc: op.target, mask: executed, rpc });
          }
          break;
        }
        case 'exit':
          w.exited = (w.exited | executed) >>> 0;
          top.pc += 1;
          break;
        case 'barrier':
          top.pc += 1;
          w.atBarrier = true;
          return;
        case 'nop':
          top.pc += 1;
          break;
        default:
          if (executed) op.exec(w, lanesOf(executed));
          top.pc += 1;
      }
    }
  };

  for (;;) {
    let progressed = false;
    for (const w of warps) {
      if (w.done || w.atBarrier) continue;
      runWarp(w, 4096);
      progressed = true;
      if (stopped) return { issues, stopped, warps };
    }
    const live = warps.filter((w) => !w.done);
    if (live.length === 0) break;
    if (live.every((w) => w.atBarrier)) {
      for (const w of live) w.atBarrier = false;
    } else if (!progressed) {
      throw new Error(`${fn.name}: the block's warps wait on each other`);
    }
  }
  return { issues, stopped, warps };
}
