// Compiling the CUDA kernel sources for kernel-stats: every *.cu under csrc/ (but microbench.cu,
// the benchmark's exp2 probe) with nvcc and CMakeLists.txt's CUDA flags, once per architecture:
// the PTX, ptxas's resource usage (-Xptxas -v) and the host object, which launch-capture links to
// capture the launches. Everything goes to build/kernel-stats/ (git-ignored), named by a hash of
// nvcc's version, the flags, the source and every header under csrc/, so a repeated run compiles
// nothing and a change recompiles what it can affect. Writes go to a temporary name first.
import { createHash } from 'node:crypto';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = join(here, '..', '..');
const captureDir = join(here, '..', 'kernel-stats');

// CMakeLists.txt's CUDA compile options that reach device code (its -lineinfo only adds line
// tables, -Xcompiler options only touch host code), C++17, and csrc/ on the include path.
export const NVCC_FLAGS = ['-O3', '--expt-relaxed-constexpr', '-std=c++17'];

const sha = (...parts) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  return h.digest('hex').slice(0, 16);
};

/** nvcc and its version, or { missing: why }. */
export function findNvcc() {
  const nvcc = process.env.NVCC || 'nvcc';
  try {
    const text = execFileSync(nvcc, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return { nvcc, version: /release ([\d.]+), V([\d.]+)/.exec(text)?.[2] ?? text.trim().split('\n').pop() };
  } catch {
    return { missing: `no CUDA compiler: '${nvcc} --version' failed (install the CUDA toolkit or set NVCC)` };
  }
}

function filesUnder(dir, test) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true })
    .map(String)
    .filter(test)
    .sort()
    .map((f) => join(dir, f));
}

/** The kernel sources: every *.cu under csrc/ except microbench.cu. Paths relative to the repo. */
export function cudaSources(root = repoRoot) {
  return filesUnder(join(root, 'csrc'), (f) => f.endsWith('.cu') && basename(f) !== 'microbench.cu').map((f) =>
    relative(root, f),
  );
}

/** Every header under csrc/ (a change to any of them recompiles every source). */
function headers(root) {
  return filesUnder(join(root, 'csrc'), (f) => /\.(h|cuh|hpp)$/.test(f));
}

const execFileAsync = promisify(execFile);
/** Runs a command; resolves { stdout, stderr }, rejects with its output in the message. */
async function run(cmd, args, options = {}) {
  try {
    return await execFileAsync(cmd, args, { maxBuffer: 1 << 28, ...options });
  } catch (e) {
    throw new Error(`${cmd} ${args.join(' ')}\nfailed (${e.code ?? e.signal}):\n${e.stderr || e.stdout || e.message}`);
  }
}

/**
 * Compiles `sources` for each of `archs` ('sm_90', ...), `jobs` at a time, reusing what the cache
 * has. Returns [{ source, arch, ptx (path), ptxasLog (text), object (path), hash, compiled }].
 */
export async function compileSources({ root = repoRoot, sources, archs, nvcc, jobs = 1, log = () => {} }) {
  const out = join(root, 'build', 'kernel-stats');
  const headerText = headers(root).map((h) => `${relative(root, h)}\n${readFileSync(h, 'utf8')}`);
  const units = [];
  for (const arch of archs) {
    for (const source of sources) {
      const hash = sha(
        nvcc.version,
        NVCC_FLAGS.join(' '),
        arch,
        source,
        readFileSync(join(root, source)),
        ...headerText,
      );
      const dir = join(out, arch, `${basename(source, '.cu')}-${hash}`);
      units.push({ source, arch, hash, dir, ptx: join(dir, 'kernels.ptx'), object: join(dir, 'host.o') });
    }
  }
  const todo = units.filter((u) => !existsSync(join(u.dir, 'ptxas.txt')));
  const worker = async () => {
    for (let u = todo.shift(); u; u = todo.shift()) {
      log(`nvcc ${u.source} (${u.arch})`);
      const tmp = `${u.dir}.tmp-${process.pid}`;
      rmSync(tmp, { recursive: true, force: true });
      mkdirSync(join(tmp, 'keep'), { recursive: true });
      const { stderr } = await run(nvcc.nvcc, [
        '-c',
        ...NVCC_FLAGS,
        `-I${join(root, 'csrc')}`,
        `-arch=${u.arch}`,
        '-Xptxas',
        '-v',
        '--keep',
        '--keep-dir',
        join(tmp, 'keep'),
        '-o',
        join(tmp, 'host.o'),
        join(root, u.source),
      ]);
      renameSync(join(tmp, 'keep', `${basename(u.source, '.cu')}.ptx`), join(tmp, 'kernels.ptx'));
      rmSync(join(tmp, 'keep'), { recursive: true, force: true });
      writeFileSync(join(tmp, 'ptxas.txt'), stderr);
      rmSync(u.dir, { recursive: true, force: true });
      renameSync(tmp, u.dir);
      u.compiled = true;
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, jobs) }, worker));
  // Older builds of the same sources are stale.
  for (const arch of archs) {
    const dir = join(out, arch);
    const current = new Set(units.filter((u) => u.arch === arch).map((u) => basename(u.dir)));
    for (const f of existsSync(dir) ? readdirSync(dir) : []) {
      if (!current.has(f) && !f.includes('.tmp-')) rmSync(join(dir, f), { recursive: true, force: true });
    }
  }
  return units.map((u) => ({
    ...u,
    compiled: Boolean(u.compiled),
    ptxasLog: readFileSync(join(u.dir, 'ptxas.txt'), 'utf8'),
  }));
}

/**
 * ptxas -v's report per kernel (mangled name): { registers, barriers, stack, spillStores,
 * spillLoads, sharedStatic, constant0 } (bytes).
 */
export function parsePtxasLog(text) {
  const kernels = new Map();
  let current = null;
  for (const line of text.split('\n')) {
    const entry = /(?:Compiling entry function|Function properties for) '?([\w$]+)'?/.exec(line);
    if (entry) {
      current = kernels.get(entry[1]) ?? {
        registers: null,
        barriers: 0,
        stack: 0,
        spillStores: 0,
        spillLoads: 0,
        sharedStatic: 0,
        constant0: 0,
      };
      kernels.set(entry[1], current);
      continue;
    }
    if (!current) continue;
    const frame = /(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads/.exec(line);
    if (frame) [current.stack, current.spillStores, current.spillLoads] = frame.slice(1).map(Number);
    const used = /Used (\d+) registers/.exec(line);
    if (used) {
      current.registers = Number(used[1]);
      current.barriers = Number(/used (\d+) barriers/.exec(line)?.[1] ?? 0);
      current.sharedStatic = Number(/(\d+) bytes smem/.exec(line)?.[1] ?? 0);
      current.constant0 = Number(/(\d+) bytes cmem\[0\]/.exec(line)?.[1] ?? 0);
    }
  }
  return kernels;
}

/** Demangles C++ names with c++filt (one process for all); a name it cannot read stays as is. */
export function demangle(names) {
  try {
    const out = execFileSync('c++filt', [], { input: names.join('\n'), encoding: 'utf8' }).split('\n');
    return new Map(names.map((n, i) => [n, out[i] || n]));
  } catch {
    return new Map(names.map((n) => [n, n]));
  }
}

/**
 * The dtype enumerators of csrc (enum class DType { Float32 = 0, ... }) as short names by value:
 * { 0: 'f32', 1: 'f16', 2: 'bf16' }.
 */
export function dtypeNames(root = repoRoot) {
  for (const h of headers(root)) {
    const m = /enum\s+class\s+DType\b[^{]*\{([^}]*)\}/.exec(readFileSync(h, 'utf8'));
    if (!m) continue;
    const names = {};
    let next = 0;
    for (const part of m[1].split(',')) {
      const e = /^\s*(\w+)\s*(?:=\s*(\d+))?/.exec(part);
      if (!e) continue;
      const value = e[2] !== undefined ? Number(e[2]) : next;
      names[value] = e[1].replace(/^BFloat(\d+)$/, 'bf$1').replace(/^Float(\d+)$/, 'f$1');
      next = value + 1;
    }
    return names;
  }
  return {};
}

/**
 * A readable label for a demangled kernel name:
 * 'void ss::cuda::(anonymous namespace)::scanForwardKernel<(ss::DType)2, 8>(ss::...::ForwardArgs)'
 * -> 'scanForwardKernel<bf16, 8>'.
 */
export function kernelLabel(demangled, dtypes = {}) {
  let depth = 0;
  let end = demangled.length;
  for (let i = 0; i < demangled.length; i += 1) {
    const c = demangled[i];
    if (c === '<') depth += 1;
    else if (c === '>') depth -= 1;
    else if (c === '(' && depth === 0 && i > 0 && demangled[i - 1] !== ':' && !demangled.startsWith('(anonymous', i)) {
      end = i;
      break;
    }
  }
  let name = demangled.slice(0, end).replace(/^void\s+/, '');
  depth = 0;
  let start = 0;
  for (let i = 0; i < name.length; i += 1) {
    if (name[i] === '<') depth += 1;
    else if (name[i] === '>') depth -= 1;
    else if (depth === 0 && name[i] === ':' && name[i + 1] === ':') start = i + 2;
  }
  name = name.slice(start);
  return name.replace(/\([\w:]*DType\)(\d+)/g, (m, v) => dtypes[v] ?? m);
}

/**
 * The top-level template arguments of a kernel label, e.g. ['bf16', '4', 'false'] for
 * 'scanBackwardKernel<bf16, 4, false>' (a nested argument stays whole); [] without any.
 */
export function templateArguments(label) {
  const open = label.indexOf('<');
  if (open < 0 || !label.endsWith('>')) return [];
  const args = [];
  let depth = 0;
  let start = open + 1;
  for (let i = start; i < label.length - 1; i += 1) {
    const c = label[i];
    if (c === '<' || c === '(') depth += 1;
    else if (c === '>' || c === ')') depth -= 1;
    else if (c === ',' && depth === 0) {
      args.push(label.slice(start, i).trim());
      start = i + 1;
    }
  }
  args.push(label.slice(start, -1).trim());
  return args;
}

/**
 * The time steps per lane of a scan kernel: its ITEMS, the second template argument of
 * scanForwardKernel<DT, ITEMS> and scanBackwardKernel<DT, ITEMS, kPacked>; '?' where that is not a number.
 */
export function stepsPerLane(label) {
  const items = templateArguments(label ?? '')[1];
  return items !== undefined && /^\d+$/.test(items) ? items : '?';
}

/**
 * Links launch-capture (bench/kernel-stats/) with the sources' host objects of one architecture
 * and the stand-in CUDA runtime. Returns the binary's path (cached by its inputs).
 */
export async function buildLaunchCapture({ root = repoRoot, units, nvcc, log = () => {} }) {
  const cc = ['launch-capture.cc', 'cudart-stub.cc'].map((f) => join(captureDir, f));
  const hash = sha(nvcc.version, ...cc.map((f) => readFileSync(f)), ...units.map((u) => u.hash));
  const dir = join(root, 'build', 'kernel-stats', 'capture');
  const binary = join(dir, `launch-capture-${hash}`);
  if (existsSync(binary)) return binary;
  mkdirSync(dir, { recursive: true });
  log('linking launch-capture');
  const tmp = `${binary}.tmp-${process.pid}`;
  await run(nvcc.nvcc, [
    '-std=c++17',
    '-O1',
    `-I${join(root, 'csrc')}`,
    '-cudart',
    'none',
    '-o',
    tmp,
    ...cc,
    ...units.map((u) => u.object),
  ]);
  for (const f of readdirSync(dir)) if (f.startsWith('launch-capture-') && !f.includes('.tmp-')) rmSync(join(dir, f));
  renameSync(tmp, binary);
  return binary;
}

/**
 * Runs launch-capture for `cases` ('fwd:bf16:8x4096x2048x16', ...). paramSizes: Map(kernel ->
 * [bytes of each parameter]). Returns [{ case, status, buffers, allocs, memsets, launches, events
 * (the memsets and launches in order) }].
 */
export async function captureLaunches({ binary, cases, paramSizes, root = repoRoot }) {
  const sizesFile = join(root, 'build', 'kernel-stats', `param-sizes-${process.pid}.txt`);
  writeFileSync(sizesFile, [...paramSizes].map(([k, v]) => `${k} ${v.join(' ')}`).join('\n'));
  try {
    const { stdout } = await run(binary, cases, { env: { ...process.env, KERNEL_STATS_PARAM_SIZES: sizesFile } });
    const out = [];
    for (const line of stdout.split('\n').filter(Boolean)) {
      const r = JSON.parse(line);
      if (r.type === 'case') {
        out.push({ case: r.case, status: null, buffers: [], allocs: [], memsets: [], launches: [], events: [] });
        continue;
      }
      const c = out[out.length - 1];
      if (r.type === 'done') c.status = r.status;
      else c[{ buffer: 'buffers', alloc: 'allocs', memset: 'memsets', launch: 'launches' }[r.type]].push(r);
      if (r.type === 'memset' || r.type === 'launch') c.events.push(r); // in the order the host made them
    }
    return out;
  } finally {
    rmSync(sizesFile, { force: true });
  }
}
