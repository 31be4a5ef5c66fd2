#!/usr/bin/env node
// npm's install step for this package. The package ships a prebuilt binary (prebuilds/), which
// loads with no script run at all; this script only matters where none loads (another platform or
// libc, or a checkout without a build): then it builds from source with cmake-js. It never
// downloads anything, and it never fails the install: when it cannot build, it says why and the
// import will say what to do.
'use strict';
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const root = path.join(__dirname, '..');

function loadError() {
  try {
    require('node-gyp-build')(root);
    return null;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

function warn(message) {
  console.warn(`selective-scan: ${message}`);
}

function main() {
  const before = loadError();
  if (before === null) return;
  try {
    require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
    require.resolve('node-addon-api', { paths: [root] });
  } catch {
    warn(
      `no prebuilt binary loads here (${before.split('\n')[0]}), and a source build needs cmake-js and ` +
        'node-addon-api, which are not installed; nothing was built. Importing selective-scan will say what to do.',
    );
    return;
  }
  warn('no prebuilt binary loads here; building from source with cmake-js (cmake, a C++17 compiler, and nvcc for the GPU backend).');
  const result = spawnSync(process.execPath, [path.join(__dirname, 'build-native.js')], { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) {
    warn('the source build failed (see above); the install goes on, and importing selective-scan will say what to do.');
  }
}

main();
process.exit(0);
