#!/usr/bin/env node
// `npm pack` and `npm publish` run this first (the prepack script): they refuse to pack a package
// without the prebuilt binary, which would install without a word and then fail on import wherever
// nothing can be compiled. The binary must load here and carry every release architecture
// (CMakeLists.txt's release_cuda_architectures), or those of SELECTIVE_SCAN_PACK_ARCHS (e.g.
// "sm_90", for a quick package test of a binary built with CUDAARCHS=90-real).
'use strict';
const { checkPrebuilt, releaseArchitectures } = require('./prebuilt-binary.js');

const override = process.env.SELECTIVE_SCAN_PACK_ARCHS;
const architectures = override ? override.split(',') : releaseArchitectures();
const { problems, buildInfo } = checkPrebuilt(architectures);
if (problems.length) {
  console.error(
    `selective-scan: refusing to pack without a complete prebuilt binary:\n  ${problems.join('\n  ')}\n` +
      'Run `npm run prebuilds` first (it needs the CUDA toolkit; see README, Development). ' +
      'A package without it would install everywhere and fail on import where nothing can be compiled.',
  );
  process.exit(1);
}
// On stderr: `npm pack --json` passes the script's stdout on into its own.
process.stderr.write(
  `selective-scan: packing the prebuilt binary (CUDA ${buildInfo.cudaRuntime}: ${buildInfo.cudaArchitectures.join(' ')})\n`,
);
