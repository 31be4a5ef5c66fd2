// Runs a captured kernel launch (bench/kernel-stats/launch-capture.cc) in the PTX interpreter
// (ptx-sim.mjs) and measures what its state loop executes:
//
//  - The state loop is the kernel's hot loop (ptx-cfg.mjs: the innermost loop with an ex2.approx).
//    Counted: warp 0 of block 0, its first visit of that loop (from entering its header to leaving
//    the loop), inside the first iteration of the enclosing loop (the chunk loop of the scans, the
//    row loop of the step). At the benchmark shapes that is a full chunk: every ex2 runs on all 32
//    lanes (fullChunk says whether it did).
//  - issues: warp instructions issued in the loop's blocks — every instruction the warp reaches
//    counts once, predicated off or not, branches included; where the warp's lanes take different
//    sides of a branch both sides are issued (one after the other) and counted.
//  - perElementState = issues x 32 / element·states, where element·states = the lane-executions
//    of ex2 in the loop (one exp2 per (time step, state) element of the scan; per state element of
//    the step). That is thread-instruction slots per element·state, idle lanes included.
//  - The same over the whole first iteration of the enclosing loop (loads, dt, the gate, stores:
//    everything per chunk), per element·state of its state loop.
//
// Inputs are filled as bench.mjs draws them (u, z, B, C, D, dout normal; delta uniform in [-2, 0);
// A = -exp(U[0, 1))), from a hash of (buffer, index), rounded to the buffer's dtype.
import { hotLoops, naturalLoops } from './ptx-cfg.mjs';
import { GlobalMemory, bits32, f32, floatToHalf, halfToFloat, program, runBlock } from './ptx-sim.mjs';

function hashUniform(stream, index) {
  let h = Math.imul(stream ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(index | 0, 0xc2b2ae35) ^ Math.floor(index / 2 ** 32);
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return (h >>> 0) / 2 ** 32;
}

const DISTRIBUTIONS = {
  normal: (s, i) => {
    const u1 = Math.max(hashUniform(s, 2 * i), 1e-12);
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * hashUniform(s, 2 * i + 1));
  },
  delta: (s, i) => -2 * hashUniform(s, i),
  negexp: (s, i) => -Math.exp(hashUniform(s, i)),
  zero: () => 0,
};

// [bytes, float -> bits (rounded to nearest even), bits -> float]
const ENCODE = {
  float32: [4, (v) => bits32(v), f32],
  bfloat16: [2, (v) => (bits32(v) + 0x7fff + ((bits32(v) >>> 16) & 1)) >>> 16, (b) => f32(b << 16)],
  float16: [2, floatToHalf, halfToFloat],
};

/** A GlobalMemory region for a buffer of launch-capture: its values drawn on first touch. */
export function bufferRegion(buffer, stream) {
  const draw = DISTRIBUTIONS[buffer.fill];
  const encoding = ENCODE[buffer.dtype];
  if (!draw || !encoding)
    throw new Error(`buffer ${buffer.name}: unknown fill ${buffer.fill} or dtype ${buffer.dtype}`);
  const [size, encode] = encoding;
  return {
    name: buffer.name,
    address: buffer.address,
    bytes: buffer.bytes,
    fill(view, offset) {
      if (buffer.fill === 'zero') return;
      for (let k = 0; k < view.byteLength; k += size) {
        const bits = encode(draw(stream, (offset + k) / size));
        if (size === 4) view.setUint32(k, bits, true);
        else view.setUint16(k, bits, true);
      }
    },
  };
}

/** The kernel's parameter block from the launch's argument bytes (hex per parameter). */
export function parameterBytes(prog, fn, args) {
  const bytes = new Uint8Array(prog.paramBytes);
  fn.params.forEach((p, i) => {
    const hex = args[i];
    if (!hex || hex.length !== 2 * p.size)
      throw new Error(`${fn.name}: argument ${i} has ${hex?.length / 2} bytes, expected ${p.size}`);
    const at = prog.paramOffsets.get(p.name);
    for (let j = 0; j < p.size; j += 1) bytes[at + j] = Number.parseInt(hex.substr(2 * j, 2), 16);
  });
  return bytes;
}

const popcount = (m) => {
  let c = 0;
  for (let x = m >>> 0; x; x &= x - 1) c += 1;
  return c;
};

/**
 * Simulates block 0 of a captured launch until warp 0 has finished the first iteration of the loop
 * around its state loop. Returns { stateLoop, chunk } (see the file comment) or { none: reason }.
 *   captured: { buffers, allocs } of the launch's case; launch: { grid, block, sharedBytes, args }
 */
export function measureStateLoop(module, fn, captured, launch, { maxIssues = 2e7 } = {}) {
  const prog = program(module, fn);
  const { cfg } = prog;
  const loops = naturalLoops(cfg);
  const hot = hotLoops(fn, cfg, loops);
  if (hot.length === 0) return { none: 'no loop with an exp2' };
  const loopOf = new Int32Array(fn.instructions.length).fill(-1);
  hot.forEach((h, k) => {
    for (const b of h.blocks) for (let i = cfg.blocks[b].start; i < cfg.blocks[b].end; i += 1) loopOf[i] = k;
  });
  const parents = hot.map((h) => loops.find((l) => l.header === h.header)?.parent ?? null);
  const stats = hot.map((h, k) => ({
    label: h.label,
    header: cfg.blocks[h.header].start,
    parent: parents[k],
    parentHeader: parents[k] ? cfg.blocks[parents[k].header].start : -1,
    visited: false,
    done: false,
    issues: 0,
    iterations: 0,
    activeLanes: 0,
    laneIssues: new Float64Array(32), // instructions each lane took part in
    ex2Issues: 0,
    ex2Lanes: 0,
    blockIssues: new Map(),
    chunk: { started: false, done: false, issues: 0 },
  }));
  let current = -1;
  const regions = captured.buffers.map((b, i) => bufferRegion(b, i + 1));
  for (const a of captured.allocs) regions.push({ name: 'scratch', address: a.address, bytes: a.bytes });
  const memory = new GlobalMemory(regions);
  const params = parameterBytes(prog, fn, launch.args);

  const onIssue = (w, pc, mask, executed) => {
    if (w.index !== 0) return false;
    for (const s of stats) {
      const c = s.chunk;
      if (!s.parent || c.done) continue;
      if (pc === s.parentHeader) {
        if (c.started && s.visited) c.done = true;
        else {
          c.started = true; // an iteration begins (again, if the last one missed the state loop)
          c.issues = 0;
        }
      } else if (c.started && !s.parent.blocks.has(cfg.blockOf[pc])) {
        if (s.visited) c.done = true;
        else c.started = false;
      }
      if (c.started && !c.done) c.issues += 1;
    }
    const k = loopOf[pc];
    if (current >= 0 && k !== current) {
      stats[current].done = true;
      current = -1;
    }
    if (k >= 0 && !stats[k].done) {
      const s = stats[k];
      s.visited = true;
      current = k;
      s.issues += 1;
      s.activeLanes += popcount(mask);
      for (let x = mask >>> 0; x; x &= x - 1) s.laneIssues[31 - Math.clz32(x & -x)] += 1;
      if (pc === s.header) s.iterations += 1;
      const label = cfg.blocks[cfg.blockOf[pc]].label;
      s.blockIssues.set(label, (s.blockIssues.get(label) ?? 0) + 1);
      if (fn.instructions[pc].op === 'ex2') {
        s.ex2Issues += 1;
        s.ex2Lanes += popcount(executed);
      }
    }
    // Done once every visited state loop and its enclosing iteration are complete.
    if (current >= 0 || !stats.some((s) => s.visited)) return false;
    return stats.every((s) => !s.visited || (s.done && (!s.parent || s.chunk.done)));
  };

  runBlock(module, fn, { grid: launch.grid, block: launch.block, sharedBytes: launch.sharedBytes, params }, memory, {
    onIssue,
    maxIssues,
  });
  const measured = stats.filter((s) => s.visited);
  if (measured.length === 0) return { none: 'warp 0 of block 0 never reached the state loop' };
  // The loop with the most element·states is the state loop of this launch.
  const s = measured.sort((a, b) => b.ex2Lanes - a.ex2Lanes)[0];
  const h = hot[stats.indexOf(s)];
  const perIteration = (n) => n / s.iterations;
  return {
    stateLoop: {
      label: s.label,
      depth: h.depth,
      staticInstructions: h.instructions,
      staticEx2: h.ex2,
      staticPerEx2: h.staticPerEx2,
      iterations: s.iterations,
      issues: s.issues,
      issuesPerIteration: perIteration(s.issues),
      elementStates: s.ex2Lanes,
      perElementState: (s.issues * 32) / s.ex2Lanes,
      laneUtilization: s.activeLanes / (s.issues * 32),
      // One thread's path through an iteration: the shortest and longest over the lanes.
      lanePath: {
        min: perIteration(Math.min(...s.laneIssues)),
        max: perIteration(Math.max(...s.laneIssues)),
        minLane: s.laneIssues.indexOf(Math.min(...s.laneIssues)),
        maxLane: s.laneIssues.indexOf(Math.max(...s.laneIssues)),
      },
      fullChunk: s.ex2Lanes === s.ex2Issues * 32,
      // The loop's blocks the warp issued (with the instructions issued in each per iteration) and
      // those it never reached, by label (ptx-cfg.mjs names an unlabelled block after its label).
      issuedBlocks: [...s.blockIssues].map(([label, n]) => ({ label, perIteration: perIteration(n) })),
      skippedBlocks: [...h.blocks]
        .sort((a, b) => a - b)
        .map((b) => cfg.blocks[b].label)
        .filter((label) => !s.blockIssues.has(label)),
    },
    chunk:
      s.parent && s.chunk.done
        ? {
            label: cfg.blocks[s.parent.header].label,
            issues: s.chunk.issues,
            perElementState: (s.chunk.issues * 32) / s.ex2Lanes,
          }
        : null,
    otherLoops: measured.length - 1,
  };
}

/**
 * Simulates the whole of block 0 of a captured launch (for kernels whose state loop is not where
 * the work is, e.g. the step, whose one iteration per lane the compiler peels out of the loop).
 * Returns { issues (all warps), ex2Lanes } or { none: reason } when the block takes more than
 * maxIssues.
 */
export function measureBlock(module, fn, captured, launch, { maxIssues = 1e6 } = {}) {
  const prog = program(module, fn);
  const regions = captured.buffers.map((b, i) => bufferRegion(b, i + 1));
  for (const a of captured.allocs) regions.push({ name: 'scratch', address: a.address, bytes: a.bytes });
  let ex2Lanes = 0;
  const onIssue = (_w, pc, _mask, executed) => {
    if (fn.instructions[pc].op === 'ex2') ex2Lanes += popcount(executed);
    return false;
  };
  try {
    const { issues } = runBlock(
      module,
      fn,
      {
        grid: launch.grid,
        block: launch.block,
        sharedBytes: launch.sharedBytes,
        params: parameterBytes(prog, fn, launch.args),
      },
      new GlobalMemory(regions),
      { onIssue, maxIssues },
    );
    return { issues, ex2Lanes };
  } catch (e) {
    if (/more than \d+ issues/.test(e.message)) return { none: `block 0 issues more than ${maxIssues} instructions` };
    throw e;
  }
}

/**
 * Runs a captured case whole: every launch, every block, in the host's order, on one memory (its
 * buffers drawn as above, scratch zero). findKernel(mangled) -> { module, fn }. Returns
 * read(name) -> the buffer's values as a Float64Array, and the issues. For checking the
 * interpreter against a reference (small cases only: every block runs).
 */
export function runCase(captured, findKernel) {
  const regions = captured.buffers.map((b, i) => bufferRegion(b, i + 1));
  for (const a of captured.allocs) regions.push({ name: 'scratch', address: a.address, bytes: a.bytes });
  const memory = new GlobalMemory(regions);
  let issues = 0;
  for (const e of captured.events) {
    if (e.type === 'memset') {
      for (let a = e.address; a < e.address + e.bytes; a += 1) {
        const { dv, off } = memory.view(a, 1);
        dv.setUint8(off, e.value);
      }
      continue;
    }
    const { module, fn } = findKernel(e.kernel);
    const params = parameterBytes(program(module, fn), fn, e.args);
    for (let z = 0; z < e.grid[2]; z += 1)
      for (let y = 0; y < e.grid[1]; y += 1)
        for (let x = 0; x < e.grid[0]; x += 1) {
          const launch = { grid: e.grid, block: e.block, sharedBytes: e.sharedBytes, params, blockIdx: [x, y, z] };
          issues += runBlock(module, fn, launch, memory).issues;
        }
  }
  const read = (name) => {
    const b = captured.buffers.find((x) => x.name === name);
    const [size, , decode] = ENCODE[b.dtype];
    return Float64Array.from({ length: b.bytes / size }, (_, i) => {
      const { dv, off } = memory.view(b.address + size * i, size);
      return decode(size === 4 ? dv.getUint32(off, true) : dv.getUint16(off, true));
    });
  };
  return { read, issues };
}

const TYPE_BYTES = /^[subf](8|16|32|64)$/;
/** Bytes one lane moves with a load instruction (ld.global.v4.f32: 16). */
function loadBytes(inst) {
  const type = inst.mods.findLast((m) => TYPE_BYTES.test(m));
  const vector = inst.mods.find((m) => /^v[248]$/.test(m));
  return (type ? Number(TYPE_BYTES.exec(type)[1]) / 8 : 4) * (vector ? Number(vector.slice(1)) : 1);
}
/** The registers an operand names. */
function operandRegisters(o, out) {
  if (!o) return out;
  if (o.kind === 'reg') out.push(o.name);
  else if (o.kind === 'mem') operandRegisters(o.base, out);
  else if (o.kind === 'vec' || o.kind === 'pair') for (const item of o.items) operandRegisters(item, out);
  else if (o.kind === 'not') operandRegisters(o.item, out);
  return out;
}

/**
 * The bytes of global loads a warp keeps in flight (for the step, whose speed is set by them):
 * block 0 of the launch runs in the interpreter; a load is in flight from its issue until the
 * first instruction that reads one of its destination registers (where an SM, which issues each
 * warp's instructions in order, stalls the warp until the data arrives); bytes = bytes per lane x
 * the lanes that execute it. Read-only loads (ld.global.nc: A, B, C, shared by many rows and
 * served from L1/L2) are left out; plain ones (the state, x, dt, z, the slot indices) counted.
 * Returns { perWarp: the largest sum in flight at any issue, over the block's warps;
 * loads: the plain global loads issued per warp (block average) } or { none: reason }.
 */
export function measureLoadsInFlight(module, fn, captured, launch, { maxIssues = 1e6 } = {}) {
  const prog = program(module, fn);
  const regions = captured.buffers.map((b, i) => bufferRegion(b, i + 1));
  for (const a of captured.allocs) regions.push({ name: 'scratch', address: a.address, bytes: a.bytes });
  const perWarp = new Map(); // warp -> { pending: Map(register -> load id), bytes: Map(id -> bytes), sum, max }
  let nextId = 0;
  let loads = 0;
  const onIssue = (w, pc, _mask, executed) => {
    const inst = fn.instructions[pc];
    let s = perWarp.get(w.index);
    if (!s) {
      s = { pending: new Map(), bytes: new Map(), sum: 0, max: 0 };
      perWarp.set(w.index, s);
    }
    const isLoad = inst.op === 'ld' && inst.mods.includes('global');
    const isStore = inst.op === 'st' || inst.op === 'red' || inst.op === 'atom';
    // What the instruction reads: every operand but the destination (a store has none).
    const reads = [];
    for (const o of isStore ? inst.operands : inst.operands.slice(1)) operandRegisters(o, reads);
    if (inst.guard) reads.push(inst.guard.reg.startsWith('%') ? inst.guard.reg : `%${inst.guard.reg}`);
    for (const r of reads) {
      const id = s.pending.get(r);
      if (id === undefined) continue;
      s.sum -= s.bytes.get(id);
      s.bytes.delete(id);
      for (const [reg, other] of s.pending) if (other === id) s.pending.delete(reg);
    }
    if (isLoad && !inst.mods.includes('nc') && executed) {
      const id = nextId++;
      const bytes = loadBytes(inst) * popcount(executed);
      s.bytes.set(id, bytes);
      s.sum += bytes;
      s.max = Math.max(s.max, s.sum);
      loads += 1;
      for (const r of operandRegisters(inst.operands[0], [])) s.pending.set(r, id);
    }
    return false;
  };
  try {
    runBlock(
      module,
      fn,
      {
        grid: launch.grid,
        block: launch.block,
        sharedBytes: launch.sharedBytes,
        params: parameterBytes(prog, fn, launch.args),
      },
      new GlobalMemory(regions),
      { onIssue, maxIssues },
    );
  } catch (e) {
    if (/more than \d+ issues/.test(e.message)) return { none: `block 0 issues more than ${maxIssues} instructions` };
    throw e;
  }
  const maxima = [...perWarp.values()].map((s) => s.max);
  return { perWarp: Math.max(0, ...maxima), loads: loads / Math.max(1, perWarp.size) };
}
