#!/usr/bin/env node
// npm's install step for this package. The package ships a prebuilt binary (prebuilds/), which
// loads with no script run at all; this script only matters where none loads (another platform or
// libc, or a checkout without a build): then it builds from source (scripts/build-native.js, which
// says what a source build needs when something is missing). It never downloads anything, and it
// never fails the install: when it cannot build, the import will say what to do.
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

const reason = loadError();
if (reason !== null) {
  console.warn(`selective-scan: no prebuilt binary loads here (${reason.split('\n')[0]}); building from source.`);
  const result = spawnSync(process.execPath, [path.join(__dirname, 'build-native.js')], {
    cwd: root,
    stdio: 'inherit',
  });
  if (result.status !== 0) {
    console.warn(
      'selective-scan: nothing was built (see above); the install goes on, and importing selective-scan will say what to do.',
    );
  }
}
process.exit(0);
