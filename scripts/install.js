#!/usr/bin/env node
// npm's install step for this package: use the binary that is already there (a prebuild shipped in
// the package, or an earlier build), and build from source with cmake-js only when none loads.
'use strict';
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const root = path.join(__dirname, '..');

function loads() {
  try {
    require('node-gyp-build')(root);
    return true;
  } catch {
    return false;
  }
}

if (loads()) process.exit(0);

try {
  require.resolve('cmake-js/bin/cmake-js', { paths: [root] });
} catch {
  console.warn('selective-scan: no prebuilt binary loads here and cmake-js is not installed, so nothing was built.');
  process.exit(0);
}
const result = spawnSync(process.execPath, [path.join(__dirname, 'build-native.js')], { cwd: root, stdio: 'inherit' });
process.exit(result.status === 0 ? 0 : 1);
