// What the prebuilt binary that ships in the package must be, in one place, for the scripts that
// make it (prebuilds.js), refuse to pack without it (prepack.js) and test the packed package
// (test/package/pack-test.mjs). The architecture list has one home: release_cuda_architectures in
// CMakeLists.txt.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const root = path.join(__dirname, '..');

/** The platform the package ships a binary for (package.json "os" says linux). */
const RELEASE_PLATFORM = 'linux-x64';

/** A CMake architecture list as buildInfo() names it: "90-real" -> sm_90, "120" -> sm_120 and compute_120. */
function architectureNames(cmakeList) {
  return cmakeList
    .split(/[;,]/)
    .filter(Boolean)
    .flatMap((arch) => {
      const number = /^\d+[a-z]?/.exec(arch)?.[0];
      if (!number) throw new RangeError(`not a CUDA architecture: '${arch}'`);
      if (arch.endsWith('-real')) return [`sm_${number}`];
      if (arch.endsWith('-virtual')) return [`compute_${number}`];
      return [`sm_${number}`, `compute_${number}`];
    });
}

/** The architectures of the release build (CMakeLists.txt), as buildInfo() names them. */
function releaseArchitectures() {
  const cmake = fs.readFileSync(path.join(root, 'CMakeLists.txt'), 'utf8');
  const list = /set\(release_cuda_architectures "([^"]+)"\)/.exec(cmake);
  if (!list) throw new Error('CMakeLists.txt has no release_cuda_architectures');
  return architectureNames(list[1]);
}

/** The binaries in prebuilds/<platform>/, as paths. */
function prebuiltBinaries(platform = RELEASE_PLATFORM) {
  const dir = path.join(root, 'prebuilds', platform);
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((file) => file.endsWith('.node'))
    .map((file) => path.join(dir, file));
}

/** Loads a binary in a fresh process: { buildInfo } or { error } (the loader's message). */
function inspectBinary(binary) {
  const probe = spawnSync(
    process.execPath,
    [
      '-e',
      `const m = { exports: {} };
      try { process.dlopen(m, ${JSON.stringify(binary)}); } catch (e) { console.error(e.message); process.exit(1); }
      console.log(JSON.stringify(m.exports.buildInfo()));`,
    ],
    { encoding: 'utf8' },
  );
  if (probe.status !== 0) return { error: probe.stderr.trim() || `exit status ${probe.status}` };
  return { buildInfo: JSON.parse(probe.stdout.trim().split('\n').pop()) };
}

/**
 * What is wrong with the prebuilt binary of the release platform, as sentences (none: it is fit to
 * ship): there must be exactly one, it must load, have the CUDA backend and carry `architectures`.
 * Also returns what it found.
 */
function checkPrebuilt(architectures = releaseArchitectures()) {
  const where = path.join('prebuilds', RELEASE_PLATFORM);
  const binaries = prebuiltBinaries();
  if (binaries.length !== 1) {
    const found = binaries.length ? `${binaries.length} binaries` : 'no binary';
    return { problems: [`${where}/ holds ${found}; the package ships exactly one`], binaries };
  }
  const [binary] = binaries;
  const name = path.relative(root, binary);
  if (`${process.platform}-${process.arch}` !== RELEASE_PLATFORM) {
    return { problems: [`${name} can only be checked on ${RELEASE_PLATFORM}`], binaries };
  }
  const { buildInfo, error } = inspectBinary(binary);
  if (error) return { problems: [`${name} does not load: ${error}`], binaries };
  const problems = [];
  if (!buildInfo.cuda) problems.push(`${name} has no CUDA backend (built without nvcc?)`);
  const missing = architectures.filter((arch) => !buildInfo.cudaArchitectures.includes(arch));
  if (missing.length) {
    problems.push(`${name} lacks ${missing.join(', ')} (it has ${buildInfo.cudaArchitectures.join(', ') || 'none'})`);
  }
  return { problems, binaries, buildInfo };
}

module.exports = {
  RELEASE_PLATFORM,
  architectureNames,
  releaseArchitectures,
  prebuiltBinaries,
  inspectBinary,
  checkPrebuilt,
};
