#!/usr/bin/env node
// What a user of the published package gets, tried as they would: pack the package, install the
// tarball into fresh projects (once with npm's defaults, once with --ignore-scripts) with no CUDA
// toolkit on PATH, and run a forward pass through `import` and through `require`, checked against
// a float64 loop. The binary must come from prebuilds/ inside the package: nothing is compiled.
//
//   node test/package/pack-test.mjs [--expect-archs sm_75,sm_80,...]
//
// The binary must carry the architectures of a release build (release_cuda_architectures in
// CMakeLists.txt), or those given. Run `npm run prebuilds` first. Needs the npm registry (for
// node-gyp-build) like any install.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkPrebuilt, releaseArchitectures } from '../../scripts/prebuilt-binary.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const argv = process.argv.slice(2);
const expectArchs = argv.includes('--expect-archs')
  ? argv[argv.indexOf('--expect-archs') + 1].split(',')
  : releaseArchitectures();

function fail(message) {
  console.error(`pack-test: FAIL: ${message}`);
  process.exit(1);
}

// PATH without any directory that holds nvcc, and no CUDA variables: a CI machine without CUDA.
function environmentWithoutCuda() {
  const env = { ...process.env };
  for (const key of Object.keys(env)) if (/^(CUDA|CUDACXX|CUDAARCHS|npm_)/i.test(key)) delete env[key];
  env.PATH = (process.env.PATH ?? '')
    .split(path.delimiter)
    .filter((dir) => dir && !fs.existsSync(path.join(dir, 'nvcc')))
    .join(path.delimiter);
  if (spawnSync('sh', ['-c', 'command -v nvcc'], { env }).status === 0) fail('nvcc is still on PATH');
  if (spawnSync('sh', ['-c', 'command -v node && command -v npm'], { env }).status !== 0) {
    fail('node or npm lives beside nvcc; cannot hide the CUDA toolkit');
  }
  return env;
}

const { problems } = checkPrebuilt(expectArchs);
if (problems.length) fail(`${problems.join('; ')}: run \`npm run prebuilds\` first`);

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'selective-scan-pack-'));
console.log(`pack-test: working in ${work}`);

// ---- The tarball ---------------------------------------------------------------------------------
// npm pack runs the prepack check (scripts/prepack.js), told of the architectures expected here.
const packJson = execFileSync('npm', ['pack', '--json', '--pack-destination', work], {
  cwd: root,
  encoding: 'utf8',
  stdio: ['ignore', 'pipe', 'inherit'],
  env: { ...process.env, SELECTIVE_SCAN_PACK_ARCHS: expectArchs.join(',') },
});
const [pack] = JSON.parse(packJson);
const tarball = path.join(work, pack.filename);
const files = pack.files.map((f) => f.path);
const mib = (bytes) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
console.log(
  `pack-test: ${pack.filename}: ${mib(pack.size)} packed, ${mib(pack.unpackedSize)} unpacked, ${files.length} files`,
);
for (const required of [
  'dist/index.js',
  'dist/index.mjs',
  'dist/index.d.ts',
  'dist/index.d.mts',
  'dist/tfjs/index.js',
  'dist/tfjs/index.mjs',
  'dist/tfjs/index.d.ts',
  'dist/tfjs/index.d.mts',
  'CMakeLists.txt',
  'binding.gyp',
  'README.md',
  'scripts/install.js',
  'scripts/build-native.js',
  'csrc/common/scan_math.h',
]) {
  if (!files.includes(required)) fail(`the tarball lacks ${required}`);
}
const binaries = files.filter(
  (f) => f.startsWith(`prebuilds/${process.platform}-${process.arch}/`) && f.endsWith('.node'),
);
if (binaries.length !== 1) fail(`expected one prebuilt binary in the tarball, found ${JSON.stringify(binaries)}`);
const stray = files.filter((f) => /^(build|test|bench|node_modules|lib|\.ci|\.github)\//.test(f));
if (stray.length) fail(`the tarball carries files users do not need: ${stray.slice(0, 5).join(', ')}`);

// ---- Fresh projects --------------------------------------------------------------------------------
const env = environmentWithoutCuda();
const program = (importLine) => `${importLine}
// A small forward pass against a float64 loop of the recurrence.
const [batch, dim, L, N] = [2, 3, 37, 4];
let seed = 7;
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
const fill = (n, f = rand) => Array.from({ length: n }, f);
const u = fill(batch * dim * L), delta = fill(batch * dim * L, () => 0.1 + 0.4 * Math.abs(rand()));
const A = fill(dim * N, () => -0.2 - Math.abs(rand())), B = fill(dim * N), C = fill(dim * N);
const out = selectiveScan(
  Tensor.from(u, [batch, dim, L]), Tensor.from(delta, [batch, dim, L]),
  Tensor.from(A, [dim, N]), Tensor.from(B, [dim, N]), Tensor.from(C, [dim, N]),
).out.dataSync();
let worst = 0;
for (let b = 0; b < batch; b++) for (let d = 0; d < dim; d++) {
  const h = new Float64Array(N);
  for (let t = 0; t < L; t++) {
    const i = (b * dim + d) * L + t;
    let y = 0;
    for (let n = 0; n < N; n++) {
      h[n] = Math.exp(delta[i] * A[d * N + n]) * h[n] + delta[i] * B[d * N + n] * u[i];
      y += C[d * N + n] * h[n];
    }
    worst = Math.max(worst, Math.abs(out[i] - y) / (1 + Math.abs(y)));
  }
}
if (!(worst < 1e-5)) throw new Error('forward disagrees with the float64 loop: ' + worst);
console.log(JSON.stringify({ worst, buildInfo: buildInfo(), cudaAvailable: cuda.isAvailable() }));
`;

function tryProject(label, installArgs) {
  const dir = path.join(work, label);
  fs.mkdirSync(dir);
  fs.writeFileSync(
    path.join(dir, 'package.json'),
    JSON.stringify({ name: `try-${label}`, version: '1.0.0', private: true }),
  );
  const install = spawnSync('npm', ['install', '--no-audit', '--no-fund', ...installArgs, tarball], {
    cwd: dir,
    env,
    encoding: 'utf8',
  });
  process.stdout.write(install.stdout);
  process.stderr.write(install.stderr);
  if (install.status !== 0) fail(`${label}: npm install failed (${install.status})`);
  const installed = path.join(dir, 'node_modules', 'selective-scan');
  if (fs.existsSync(path.join(installed, 'build')))
    fail(`${label}: the install compiled a binary instead of using the prebuilt one`);

  fs.writeFileSync(
    path.join(dir, 'esm.mjs'),
    program("import { Tensor, selectiveScan, buildInfo, cuda } from 'selective-scan';"),
  );
  fs.writeFileSync(
    path.join(dir, 'cjs.cjs'),
    program("const { Tensor, selectiveScan, buildInfo, cuda } = require('selective-scan');"),
  );
  for (const script of ['esm.mjs', 'cjs.cjs']) {
    const run = spawnSync(process.execPath, [script], { cwd: dir, env, encoding: 'utf8' });
    if (run.status !== 0) fail(`${label}/${script}: ${run.stderr || run.stdout}`);
    const result = JSON.parse(run.stdout.trim().split('\n').pop());
    const archs = result.buildInfo.cudaArchitectures;
    const missing = expectArchs.filter((a) => !archs.includes(a));
    if (missing.length) fail(`${label}/${script}: the binary lacks ${missing.join(', ')} (has ${archs.join(', ')})`);
    if (!result.buildInfo.cuda) fail(`${label}/${script}: the prebuilt binary has no CUDA backend`);
    console.log(
      `pack-test: ${label}/${script}: forward agrees (worst ${result.worst.toExponential(1)}); ` +
        `CUDA ${result.buildInfo.cudaRuntime} [${archs.join(' ')}], GPU available: ${result.cudaAvailable}`,
    );
  }
}

// Where no binary loads (another platform; here: the same tarball without prebuilds/), the
// install still succeeds, compiles nothing without cmake-js, and the import says what to do.
function tryWithoutPrebuild() {
  const dir = path.join(work, 'no-prebuild');
  fs.mkdirSync(path.join(dir, 'unpacked'), { recursive: true });
  execFileSync('tar', ['-xzf', tarball, '-C', path.join(dir, 'unpacked')]);
  fs.rmSync(path.join(dir, 'unpacked', 'package', 'prebuilds'), { recursive: true });
  const stripped = path.join(dir, 'selective-scan-no-prebuild.tgz');
  execFileSync('tar', ['-czf', stripped, '-C', path.join(dir, 'unpacked'), 'package']);
  fs.writeFileSync(
    path.join(dir, 'package.json'),
    JSON.stringify({ name: 'try-no-prebuild', version: '1.0.0', private: true }),
  );
  const install = spawnSync('npm', ['install', '--no-audit', '--no-fund', '--foreground-scripts', stripped], {
    cwd: dir,
    env,
    encoding: 'utf8',
  });
  if (install.status !== 0) fail(`no-prebuild: npm install failed (${install.status}):\n${install.stderr}`);
  const output = install.stdout + install.stderr;
  const ranScript = output.includes('selective-scan: no prebuilt binary loads here');
  const run = spawnSync(process.execPath, ['-e', "require('selective-scan')"], { cwd: dir, env, encoding: 'utf8' });
  if (run.status === 0) fail('no-prebuild: the import succeeded without a binary');
  for (const advice of [
    'no prebuilt binary: this copy of the package carries none',
    'npm install --save-dev cmake-js node-addon-api node-api-headers',
    'npm install-scripts approve selective-scan',
  ]) {
    if (!run.stderr.includes(advice)) fail(`no-prebuild: the import error does not say "${advice}":\n${run.stderr}`);
  }
  console.log(
    `pack-test: no-prebuild: install succeeded (${ranScript ? 'its install script explained' : 'npm skipped its install script'}); ` +
      'the import fails with the instructions',
  );
}

tryProject('defaults', []);
tryProject('ignore-scripts', ['--ignore-scripts']);
tryWithoutPrebuild();
fs.rmSync(work, { recursive: true, force: true });
console.log(`pack-test: PASS (${mib(pack.size)} tarball)`);
