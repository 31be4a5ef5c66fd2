// A parser for the PTX that nvcc writes: the module's functions (kernels and device functions),
// their parameters and launch directives, and each body as a flat list of instructions with the
// labels that point into it. Enough of the grammar for counting and for ptx-sim.mjs; directives
// inside bodies (.reg, .loc, .pragma) and inline-asm scope braces are dropped, declarations of
// function-scope .shared / .local arrays are kept.

const SIZES = { b8: 1, u8: 1, s8: 1, b16: 2, u16: 2, s16: 2, f16: 2, bf16: 2, b32: 4, u32: 4, s32: 4, f32: 4 };
for (const t of ['b64', 'u64', 's64', 'f64']) SIZES[t] = 8;
SIZES.pred = 1;

/** Bytes of a PTX fundamental type ('u32' -> 4); undefined for an unknown name. */
export const typeBytes = (type) => SIZES[type];

/** Removes // and /* *\/ comments, keeping string literals (.file paths) intact. */
const stripComments = (text) =>
  text.replace(/"[^"\n]*"|\/\/[^\n]*|\/\*[\s\S]*?\*\//g, (m) => (m[0] === '"' ? m : m.replace(/[^\n]/g, '')));

/** Splits at top-level commas (not inside {} or []). */
function splitOperands(text) {
  const parts = [];
  let depth = 0;
  let cur = '';
  for (const c of text) {
    if (c === '{' || c === '[' || c === '(') depth += 1;
    if (c === '}' || c === ']' || c === ')') depth -= 1;
    if (c === ',' && depth === 0) {
      parts.push(cur.trim());
      cur = '';
    } else cur += c;
  }
  if (cur.trim()) parts.push(cur.trim());
  return parts;
}

/**
 * One operand: { kind: 'reg', name } | { kind: 'imm', text } | { kind: 'sym', name } |
 * { kind: 'mem', base: operand, offset } | { kind: 'vec', items: [operand] } |
 * { kind: 'pair', items: [reg, reg] } (the `%r|%p` destination of shfl and setp).
 */
export function parseOperand(text) {
  const t = text.trim();
  if (t.startsWith('[')) {
    const inner = t.slice(1, -1).trim();
    const m = /^(.*?)(?:\s*\+\s*(-?(?:0x[0-9a-fA-F]+|\d+)))?$/.exec(inner);
    const baseText = m[1].trim();
    return { kind: 'mem', base: baseText ? parseOperand(baseText) : null, offset: m[2] ? Number(m[2]) : 0 };
  }
  if (t.startsWith('{')) return { kind: 'vec', items: splitOperands(t.slice(1, -1)).map(parseOperand) };
  if (t.includes('|')) return { kind: 'pair', items: t.split('|').map(parseOperand) };
  if (t.startsWith('!')) return { kind: 'not', item: parseOperand(t.slice(1)) };
  if (t.startsWith('%')) return { kind: 'reg', name: t };
  if (/^[-+]?(0[fFdD][0-9a-fA-F]+|0[xX][0-9a-fA-F]+U?|\d+U?|\d*\.\d+(e[-+]?\d+)?)$/.test(t))
    return { kind: 'imm', text: t };
  if (t === '_') return { kind: 'sink' };
  return { kind: 'sym', name: t };
}

/** Parses one instruction statement (without the ';'). */
export function parseInstruction(text, line) {
  let rest = text.trim();
  let guard = null;
  const g = /^@(!?)(%?[\w$]+)\s+/.exec(rest);
  if (g) {
    guard = { reg: g[2], negated: g[1] === '!' };
    rest = rest.slice(g[0].length);
  }
  const m = /^([a-zA-Z_][\w.:]*)\s*(.*)$/s.exec(rest);
  if (!m) throw new Error(`PTX line ${line}: cannot parse '${text.trim()}'`);
  const opcode = m[1];
  const mods = opcode.split('.');
  const operandText = m[2].trim();
  const operands = operandText ? splitOperands(operandText).map(parseOperand) : [];
  return { opcode, op: mods[0], mods: mods.slice(1), operands, guard, text: text.trim(), line };
}

function parseParams(header) {
  const open = header.indexOf('(');
  if (open < 0) return [];
  const close = header.lastIndexOf(')');
  const inner = header.slice(open + 1, close);
  const params = [];
  for (const part of splitOperands(inner)) {
    const m = /\.param\s+(?:\.align\s+(\d+)\s+)?\.(\w+)\s+(?:\.ptr\s+(?:\.\w+\s+)*)?([\w$]+)(?:\[(\d+)\])?/.exec(part);
    if (!m) continue;
    const [, align, type, name, count] = m;
    const size = typeBytes(type) * (count ? Number(count) : 1);
    params.push({ name, type, size, align: align ? Number(align) : typeBytes(type) });
  }
  return params;
}

function parseDirectives(text) {
  const d = {};
  for (const name of ['maxntid', 'reqntid', 'minnctapersm', 'maxnreg', 'maxclusterrank']) {
    const m = new RegExp(`\\.${name}\\s+([\\d\\s,]+)`).exec(text);
    if (m)
      d[name] = m[1]
        .split(',')
        .map((x) => Number(x.trim()))
        .filter(Number.isFinite);
  }
  return d;
}

// `.shared .align 4 .b8 name[1024];` (module or function scope) and `.local ...` depots.
function parseArrayDecl(stmt) {
  const m = /^\.(shared|local|global|const)\s+(?:\.align\s+(\d+)\s+)?\.(\w+)\s+([\w$]+)(?:\[(\d*)\])?/.exec(stmt);
  if (!m) return null;
  const [, space, align, type, name, count] = m;
  const elements = count === undefined ? 1 : count === '' ? 0 : Number(count);
  return { space, name, align: align ? Number(align) : typeBytes(type), bytes: typeBytes(type) * elements };
}

/** Splits a function body into statements: labels, instructions, declarations. */
function parseBody(body, firstLine) {
  const instructions = [];
  const labels = new Map();
  const arrays = [];
  const registerTypes = new Map(); // '%rd' (a register or the prefix of a range) -> 'b64'
  let pending = '';
  let pendingLine = firstLine;
  const flush = (stmt, line) => {
    const s = stmt.trim();
    if (!s) return;
    if (s.startsWith('.reg')) {
      const m = /^\.reg\s+\.(\w+)\s+(.*)$/.exec(s);
      for (const r of m ? m[2].split(',') : []) registerTypes.set(r.trim().replace(/<\d+>$/, ''), m[1]);
      return;
    }
    if (s.startsWith('.')) {
      const decl = parseArrayDecl(s);
      if (decl) arrays.push(decl);
      return; // .loc, .pragma, .param (call arguments are not supported by the simulator)
    }
    const ins = parseInstruction(s, line);
    // Registers may be named without '%' (inline asm: `.reg .f32 r0;`): such operands are
    // registers, not symbols.
    const registers = (op) => {
      if (op.kind === 'sym' && registerTypes.has(op.name)) return { kind: 'reg', name: op.name };
      if (op.kind === 'vec' || op.kind === 'pair') return { ...op, items: op.items.map(registers) };
      if (op.kind === 'mem' && op.base) return { ...op, base: registers(op.base) };
      if (op.kind === 'not') return { ...op, item: registers(op.item) };
      return op;
    };
    ins.operands = ins.operands.map(registers);
    instructions.push(ins);
  };
  body.split('\n').forEach((text, k) => {
    const line = firstLine + k;
    let s = text.trim();
    if (!pending && /^\.(loc|file)\b/.test(s)) return; // line directives, without ';' (-lineinfo)
    while (s) {
      if (!pending && (s[0] === '{' || s[0] === '}')) {
        s = s.slice(1).trim(); // an inline-asm scope: its statements belong to the function
        continue;
      }
      const label = pending ? null : /^([$\w]+):(?!:)/.exec(s);
      if (label) {
        labels.set(label[1], instructions.length);
        s = s.slice(label[0].length).trim();
        continue;
      }
      if (!pending) pendingLine = line;
      const end = s.indexOf(';');
      if (end < 0) {
        pending += `${s} `;
        break;
      }
      flush(pending + s.slice(0, end), pendingLine);
      pending = '';
      s = s.slice(end + 1).trim();
    }
  });
  flush(pending, pendingLine);
  return { instructions, labels, arrays, registerTypes };
}

/**
 * @typedef {{ reg: string, negated: boolean }} Guard
 * @typedef {{ opcode: string, op: string, mods: string[], operands: any[], guard: Guard | null, text: string, line: number }} Instruction
 * @typedef {{ name: string, type: string, size: number, align: number }} Param
 * @typedef {{ space: string, name: string, align: number, bytes: number }} ArrayDecl
 * @typedef {{ name: string, kind: string, params: Param[], directives: Record<string, number[]>,
 *   instructions: Instruction[], labels: Map<string, number>, arrays: ArrayDecl[],
 *   registerTypes: Map<string, string> }} PtxFunction
 * @typedef {{ version: string | null, target: string | null, addressSize: number, arrays: ArrayDecl[],
 *   functions: PtxFunction[] }} PtxModule
 */

/**
 * Parses a PTX module. Returns { version, target, addressSize, arrays (module-scope .shared /
 * .global declarations), functions: [{ name, kind: 'entry' | 'func', params, directives,
 * instructions, labels: Map(label -> instruction index), arrays, registerTypes }] }.
 */
export function parsePtx(text) {
  const src = stripComments(text);
  /** @type {PtxModule} */
  const module = {
    version: /\.version\s+([\d.]+)/.exec(src)?.[1] ?? null,
    target: /\.target\s+(\w+)/.exec(src)?.[1] ?? null,
    addressSize: Number(/\.address_size\s+(\d+)/.exec(src)?.[1] ?? 64),
    arrays: [],
    functions: [],
  };
  let i = 0;
  let line = 1;
  const advance = (to) => {
    for (let k = i; k < to; k += 1) if (src[k] === '\n') line += 1;
    i = to;
  };
  const header = /(?:^|\n)[ \t]*((?:\.(?:visible|weak|extern)\s+)*)\.(entry|func)\b/g;
  for (;;) {
    header.lastIndex = i;
    const m = header.exec(src);
    const declEnd = m ? m.index : src.length;
    // module-scope declarations before the next function
    for (const d of src
      .slice(i, declEnd)
      .matchAll(/(?:\.(?:visible|extern|weak)\s+)*(\.(?:shared|global|const)\s[^;]*);/g)) {
      const decl = parseArrayDecl(d[1]);
      if (decl) module.arrays.push(decl);
    }
    if (!m) break;
    advance(m.index + m[0].length);
    // The header runs to the body's '{' or to ';' (a declaration without a body).
    let depth = 0;
    let k = i;
    for (; k < src.length; k += 1) {
      const c = src[k];
      if (c === '(') depth += 1;
      else if (c === ')') depth -= 1;
      else if (depth === 0 && (c === '{' || c === ';')) break;
    }
    const headerText = src.slice(i, k);
    if (src[k] === ';') {
      advance(k + 1);
      continue;
    }
    const nameMatch = /^\s*(?:\([^)]*\)\s*)?([\w$]+)/.exec(headerText);
    const bodyStart = k + 1;
    let braces = 1;
    let e = bodyStart;
    for (; e < src.length && braces > 0; e += 1) {
      if (src[e] === '{') braces += 1;
      else if (src[e] === '}') braces -= 1;
    }
    const headerLines = headerText.split('\n').length - 1;
    const body = parseBody(src.slice(bodyStart, e - 1), line + headerLines);
    const kind = m[2];
    const paramText = kind === 'func' ? headerText.replace(/^\s*\([^)]*\)/, '') : headerText;
    module.functions.push({
      name: nameMatch?.[1] ?? '?',
      kind,
      params: parseParams(paramText),
      directives: parseDirectives(headerText),
      ...body,
    });
    advance(e);
  }
  return module;
}

/** Whether an instruction is an exp2 on the special-function unit (ex2.approx, any modifiers). */
export const isEx2 = (ins) => ins.op === 'ex2';

/** Whether an instruction ends a basic block. */
export const isBranch = (ins) => ins.op === 'bra' || ins.op === 'brx';
export const isExit = (ins) => ins.op === 'ret' || ins.op === 'exit' || ins.op === 'trap';

/** The declared type of a register ('%rd12' -> 'b64'), from the function's .reg declarations. */
export function registerType(fn, name) {
  return fn.registerTypes.get(name) ?? fn.registerTypes.get(name.replace(/\d+$/, ''));
}
