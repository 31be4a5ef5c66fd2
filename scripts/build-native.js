#!/usr/bin/env node
// Builds the addon with cmake-js (CMakeLists.txt holds every source and flag) and puts it at
// build/Release/selective_scan.node, where node-gyp-build looks first. Used by `npm run
// build:native`, by the install script, and by binding.gyp's action (so node-gyp and prebuildify
// drive the same CMake build). Extra arguments go to cmake-js (e.g. --CDSELECTIVE_SCAN_CUDA=OFF).
//
// CUDA architectures: CUDAARCHS when set (e.g. "80;90"); else the local GPUs' (nvidia-smi), so that
// a development build compiles one architecture; else every architecture of the release
// (CMakeLists.txt's release_cuda_architectures). SELECTIVE_SCAN_RELEASE=1 (set by `npm run
// prebuilds`) builds the binary that ships in the package, in a build directory of its own, for
// the release architectures unless CUDAARCHS says otherwise.
//
// cmake-js configures a build directory only once, and CMake caches the architectures there, so
// this script records the settings it configured with (build/cmake*/selective-scan-settings.json)
// and configures afresh when they change: a new CUDAARCHS, another GPU or other arguments rebuild.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const root = path.join(__dirname, '..');

/** The compute capabilities of the local GPUs as CMake architectures ("90", or "80;90"), or null. */
function localGpuArchitectures(nvidiaSmi = 'nvidia-smi') {
  const query = spawnSync(nvidiaSmi, ['--query-gpu=compute_cap', '--format=csv,noheader'], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  if (query.status !== 0) return null;
  const architectures = query.stdout
    .split('\n')
    .map((line) => /^\s*(\d+)\.(\d+)\s*$/.exec(line))
    .filter((match) => match !== null)
    .map((match) => `${match[1]}${match[2]}`);
  return architectures.length ? [...new Set(architectures)].sort((a, b) => a - b).join(';') : null;
}

/**
 * The CUDA architectures to build and why: { architectures, source }, where architectures is null
 * for CMakeLists.txt's release list.
 */
function chooseCudaArchitectures(env = process.env, nvidiaSmi = 'nvidia-smi') {
  if (env.CUDAARCHS) return { architectures: env.CUDAARCHS, source: 'CUDAARCHS' };
  if (env.SELECTIVE_SCAN_RELEASE === '1') return { architectures: null, source: 'a release build' };
  const local = localGpuArchitectures(nvidiaSmi);
  if (local !== null) return { architectures: local, source: 'the local GPU, from nvidia-smi' };
  return { architectures: null, source: 'no GPU found' };
}

/**
 * Removes the CMake cache of buildDir when it was configured with other settings than these (so
 * that cmake-js configures afresh), and returns a function that records these once built.
 */
function reconfigureIfChanged(buildDir, settings) {
  const file = path.join(buildDir, 'selective-scan-settings.json');
  const wanted = JSON.stringify(settings);
  let recorded = null;
  try {
    recorded = fs.readFileSync(file, 'utf8');
  } catch {}
  if (recorded !== wanted) {
    if (recorded !== null) console.log(`selective-scan: build settings changed (was ${recorded}); configuring afresh`);
    fs.rmSync(path.join(buildDir, 'CMakeCache.txt'), { force: true });
  }
  return () => fs.writeFileSync(file, wanted);
}

function main() {
  let cmakeJs;
  try {
    cmakeJs = require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
    require.resolve('node-addon-api', { paths: [root] });
  } catch {
    console.error(
      'selective-scan: building from source needs cmake-js and node-addon-api ' +
        '(npm install --save-dev cmake-js node-addon-api node-api-headers), cmake 3.25+, and a C++17 compiler.',
    );
    return 1;
  }
  const release = process.env.SELECTIVE_SCAN_RELEASE === '1';
  const buildDir = path.join(root, 'build', release ? 'cmake-release' : 'cmake');
  const { architectures, source } = chooseCudaArchitectures();
  console.log(`selective-scan: CUDA architectures ${architectures ?? 'of the release'} (${source})`);
  const args = [cmakeJs, 'compile', '--out', buildDir];
  if (release) args.push('--CDSELECTIVE_SCAN_RELEASE=ON');
  if (architectures !== null) args.push(`--CDCMAKE_CUDA_ARCHITECTURES=${architectures}`);
  args.push(...process.argv.slice(2));
  const recordSettings = reconfigureIfChanged(buildDir, { args: args.slice(2) });
  // The architectures go to CMake as an argument only (an empty CUDAARCHS would pick nvcc's default).
  const env = { ...process.env };
  delete env.CUDAARCHS;
  const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit', env });
  if (result.status !== 0) return result.status ?? 1;
  recordSettings();
  const built = path.join(buildDir, 'Release', 'selective_scan.node');
  const target = path.join(root, 'build', 'Release', 'selective_scan.node');
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.copyFileSync(built, target);
  return 0;
}

if (require.main === module) process.exit(main());
module.exports = { chooseCudaArchitectures };
