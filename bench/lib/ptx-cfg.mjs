// The control-flow graph of a parsed PTX function (ptx-parse.mjs): basic blocks, dominators,
// natural loops, immediate post-dominators (where a divergent warp reconverges), and the static
// counts kernel-stats reports.
//
// A basic block starts at a label or after a branch / ret / exit and ends at the next of either.
// Instructions are counted as PTX statements: every instruction, predicated or not, branches
// included; labels, directives (.reg, .loc, .pragma) and inline-asm scope braces are not.
import { isBranch, isEx2, isExit } from './ptx-parse.mjs';

/**
 * Builds the CFG of `fn`. Returns { blocks: [{ index, label, start, end (exclusive), succs,
 * preds }], blockOf: Int32Array(instruction -> block) }. Block 0 is the entry.
 */
export function buildCfg(fn) {
  const n = fn.instructions.length;
  const starts = new Set([0]);
  for (const at of fn.labels.values()) if (at < n) starts.add(at);
  fn.instructions.forEach((ins, i) => {
    if ((isBranch(ins) || isExit(ins)) && i + 1 < n) starts.add(i + 1);
  });
  const sorted = [...starts].filter((s) => s < n).sort((a, b) => a - b);
  const labelAt = new Map();
  for (const [label, at] of fn.labels) if (!labelAt.has(at)) labelAt.set(at, label);
  const blocks = sorted.map((start, index) => ({
    index,
    start,
    end: index + 1 < sorted.length ? sorted[index + 1] : n,
    label: labelAt.get(start) ?? null,
    succs: [],
    preds: [],
  }));
  const blockOf = new Int32Array(n);
  for (const b of blocks) for (let i = b.start; i < b.end; i += 1) blockOf[i] = b.index;
  // Unlabelled blocks are named after the labelled block they follow: "$L__BB0_3+1".
  let lastLabel = '(entry)';
  let sinceLabel = 0;
  for (const b of blocks) {
    if (b.label) {
      lastLabel = b.label;
      sinceLabel = 0;
    } else {
      b.label = sinceLabel === 0 && b.index === 0 ? '(entry)' : `${lastLabel}+${sinceLabel}`;
    }
    sinceLabel += 1;
  }
  const target = (ins) => {
    const op = ins.operands[ins.operands.length - 1];
    const at = op?.kind === 'sym' ? fn.labels.get(op.name) : undefined;
    if (at === undefined) throw new Error(`${fn.name}: branch to an unknown label in '${ins.text}'`);
    return blockOf[at];
  };
  for (const b of blocks) {
    const last = fn.instructions[b.end - 1];
    const next = b.index + 1 < blocks.length ? b.index + 1 : null;
    const add = (s) => {
      if (s !== null && !b.succs.includes(s)) b.succs.push(s);
    };
    if (isBranch(last)) {
      if (last.op === 'brx') throw new Error(`${fn.name}: indirect branch (brx.idx) is not supported`);
      if (last.guard) add(next);
      add(target(last));
    } else if (!isExit(last) || last.guard) {
      add(next);
    }
  }
  for (const b of blocks) for (const s of b.succs) blocks[s].preds.push(b.index);
  return { blocks, blockOf };
}

// Immediate dominators over `succ` from `root` (Cooper, Harvey, Kennedy). Unreachable nodes: -1.
function immediateDominators(count, root, succ, pred) {
  const order = [];
  const seen = new Uint8Array(count);
  const stack = [[root, 0]];
  seen[root] = 1;
  while (stack.length) {
    const top = stack[stack.length - 1];
    const s = succ(top[0]);
    if (top[1] < s.length) {
      const next = s[top[1]];
      top[1] += 1;
      if (!seen[next]) {
        seen[next] = 1;
        stack.push([next, 0]);
      }
    } else {
      order.push(top[0]);
      stack.pop();
    }
  }
  const rpo = order.reverse();
  const rank = new Int32Array(count).fill(-1);
  rpo.forEach((b, i) => {
    rank[b] = i;
  });
  const idom = new Int32Array(count).fill(-1);
  idom[root] = root;
  const intersect = (a, b) => {
    while (a !== b) {
      while (rank[a] > rank[b]) a = idom[a];
      while (rank[b] > rank[a]) b = idom[b];
    }
    return a;
  };
  for (let changed = true; changed; ) {
    changed = false;
    for (const b of rpo) {
      if (b === root) continue;
      let d = -1;
      for (const p of pred(b)) if (idom[p] !== -1) d = d === -1 ? p : intersect(p, d);
      if (d !== idom[b]) {
        idom[b] = d;
        changed = true;
      }
    }
  }
  return idom;
}

/** Whether block a dominates block b (idom from dominators()). */
export function dominates(idom, a, b) {
  for (let x = b; ; x = idom[x]) {
    if (x === a) return true;
    if (x === idom[x] || x === -1) return false;
  }
}

export function dominators(cfg) {
  const { blocks } = cfg;
  return immediateDominators(
    blocks.length,
    0,
    (b) => blocks[b].succs,
    (b) => blocks[b].preds,
  );
}

/**
 * Immediate post-dominators: ipdom[b] is the block where the paths from b meet again, or -1 when
 * they only meet at the function's exit. A warp that diverges at b's branch reconverges there.
 */
export function postDominators(cfg) {
  const { blocks } = cfg;
  const exit = blocks.length; // a virtual node after every ret / exit
  const succ = (b) => (b === exit ? [] : blocks[b].succs.length ? blocks[b].succs : [exit]);
  const preds = Array.from({ length: blocks.length + 1 }, () => []);
  for (let b = 0; b < blocks.length; b += 1) for (const s of succ(b)) preds[s].push(b);
  const ipdom = immediateDominators(
    blocks.length + 1,
    exit,
    (b) => preds[b],
    (b) => succ(b),
  );
  return Int32Array.from(ipdom.slice(0, blocks.length), (d) => (d === exit ? -1 : d));
}

/**
 * Natural loops: one per header, the union of the bodies of its back edges (an edge u -> h where
 * h dominates u). Returns [{ header, latches, blocks: Set, depth, parent }], innermost last
 * among nested loops. depth 1 is an outermost loop.
 */
export function naturalLoops(cfg, idom = dominators(cfg)) {
  const { blocks } = cfg;
  const byHeader = new Map();
  for (const b of blocks) {
    for (const s of b.succs) {
      if (!dominates(idom, s, b.index)) continue;
      const loop = byHeader.get(s) ?? { header: s, latches: [], blocks: new Set([s]) };
      loop.latches.push(b.index);
      const stack = [b.index];
      while (stack.length) {
        const x = stack.pop();
        if (loop.blocks.has(x)) continue;
        loop.blocks.add(x);
        for (const p of blocks[x].preds) stack.push(p);
      }
      byHeader.set(s, loop);
    }
  }
  const loops = [...byHeader.values()];
  for (const loop of loops) {
    const parents = loops.filter((o) => o !== loop && o.blocks.has(loop.header) && o.blocks.size > loop.blocks.size);
    loop.parent = parents.sort((a, b) => a.blocks.size - b.blocks.size)[0] ?? null;
  }
  for (const loop of loops) {
    let depth = 1;
    for (let p = loop.parent; p; p = p.parent) depth += 1;
    loop.depth = depth;
  }
  return loops.sort((a, b) => a.depth - b.depth || a.header - b.header);
}

/** Instructions of a set of blocks, in program order. */
export function instructionsOf(fn, cfg, blockSet) {
  const out = [];
  for (const b of [...blockSet].sort((x, y) => x - y)) {
    const { start, end } = cfg.blocks[b];
    for (let i = start; i < end; i += 1) out.push(fn.instructions[i]);
  }
  return out;
}

/**
 * The hot loops of a function: loops that contain an exp2 (ex2.approx) and contain no inner loop
 * that does (the innermost state loops). Each: { header, label, blocks, depth, instructions, ex2,
 * staticPerEx2 } where staticPerEx2 = instructions / ex2 over all the loop's blocks (every branch
 * side counted once).
 */
export function hotLoops(fn, cfg = buildCfg(fn), loops = naturalLoops(cfg)) {
  const withEx2 = loops
    .map((loop) => ({ loop, ins: instructionsOf(fn, cfg, loop.blocks) }))
    .filter(({ ins }) => ins.some(isEx2));
  return withEx2
    .filter(({ loop }) => !withEx2.some((o) => o.loop !== loop && loop.blocks.has(o.loop.header)))
    .map(({ loop, ins }) => {
      const ex2 = ins.filter(isEx2).length;
      return {
        header: loop.header,
        label: cfg.blocks[loop.header].label,
        blocks: loop.blocks,
        depth: loop.depth,
        instructions: ins.length,
        ex2,
        staticPerEx2: ins.length / ex2,
      };
    });
}
