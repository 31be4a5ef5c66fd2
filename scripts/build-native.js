#!/usr/bin/env node
// Builds the addon with cmake-js (CMakeLists.txt holds every source and flag) and puts it at
// build/Release/selective_scan.node, where node-gyp-build looks first. Used by `npm run
// build:native`, by the install script, and by binding.gyp's action (so node-gyp and prebuildify
// drive the same CMake build). Extra arguments go to cmake-js (e.g. --CDSELECTIVE_SCAN_CUDA=OFF).
// CUDAARCHS in the environment picks the CUDA architectures (CMake's own variable; it seeds a
// new build directory only). SELECTIVE_SCAN_RELEASE=1 (set by `npm run prebuilds`) builds the
// binary that ships in the package, in a build directory of its own.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const root = path.join(__dirname, '..');
const release = process.env.SELECTIVE_SCAN_RELEASE === '1';
const cmakeBuildDir = path.join(root, 'build', release ? 'cmake-release' : 'cmake');
const target = path.join(root, 'build', 'Release', 'selective_scan.node');

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
  const args = [cmakeJs, 'compile', '--out', cmakeBuildDir];
  if (release) args.push('--CDSELECTIVE_SCAN_RELEASE=ON');
  args.push(...process.argv.slice(2));
  const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) return result.status ?? 1;
  const built = path.join(cmakeBuildDir, 'Release', 'selective_scan.node');
  fs.mkdirSync(path.dirname(target), { recursive: true });
  fs.copyFileSync(built, target);
  return 0;
}

process.exit(main());
