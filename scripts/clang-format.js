// Formats the C++ and CUDA sources with the clang-format of the clang-format-node package (one
// pinned version, so that every machine agrees), style in .clang-format.
//   node scripts/clang-format.js           rewrites the files in place
//   node scripts/clang-format.js --check   lists the files that are not formatted, exits 1 if any

const { execFileSync, spawnSync } = require('node:child_process');
const path = require('node:path');
const { clangFormatPath } = require('clang-format-node');

const root = path.join(__dirname, '..');
const patterns = [
  'csrc/**/*.cc',
  'csrc/**/*.h',
  'csrc/**/*.cu',
  'csrc/**/*.cuh',
  'test/emulation/**/*.cc',
  'test/emulation/**/*.h',
  'test/emulation/**/*.cu',
  'test/native/**/*.cc',
  'bench/**/*.cc',
  'bench/**/*.c',
];
// Tracked files and new ones that git does not ignore.
const files = execFileSync(
  'git',
  ['ls-files', '--cached', '--others', '--exclude-standard', '--', ...patterns.map((p) => `:(glob)${p}`)],
  { cwd: root, encoding: 'utf8' },
)
  .split('\n')
  .filter(Boolean);

const check = process.argv.includes('--check');
const args = check ? ['--dry-run', '--Werror'] : ['-i'];
const result = spawnSync(clangFormatPath, [...args, ...files], { cwd: root, encoding: 'utf8' });
if (result.status !== 0) {
  const unformatted = [...new Set([...result.stderr.matchAll(/^([^\s:]+):\d+:\d+: error/gm)].map((m) => m[1]))];
  process.stderr.write(
    unformatted.length > 0
      ? `clang-format: not formatted (run \`npm run format\`):\n  ${unformatted.join('\n  ')}\n`
      : result.stderr,
  );
  process.exit(1);
}
if (!check) process.stdout.write(`clang-format: ${files.length} files\n`);
