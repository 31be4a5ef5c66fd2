// Rewrites a CUDA source file into C++ that g++ compiles against the fake headers of include/.
//
// Only what C++ cannot express is rewritten, each in place and on the same lines (a `#line`
// directive names the original file, so compiler messages and UBSan reports point at the .cu file):
//  1. `kernel<<<grid, block[, shared[, stream]]>>>(args)` becomes
//     `::emu::launch(kernel, ::emu::LaunchConfig{...}, args)`, with the kernel's
//     __launch_bounds__ maximum (read from its definition in the same file) so that the emulator
//     rejects a launch the runtime would reject.
//  2. `extern __shared__ T name[];` (dynamic shared memory) becomes a pointer to the running
//     block's buffer: `T *const name = static_cast<T *>(::emu::dynamicSharedMemory());`.
//     `static __shared__` becomes `__shared__`, which the fake header defines as `static`.
// Anything that looks like one of these but is not recognised is an error: a silently skipped
// launch would be a test that cannot fail.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

/** The source with comments and string/char literals replaced by spaces (newlines kept). */
function mask(source) {
  let out = '';
  let i = 0;
  const n = source.length;
  while (i < n) {
    const c = source[i];
    const next = source[i + 1];
    if (c === '/' && next === '/') {
      while (i < n && source[i] !== '\n') {
        out += ' ';
        i++;
      }
    } else if (c === '/' && next === '*') {
      const end = source.indexOf('*/', i + 2);
      const stop = end < 0 ? n : end + 2;
      for (; i < stop; i++) out += source[i] === '\n' ? '\n' : ' ';
    } else if (c === '"' || c === "'") {
      // Raw strings do not occur in kernel sources; plain literals with escapes do.
      out += c;
      i++;
      while (i < n && source[i] !== c) {
        if (source[i] === '\\') {
          out += ' ';
          i++;
        }
        out += source[i] === '\n' ? '\n' : ' ';
        i++;
      }
      out += c;
      i++;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

const OPEN = { '(': ')', '[': ']', '{': '}' };

/** Index just past the bracket that closes the one at `start` (in masked text). */
function closeOf(text, start, file) {
  const stack = [OPEN[text[start]]];
  for (let i = start + 1; i < text.length; i++) {
    const c = text[i];
    if (OPEN[c]) stack.push(OPEN[c]);
    else if (c === ')' || c === ']' || c === '}') {
      if (stack.pop() !== c) throw new Error(`${file}: unbalanced '${c}' at offset ${i}`);
      if (stack.length === 0) return i + 1;
    }
  }
  throw new Error(`${file}: unclosed '${text[start]}' at offset ${start}`);
}

/** Splits at the commas outside brackets. */
function splitTopLevel(text) {
  const parts = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (OPEN[c]) depth++;
    else if (c === ')' || c === ']' || c === '}') depth--;
    else if (c === ',' && depth === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(text.slice(start));
  return parts.map((p) => p.trim());
}

const lineOf = (text, index) => text.slice(0, index).split('\n').length;
const newlines = (text) => '\n'.repeat((text.match(/\n/g) ?? []).length);

/**
 * The kernels defined in the file: name -> maximum threads of __launch_bounds__ (an expression) or
 * '0' when there is none.
 */
function kernelBounds(masked, file) {
  const bounds = new Map();
  const globals = [...masked.matchAll(/\b__global__\b/g)].length;
  const definition = /\b__global__\s+(?:static\s+)?void\s+(?:__launch_bounds__\s*(?=\())?/g;
  let found = 0;
  for (const m of masked.matchAll(definition)) {
    let at = m.index + m[0].length;
    let maxThreads = '0';
    if (m[0].includes('__launch_bounds__')) {
      const end = closeOf(masked, at, file);
      maxThreads = splitTopLevel(masked.slice(at + 1, end - 1))[0];
      at = end;
    }
    const name = /^\s*([A-Za-z_]\w*)\s*\(/.exec(masked.slice(at));
    if (!name) throw new Error(`${file}:${lineOf(masked, m.index)}: cannot read the kernel's name`);
    bounds.set(name[1], maxThreads);
    found++;
  }
  if (found !== globals) {
    throw new Error(`${file}: ${globals} __global__ functions, ${found} recognised (see preprocess.mjs)`);
  }
  return bounds;
}

/** The C++ text of `source` (read from `file`, named `displayPath` in diagnostics). */
export function rewriteCuda(source, file, displayPath = file) {
  const masked = mask(source);
  const bounds = kernelBounds(masked, file);
  const edits = []; // { start, end, text }, non-overlapping

  // 1. Launches.
  for (const m of masked.matchAll(/<<</g)) {
    const open = m.index;
    const where = `${file}:${lineOf(masked, open)}`;
    // The kernel expression, read backwards from <<<: an optional template argument list (angle
    // brackets matched, parentheses skipped whole), then a possibly qualified name.
    let start = open;
    while (start > 0 && /\s/.test(masked[start - 1])) start--;
    if (masked[start - 1] === '>') {
      let depth = 0;
      let i = start - 1;
      for (; i >= 0; i--) {
        const c = masked[i];
        if (c === '>') depth++;
        else if (c === '<' && --depth === 0) break;
        else if (c === ')') {
          // skip a parenthesised group, e.g. decltype(tag)
          let parens = 0;
          for (; i >= 0; i--) {
            if (masked[i] === ')') parens++;
            else if (masked[i] === '(' && --parens === 0) break;
          }
        } else if (';{}'.includes(c)) i = 0;
      }
      if (i <= 0) throw new Error(`${where}: unbalanced template arguments before <<<`);
      start = i;
      while (start > 0 && /\s/.test(masked[start - 1])) start--;
    }
    while (start > 0 && /[\w:]/.test(masked[start - 1])) start--;
    const kernelStart = start;
    const kernel = masked.slice(start, open).trim();
    if (
      !/^(?:::)?[A-Za-z_]\w*(?:::[A-Za-z_]\w*)*(?:\s*<[\s\S]*>)?$/.test(kernel) ||
      /^(?:return|else|do)$/.test(kernel)
    ) {
      throw new Error(`${where}: unrecognised kernel expression before <<<: '${kernel}'`);
    }
    // The configuration, up to the >>> outside brackets.
    let depth = 0;
    let close = -1;
    for (let i = open + 3; i < masked.length; i++) {
      const c = masked[i];
      if (OPEN[c]) depth++;
      else if (c === ')' || c === ']' || c === '}') depth--;
      else if (depth === 0 && masked.startsWith('>>>', i)) {
        close = i;
        break;
      }
      if (depth < 0 || c === ';') break;
    }
    if (close < 0) throw new Error(`${where}: no >>> closing the launch configuration`);
    const config = splitTopLevel(source.slice(open + 3, close));
    if (config.length < 2 || config.length > 4 || config.some((p) => p === '')) {
      throw new Error(
        `${where}: a launch configuration has 2 to 4 parts, got ${config.length}: '${config.join(' | ')}'`,
      );
    }
    const [grid, block, shared = '0', stream = 'nullptr'] = config;
    // The arguments.
    let argsOpen = close + 3;
    while (/\s/.test(masked[argsOpen])) argsOpen++;
    if (masked[argsOpen] !== '(') throw new Error(`${where}: expected '(' after >>>`);
    const argsEnd = closeOf(masked, argsOpen, file);
    const args = source.slice(argsOpen + 1, argsEnd - 1).trim();
    // The kernel's __launch_bounds__.
    const baseName = /([A-Za-z_]\w*)\s*(?:<[\s\S]*>)?$/.exec(kernel)[1];
    if (!bounds.has(baseName)) throw new Error(`${where}: kernel '${baseName}' is not defined in this file`);
    const maxThreads = bounds.get(baseName);
    const name = JSON.stringify(kernel.replace(/\s+/g, ' '));
    const kernelText = source.slice(kernelStart, open).trim();
    const text =
      `::emu::launch(${kernelText}, ::emu::LaunchConfig{dim3(${grid}), dim3(${block}), size_t(${shared}), ` +
      `(cudaStream_t)(${stream}), int(${maxThreads}), ${name}, __FILE__, __LINE__}${args ? `, ${args}` : ''})`;
    edits.push({
      start: kernelStart,
      end: argsEnd,
      text: text.replace(/\n/g, ' ') + newlines(source.slice(kernelStart, argsEnd)),
    });
  }

  // 2. Shared memory declarations.
  for (const m of masked.matchAll(/\bextern\s+__shared__\s+([^;]*?)\s*\b([A-Za-z_]\w*)\s*\[\s*\]\s*;/g)) {
    const type = m[1].trim();
    if (!/^(?:const\s+)?[A-Za-z_][\w:]*$/.test(type)) {
      throw new Error(`${file}:${lineOf(masked, m.index)}: unrecognised dynamic shared memory type '${type}'`);
    }
    edits.push({
      start: m.index,
      end: m.index + m[0].length,
      text: `${type} *const ${m[2]} = static_cast<${type} *>(::emu::dynamicSharedMemory());`,
    });
  }
  for (const m of masked.matchAll(/\bstatic\s+__shared__\b/g)) {
    edits.push({ start: m.index, end: m.index + m[0].length, text: '__shared__' });
  }
  for (const m of masked.matchAll(/\bextern\s+__shared__\b/g)) {
    if (!edits.some((e) => e.start === m.index)) {
      throw new Error(`${file}:${lineOf(masked, m.index)}: unrecognised extern __shared__ declaration`);
    }
  }

  edits.sort((a, b) => a.start - b.start);
  let out = `#line 1 "${displayPath}"\n`;
  let at = 0;
  for (const e of edits) {
    if (e.start < at) throw new Error(`${file}: overlapping rewrites at offset ${e.start}`);
    out += source.slice(at, e.start) + e.text;
    at = e.end;
  }
  out += source.slice(at);
  if (mask(out).includes('<<<')) throw new Error(`${file}: a launch was left unrewritten`);
  return out;
}

// node test/emulation/preprocess.mjs FILE.cu: prints the rewritten file (for inspection).
if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const file = process.argv[2];
  process.stdout.write(rewriteCuda(readFileSync(file, 'utf8'), file));
}
