// Builds the kernel emulation test binary with g++: the CUDA kernel sources of csrc/cuda (rewritten
// by preprocess.mjs, compiled against the fake headers of include/), the emulator, its self-test,
// the CPU backend (the oracle, compiled as CMakeLists.txt compiles it) and the driver.
//
// Everything goes to build/emulation/ (git-ignored). Each object file is named by a hash of the
// compiler, its flags, its source and the headers it can include, so a repeated run compiles
// nothing and a change recompiles only what it can affect; the binary is named by the hash of its
// objects. Writes go to a temporary name and are renamed into place, so an interrupted or
// concurrent build never leaves a half-written file under a valid name.
//
//   node test/emulation/build.mjs [--csrc DIR] [--jobs N] [-- ARGS...]
//     prints the binary's path; with `--`, runs it with ARGS. --csrc builds another copy of the
//     sources (e.g. a deliberately broken kernel, to see the test fail).
// Environment: CXX (default g++), SS_EMULATION_JOBS (parallel compiles, default min(2, cores)),
// SS_EMULATION_SANITIZE=0 (no UBSan), SS_EMULATION_CSRC (the default of --csrc, so that the vitest
// test itself can be pointed at a deliberately broken copy of the sources).
import { createHash } from 'node:crypto';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { rewriteCuda } from './preprocess.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');

// The kernel sources that make up the CUDA ops (microbench.cu is the benchmark's, not an op).
const KERNEL_SOURCES = ['scan_forward.cu', 'scan_backward.cu', 'state_update.cu', 'convert.cu'];

/** The compiler, or why there is none: { cxx, version } | { missing }. */
export function findCompiler() {
  const cxx = process.env.CXX || 'g++';
  try {
    const version = execFileSync(cxx, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split(
      '\n',
    )[0];
    return { cxx, version };
  } catch {
    return { missing: `no C++ compiler: '${cxx} --version' failed (set CXX to a g++)` };
  }
}

const sha = (...parts) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(typeof p === 'string' ? p : p).update('\0');
  return h.digest('hex');
};

const filesIn = (dir, pattern) =>
  existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => pattern.test(f))
        .sort()
        .map((f) => join(dir, f))
    : [];

/** Writes `content` to `path` (atomically) unless it already holds it. */
function writeIfChanged(path, content) {
  if (existsSync(path) && readFileSync(path, 'utf8') === content) return;
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, content);
  renameSync(tmp, path);
}

function run(cmd, args) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => {
      output += d;
    });
    child.stderr.on('data', (d) => {
      output += d;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolvePromise(output);
      else reject(new Error(`${cmd} ${args.join(' ')}\nfailed with status ${code}:\n${output}`));
    });
  });
}

/** Whether the compiler can build and run a program with -fsanitize=undefined (cached). */
function sanitizerWorks(compiler, dir) {
  if (process.env.SS_EMULATION_SANITIZE === '0') return false;
  const cache = join(dir, `ubsan-${sha(compiler.cxx, compiler.version).slice(0, 16)}.json`);
  if (existsSync(cache)) return JSON.parse(readFileSync(cache, 'utf8')).works;
  const src = join(dir, `ubsan-probe-${process.pid}.cc`);
  const bin = join(dir, `ubsan-probe-${process.pid}`);
  writeFileSync(src, 'int main(int argc, char **) { return argc > 100; }\n');
  const built = spawnSync(compiler.cxx, ['-fsanitize=undefined', src, '-o', bin], { stdio: 'ignore' });
  const works = built.status === 0 && spawnSync(bin, [], { stdio: 'ignore' }).status === 0;
  rmSync(src, { force: true });
  rmSync(bin, { force: true });
  writeIfChanged(cache, JSON.stringify({ works }));
  return works;
}

/**
 * Builds (or finds) the emulation binary.
 * Returns { binary, compiled: number of objects compiled, seconds, sanitizer: boolean }.
 */
export async function buildEmulator({
  csrc = process.env.SS_EMULATION_CSRC || join(root, 'csrc'),
  jobs,
  log = () => {},
} = {}) {
  const started = Date.now();
  const compiler = findCompiler();
  if (compiler.missing) throw new Error(compiler.missing);
  // Another source tree (--csrc) builds in its own directory, not to evict the main build's objects.
  const defaultTree = resolve(csrc) === join(root, 'csrc');
  const out = join(root, 'build', 'emulation', ...(defaultTree ? [] : [`alt-${sha(resolve(csrc)).slice(0, 8)}`]));
  const genDir = join(out, 'gen'),
    objDir = join(out, 'obj'),
    binDir = join(out, 'bin');
  for (const d of [out, genDir, objDir, binDir]) mkdirSync(d, { recursive: true });
  jobs ??= Number(process.env.SS_EMULATION_JOBS) || Math.min(2, os.availableParallelism?.() ?? os.cpus().length);
  const sanitize = sanitizerWorks(compiler, out);

  const include = join(here, 'include');
  const read = (f) => readFileSync(f);
  // Headers by the part of the tree they belong to; an object depends on the groups it includes.
  const headers = {
    common: filesIn(join(csrc, 'common'), /\.h$/),
    cuda: filesIn(join(csrc, 'cuda'), /\.(h|cuh)$/),
    cpu: filesIn(join(csrc, 'cpu'), /\.h$/),
    emu: [...filesIn(include, /\.h$/), join(here, 'selftest.h')],
  };
  const base = ['-std=gnu++17', '-O2', '-g0', '-pthread'];
  // The kernels: compiled as device code would be (__CUDACC__ / __CUDA_ARCH__ select the shared
  // headers' device paths), without type-based alias analysis (the kernels reinterpret float
  // storage as 16-byte vectors, which nvcc allows and g++ would be free to miscompile), and with
  // UBSan where it works: misaligned vector stores, out-of-bounds indices of fixed-size arrays and
  // integer overflow in index arithmetic become reports. -w: nvcc-only pragmas (#pragma unroll)
  // and g++'s false maybe-uninitialized warnings on guarded code are noise here. ThreadSanitizer's
  // instrumentation (without its runtime) hands every load and store to the emulator's detector of
  // races between blocks (emulator.cc); function entries and exits it need not see.
  const kernelFlags = [
    ...base,
    '-w',
    '-fno-strict-aliasing',
    '-D__CUDACC__',
    '-D__CUDA_ARCH__=900',
    `-I${include}`,
    `-I${join(csrc, 'cuda')}`,
    '-fsanitize=thread',
    ...(/clang/i.test(compiler.version) ? [] : ['--param=tsan-instrument-func-entry-exit=0']),
    ...(sanitize ? ['-fsanitize=undefined', '-fno-sanitize=vptr'] : []),
  ];
  const units = [];
  for (const file of KERNEL_SOURCES) {
    const source = join(csrc, 'cuda', file);
    const gen = join(genDir, file.replace(/\.cu$/, '.cc'));
    writeIfChanged(gen, rewriteCuda(readFileSync(source, 'utf8'), source, `csrc/cuda/${file}`));
    units.push({
      name: basename(gen, '.cc'),
      src: gen,
      flags: kernelFlags,
      deps: [...headers.common, ...headers.cuda, ...headers.emu],
    });
  }
  const selftest = join(genDir, 'selftest.cc');
  writeIfChanged(
    selftest,
    rewriteCuda(
      readFileSync(join(here, 'selftest.cu'), 'utf8'),
      join(here, 'selftest.cu'),
      'test/emulation/selftest.cu',
    ),
  );
  units.push({ name: 'selftest', src: selftest, flags: [...kernelFlags, `-I${here}`], deps: headers.emu });
  // The emulator switches stacks with a `ret` into another fiber, which a hardware shadow stack
  // (CET) would refuse: -fcf-protection=none keeps its object, and so the binary, unmarked, so that
  // no loader turns shadow stacks on for it (x86-64 only; elsewhere there is nothing to turn off).
  units.push({
    name: 'emulator',
    src: join(here, 'emulator.cc'),
    flags: [...base, '-Wall', '-Wextra', ...(os.arch() === 'x64' ? ['-fcf-protection=none'] : []), `-I${include}`],
    deps: headers.emu,
  });
  units.push({
    name: 'driver',
    src: join(here, 'driver.cc'),
    flags: [...base, '-Wall', '-Wextra', `-I${include}`, `-I${csrc}`, `-I${here}`],
    deps: [...headers.common, ...headers.cuda, ...headers.cpu, ...headers.emu],
  });
  // The CPU backend, as CMakeLists.txt builds it: scan_kernels.cc once per instruction set.
  const isas =
    os.arch() === 'x64'
      ? {
          baseline: [],
          avx2: ['-mavx2', '-mfma', '-mf16c'],
          avx512: ['-mavx512f', '-mavx512vl', '-mavx512bw', '-mavx512dq', '-mavx2', '-mfma', '-mf16c'],
        }
      : { baseline: [] };
  for (const [isa, flags] of Object.entries(isas)) {
    units.push({
      name: `scan_kernels_${isa}`,
      src: join(csrc, 'cpu', 'scan_kernels.cc'),
      flags: ['-std=gnu++17', '-O3', '-fno-math-errno', '-pthread', ...flags, `-DSS_CPU_ISA=${isa}`],
      deps: [...headers.common, ...headers.cpu],
    });
  }
  for (const name of ['cpu_backend', 'thread_pool']) {
    units.push({
      name,
      src: join(csrc, 'cpu', `${name}.cc`),
      flags: [...base],
      deps: [...headers.common, ...headers.cpu],
    });
  }

  // Compile what is missing, `jobs` at a time.
  for (const u of units) {
    u.hash = sha(compiler.version, u.flags.join(' '), read(u.src), ...u.deps.map((d) => `${d}\n${read(d)}`)).slice(
      0,
      16,
    );
    u.obj = join(objDir, `${u.name}-${u.hash}.o`);
  }
  const todo = units.filter((u) => !existsSync(u.obj));
  let compiled = 0;
  const worker = async () => {
    for (let u = todo.shift(); u; u = todo.shift()) {
      log(`compiling ${basename(u.src)}${u.name !== basename(u.src).replace(/\.\w+$/, '') ? ` (${u.name})` : ''}`);
      const tmp = `${u.obj}.tmp-${process.pid}`;
      await run(compiler.cxx, [...u.flags, '-c', u.src, '-o', tmp]);
      renameSync(tmp, u.obj);
      compiled++;
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, jobs) }, worker));

  const linkFlags = ['-pthread', ...(sanitize ? ['-fsanitize=undefined'] : [])];
  const binary = join(
    binDir,
    `emulate-${sha(compiler.version, linkFlags.join(' '), ...units.map((u) => u.hash)).slice(0, 16)}`,
  );
  if (!existsSync(binary)) {
    log('linking');
    const tmp = `${binary}.tmp-${process.pid}`;
    await run(compiler.cxx, [...units.map((u) => u.obj), ...linkFlags, '-o', tmp]);
    renameSync(tmp, binary);
  }

  // Older objects and binaries of the same units are stale: remove them (not while being written).
  const current = new Set([...units.map((u) => basename(u.obj)), basename(binary)]);
  for (const [dir, isOurs] of [
    [objDir, (f) => units.some((u) => f.startsWith(`${u.name}-`))],
    [binDir, (f) => f.startsWith('emulate-')],
  ]) {
    for (const f of readdirSync(dir)) {
      if (!current.has(f) && isOurs(f) && !f.includes('.tmp-')) rmSync(join(dir, f), { force: true });
    }
  }
  return { binary, compiled, seconds: (Date.now() - started) / 1000, sanitizer: sanitize };
}

// CLI.
if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const args = process.argv.slice(2);
  const dash = args.indexOf('--');
  const own = dash < 0 ? args : args.slice(0, dash);
  const opts = { log: (m) => process.stderr.write(`${m}\n`) };
  for (let i = 0; i < own.length; i++) {
    if (own[i] === '--csrc') opts.csrc = resolve(own[++i]);
    else if (own[i] === '--jobs') opts.jobs = Number(own[++i]);
    else throw new Error(`unknown argument ${own[i]}`);
  }
  const { binary, compiled, seconds, sanitizer } = await buildEmulator(opts);
  process.stderr.write(
    `${binary} (${compiled} objects compiled in ${seconds.toFixed(1)} s${sanitizer ? ', UBSan' : ''})\n`,
  );
  if (dash < 0) {
    process.stdout.write(`${binary}\n`);
  } else {
    const child = spawnSync(binary, args.slice(dash + 1), { stdio: 'inherit' });
    process.exit(child.status ?? 1);
  }
}
