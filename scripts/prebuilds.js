#!/usr/bin/env node
// `npm run prebuilds`: the binary that ships inside the package, so that `npm install` needs no
// compiler, no CUDA toolkit and no install script. prebuildify runs node-gyp, whose binding.gyp
// action runs the same CMake build as every other build (scripts/build-native.js), here with
// SELECTIVE_SCAN_RELEASE=1: CUDA code for sm_75 ... sm_120 plus PTX, compressed;
// static CUDA runtime and libstdc++; baseline x86-64 CPU code with faster paths chosen at run
// time. The result, stripped, is prebuilds/linux-x64/selective-scan.glibc.node.
//
// CUDAARCHS overrides the architectures (e.g. CUDAARCHS=90-real for a quick try).
// The binary needs the glibc of the machine that built it or newer: the release workflow
// builds in a glibc 2.28 container and sets SELECTIVE_SCAN_MAX_GLIBC=2.28, which fails the build
// if the binary asks for more; a binary made on Debian 12 needs glibc 2.36.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { architectureNames, checkPrebuilt, releaseArchitectures } = require('./prebuilt-binary.js');

const root = path.join(__dirname, '..');
const env = { ...process.env, SELECTIVE_SCAN_RELEASE: '1' };
// node-gyp wants Node's headers even though the CMake build takes its own from node-api-headers:
// point it at the running Node's, so that nothing is downloaded.
const nodeIncludes = path.join(path.dirname(process.execPath), '..', 'include', 'node');
if (!env.npm_config_nodedir && fs.existsSync(path.join(nodeIncludes, 'node_api.h'))) {
  env.npm_config_nodedir = path.resolve(nodeIncludes, '..', '..');
}

// npm run puts its own node-gyp on PATH and names it in npm_config_node_gyp.
if (!env.PREBUILD_NODE_GYP && env.npm_config_node_gyp) env.PREBUILD_NODE_GYP = env.npm_config_node_gyp;

fs.rmSync(path.join(root, 'prebuilds'), { recursive: true, force: true });
const prebuildify = require.resolve('prebuildify/bin.js', { paths: [root] });
const run = spawnSync(process.execPath, [prebuildify, '--napi', '--strip', '--tag-libc'], {
  cwd: root,
  env,
  stdio: 'inherit',
});
if (run.status !== 0) process.exit(run.status ?? 1);

// Load what was made, in a fresh process, and check that it carries what was asked for.
const { problems, binaries, buildInfo } = checkPrebuilt(
  process.env.CUDAARCHS ? architectureNames(process.env.CUDAARCHS) : releaseArchitectures(),
);
if (problems.length) {
  console.error(`prebuilds: ${problems.join('\n  ')}`);
  process.exit(1);
}
const [binary] = binaries;
const size = (fs.statSync(binary).size / 2 ** 20).toFixed(1);
console.log(`prebuilds: ${path.relative(root, binary)} (${size} MiB) ${JSON.stringify(buildInfo)}`);
checkSharedLibraries(binary);

// The binary may ask only for the C library's own parts, and for no newer glibc than allowed.
function checkSharedLibraries(binary) {
  const dynamic = spawnSync('readelf', ['--dynamic', '--dyn-syms', '--wide', binary], { encoding: 'utf8' });
  if (dynamic.status !== 0) {
    console.warn('prebuilds: readelf not found; shared library needs not checked');
    return;
  }
  const needed = [...dynamic.stdout.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
  const allowed = /^(libc|libm|libdl|librt|libpthread|ld-linux-x86-64)\.so/;
  const extra = needed.filter((name) => !allowed.test(name));
  const versions = [...dynamic.stdout.matchAll(/@GLIBC_(\d+)\.(\d+)/g)].map((m) => [Number(m[1]), Number(m[2])]);
  const [major, minor] = versions.reduce((a, b) => (b[0] > a[0] || (b[0] === a[0] && b[1] > a[1]) ? b : a), [2, 0]);
  console.log(`prebuilds: needs ${needed.join(', ')}; glibc ${major}.${minor} or newer`);
  if (extra.length) {
    console.error(`prebuilds: the binary needs libraries users may lack: ${extra.join(', ')}`);
    process.exit(1);
  }
  const limit = process.env.SELECTIVE_SCAN_MAX_GLIBC;
  if (limit) {
    const [limitMajor, limitMinor] = limit.split('.').map(Number);
    if (major > limitMajor || (major === limitMajor && minor > limitMinor)) {
      console.error(`prebuilds: the binary needs glibc ${major}.${minor}, more than SELECTIVE_SCAN_MAX_GLIBC=${limit}`);
      process.exit(1);
    }
  }
}
