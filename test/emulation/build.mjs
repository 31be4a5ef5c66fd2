// Builds the kernel emulation test binary with g++: the CUDA kernel sources (every csrc/**/*.cu but
// the benchmarks' microbench.cu, rewritten by preprocess.mjs, compiled against the fake headers of
// include/), the emulator, its self-test, the CPU backend (the oracle, compiled as CMakeLists.txt
// compiles it: csrc/**/*_cpu.cc once per instruction set, csrc/cpu/*.cc once), the cases of every
// op (cases/*.cc) and the driver. Every list is found by file name, none is kept by hand.
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
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { rewriteCuda } from './preprocess.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');

// CUDA sources that are not kernels of an op or of the GPU runtime: the benchmarks' exp2 microbenchmark
// (it times with CUDA events, which the emulator does not model).
const NOT_EMULATED = new Set(['csrc/cuda/microbench.cu']);

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

/** Files under dir (recursively) whose path relative to dir matches pattern, sorted. */
const filesUnder = (dir, pattern) =>
  existsSync(dir)
    ? readdirSync(dir, { recursive: true })
        .map((f) => f.split('\\').join('/'))
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
  // Headers: csrc's (any object may include any of them) and the emulator's.
  const headers = {
    csrc: filesUnder(csrc, /\.(h|cuh)$/),
    emu: [...filesIn(include, /\.h$/), join(here, 'selftest.h'), join(here, 'harness.h')],
  };
  const csrcDeps = [...headers.csrc, ...headers.emu];
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
    '-fsanitize=thread',
    ...(/clang/i.test(compiler.version) ? [] : ['--param=tsan-instrument-func-entry-exit=0']),
    ...(sanitize ? ['-fsanitize=undefined', '-fno-sanitize=vptr'] : []),
  ];
  const units = [];
  // A unit's name: its path under csrc (or test/emulation) with the slashes as underscores.
  const unitName = (file, from) =>
    relative(from, file)
      .replace(/\.\w+$/, '')
      .split(sep)
      .join('_');
  const kernelSources = filesUnder(csrc, /\.cu$/).filter((f) => !NOT_EMULATED.has(`csrc/${relative(csrc, f)}`));
  for (const source of kernelSources) {
    const name = unitName(source, csrc);
    const gen = join(genDir, `${name}.cc`);
    writeIfChanged(gen, rewriteCuda(readFileSync(source, 'utf8'), source, `csrc/${relative(csrc, source)}`));
    // The generated file lives elsewhere: its own directory comes first on the include path, so
    // that the source's relative includes resolve as they do for nvcc.
    units.push({ name, src: gen, flags: [...kernelFlags, `-I${dirname(source)}`], deps: csrcDeps });
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
  // csrc/ on its include path: the self-test checks the wrappers of csrc/cuda/mma.cuh too.
  units.push({ name: 'selftest', src: selftest, flags: [...kernelFlags, `-I${here}`, `-I${csrc}`], deps: csrcDeps });
  // The emulator switches stacks with a `ret` into another fiber, which a hardware shadow stack
  // (CET) would refuse: -fcf-protection=none keeps its object, and so the binary, unmarked, so that
  // no loader turns shadow stacks on for it (x86-64 only; elsewhere there is nothing to turn off).
  units.push({
    name: 'emulator',
    src: join(here, 'emulator.cc'),
    flags: [...base, '-Wall', '-Wextra', ...(os.arch() === 'x64' ? ['-fcf-protection=none'] : []), `-I${include}`],
    deps: headers.emu,
  });
  // The driver and every op's cases (cases/*.cc).
  const hostFlags = [...base, '-Wall', '-Wextra', `-I${include}`, `-I${csrc}`, `-I${here}`];
  for (const src of [join(here, 'driver.cc'), ...filesIn(join(here, 'cases'), /\.cc$/)]) {
    units.push({ name: unitName(src, here), src, flags: hostFlags, deps: csrcDeps });
  }
  // The CPU backend, as CMakeLists.txt builds it: every *_cpu.cc once per instruction set, the
  // rest of csrc/cpu once.
  const isas =
    os.arch() === 'x64'
      ? {
          baseline: [],
          avx2: ['-mavx2', '-mfma', '-mf16c'],
          avx512: ['-mavx512f', '-mavx512vl', '-mavx512bw', '-mavx512dq', '-mavx2', '-mfma', '-mf16c'],
        }
      : { baseline: [] };
  for (const src of filesUnder(csrc, /_cpu\.cc$/)) {
    for (const [isa, flags] of Object.entries(isas)) {
      units.push({
        name: `${unitName(src, csrc)}_${isa}`,
        src,
        flags: ['-std=gnu++17', '-O3', '-fno-math-errno', '-pthread', ...flags, `-DSS_CPU_ISA=${isa}`],
        deps: headers.csrc,
      });
    }
  }
  for (const src of filesIn(join(csrc, 'cpu'), /\.cc$/).filter((f) => !f.endsWith('_cpu.cc'))) {
    units.push({ name: unitName(src, csrc), src, flags: [...base], deps: headers.csrc });
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
