// Mutation test of the emulator's detector of races between blocks (emulator.cc): each mutant is
// a copy of csrc/ with one deliberate cross-block race, built with build.mjs --csrc and run over
// every case; the emulator must report the race, naming the kernel. The first mutant is the one
// that motivated the detector: the backward's atomicAdd replaced by a plain `+=`, which gives the
// right sums when blocks run one after another and so passed every case before.
//
//   node test/emulation/mutants.mjs     (npm run test:mutants)
//
// Not part of `npm test`: build.mjs compiles another source tree in a directory of its own, so
// each mutant's first build compiles every unit again (~40 s of CPU each, as much as the main
// build); later runs find the objects and compile nothing. The copies live under
// build/emulation/mutants/ (a fixed path keeps their builds cached). Exit status 0 when every
// mutant is caught.
import { spawn } from 'node:child_process';
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildEmulator } from './build.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

// `from` must occur exactly once in `file` (relative to csrc/): a mutant that no longer applies is
// an error, not a pass. `report` is what the race fault must contain.
const MUTANTS = [
  {
    name: 'backward-plain-add',
    what: "default mode: the block's dB/dC sums added with a plain += instead of atomicAdd",
    file: 'ops/selective_scan/scan_backward.cu',
    from: 'atomicAdd(dst, sum);',
    to: '*dst += sum;',
    report: /race between blocks: .*\[in scanBackwardKernel/,
  },
  {
    name: 'deterministic-shared-partial',
    what: "deterministic mode: a block's dB partial indexed by its partition within the cell, not the global one",
    file: 'ops/selective_scan/scan_backward.cu',
    from: 'bp.deterministic ? args.dBVarying + (partition * batch + b) * N * L',
    to: 'bp.deterministic ? args.dBVarying + (partitionInCell * batch + b) * N * L',
    report: /race between blocks: write .*\[in scanBackwardKernel/,
  },
  {
    name: 'convert-grid-stride',
    what: 'dtype conversion: a grid-stride loop that strides by one block, so each block redoes the elements of the blocks after it',
    file: 'cuda/convert.cu',
    from: 'i += int64_t(gridDim.x) * kConvertThreads)',
    to: 'i += kConvertThreads)',
    report: /race between blocks: write .*\[in convertKernel/,
  },
];

/** Runs the binary's cases in `shards` processes; returns the parsed case lines. */
async function runCases(binary, shards) {
  const runs = Array.from(
    { length: shards },
    (_, shard) =>
      new Promise((resolveRun, reject) => {
        const child = spawn(binary, ['--shard', `${shard}/${shards}`], { stdio: ['ignore', 'pipe', 'ignore'] });
        let stdout = '';
        child.stdout.on('data', (d) => {
          stdout += d;
        });
        child.on('error', reject);
        child.on('close', () => resolveRun(stdout));
      }),
  );
  return (await Promise.all(runs))
    .flatMap((stdout) => stdout.split('\n'))
    .filter((line) => line.startsWith('{"group"'))
    .map((line) => JSON.parse(line));
}

let failures = 0;
for (const m of MUTANTS) {
  const started = Date.now();
  const csrc = join(root, 'build', 'emulation', 'mutants', m.name, 'csrc');
  rmSync(csrc, { recursive: true, force: true });
  cpSync(join(root, 'csrc'), csrc, { recursive: true });
  const file = join(csrc, m.file);
  const source = readFileSync(file, 'utf8');
  const occurrences = source.split(m.from).length - 1;
  if (occurrences !== 1) {
    console.error(`${m.name}: '${m.from}' occurs ${occurrences} times in csrc/${m.file}; update the mutant`);
    failures++;
    continue;
  }
  writeFileSync(file, source.replace(m.from, m.to));
  const build = await buildEmulator({ csrc });
  const cases = await runCases(build.binary, 2);
  const caught = cases.filter((c) => c.faults.some((f) => m.report.test(f)));
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (cases.length === 0 || caught.length === 0) {
    console.error(`${m.name} (${m.what}): NOT caught; ${cases.length} cases ran (${seconds} s)`);
    failures++;
  } else {
    console.log(
      `${m.name} (${m.what}): caught by ${caught.length} of ${cases.length} cases ` +
        `(${build.compiled} objects compiled, ${seconds} s), e.g.\n  ${caught[0].name}\n  ${caught[0].faults[0]}`,
    );
  }
}
process.exit(failures === 0 ? 0 : 1);
