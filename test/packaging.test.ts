// The packaging paths a user or a maintainer takes, short of packing and installing for real
// (`npm run test:package` does that): `npm pack` from a clone refuses to pack without the prebuilt
// binary; the import's error says what is missing; a source build picks its CUDA architectures.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildInfo } from './helpers/api.js';
import { ROOT } from './helpers/consumer.js';

const temporary: string[] = [];
afterAll(() => {
  for (const dir of temporary) rmSync(dir, { recursive: true, force: true });
});
function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'selective-scan-packaging-'));
  temporary.push(dir);
  return dir;
}
function put(file: string, content: string | Buffer) {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, content);
}
/** The binary the tests load: a source build, or after `npm run prebuilds`, the prebuilt one. */
const loadedAddon: string = require('node-gyp-build').resolve(ROOT);

describe('npm pack from a clone', () => {
  // What prepack reads: package.json, CMakeLists.txt (the release architectures), scripts/.
  function clone(): string {
    const dir = tempDir();
    for (const entry of ['package.json', 'CMakeLists.txt', 'scripts']) {
      cpSync(path.join(ROOT, entry), path.join(dir, entry), { recursive: true });
    }
    return dir;
  }
  const prepack = (dir: string, env: Record<string, string> = {}) =>
    spawnSync(process.execPath, ['scripts/prepack.js'], {
      cwd: dir,
      env: { ...process.env, ...env },
      encoding: 'utf8',
    });

  it('refuses without a prebuilt binary, and says to run npm run prebuilds', () => {
    const run = spawnSync('npm', ['pack', '--dry-run'], { cwd: clone(), encoding: 'utf8' });
    expect(run.status).not.toBe(0);
    expect(run.stdout + run.stderr).toContain('prebuilds/linux-x64/ holds no binary');
    expect(run.stdout + run.stderr).toContain('Run `npm run prebuilds` first');
  });

  it('refuses a binary that does not load', () => {
    const dir = clone();
    put(path.join(dir, 'prebuilds', 'linux-x64', 'selective-scan.glibc.node'), 'not a shared library'.repeat(8));
    const run = prepack(dir);
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/selective-scan\.glibc\.node does not load: .*invalid ELF header/);
  });

  it('refuses a binary without every release architecture, and takes one that has them', () => {
    const dir = clone();
    cpSync(loadedAddon, path.join(dir, 'prebuilds', 'linux-x64', 'selective-scan.glibc.node'));
    const lacking = prepack(dir, { SELECTIVE_SCAN_PACK_ARCHS: 'sm_90,sm_999' });
    expect(lacking.status).toBe(1);
    expect(lacking.stderr).toContain('lacks sm_999');
    if (buildInfo().cuda) {
      const own = prepack(dir, { SELECTIVE_SCAN_PACK_ARCHS: buildInfo().cudaArchitectures.join(',') });
      expect(own.status).toBe(0);
      expect(own.stdout).toBe('');
      expect(own.stderr).toMatch(/^selective-scan: packing the prebuilt binary \(CUDA [\d.]+: sm_\d+/);
    } else {
      expect(lacking.stderr).toContain('has no CUDA backend');
    }
  });

  it('reads the release architectures from CMakeLists.txt', () => {
    const { architectureNames, releaseArchitectures } = require(path.join(ROOT, 'scripts', 'prebuilt-binary.js'));
    const cmake = readFileSync(path.join(ROOT, 'CMakeLists.txt'), 'utf8');
    const list = /set\(release_cuda_architectures "([^"]+)"\)/.exec(cmake)?.[1] ?? '';
    expect(releaseArchitectures()).toEqual(architectureNames(list));
    expect(architectureNames('75-real;90-virtual;120')).toEqual(['sm_75', 'compute_90', 'sm_120', 'compute_120']);
  });
});

describe('the error of an import without a loadable addon', () => {
  // The loader itself (not public API): a package folder of our making instead of the real one.
  const { loadAddon } = require(path.join(ROOT, 'dist', 'load-addon.js')) as {
    loadAddon(packageRoot: string): unknown;
  };
  function loadError(packageRoot: string): string {
    put(path.join(packageRoot, 'package.json'), '{ "name": "selective-scan" }');
    try {
      loadAddon(packageRoot);
    } catch (error) {
      return (error as Error).message;
    }
    throw new Error('the addon loaded');
  }

  it('says that the package carries no prebuilt binary and that nothing was built', () => {
    const message = loadError(tempDir());
    expect(message).toContain(`no native addon for ${process.platform}-${process.arch}`);
    expect(message).toContain('no prebuilt binary: this copy of the package carries none');
    expect(message).toContain('no source build: cmake-js and node-addon-api, which it needs, are not installed');
    expect(message).toContain('npm install --save-dev cmake-js node-addon-api node-api-headers');
  });

  it('names the platforms it has binaries for, and a source build that did not finish', () => {
    const dir = tempDir();
    put(path.join(dir, 'prebuilds', 'sunos-sparc', 'selective-scan.node'), '');
    mkdirSync(path.join(dir, 'build', 'cmake'), { recursive: true });
    const message = loadError(dir);
    expect(message).toContain('no prebuilt binary for this platform: the package carries prebuilds/sunos-sparc/');
    expect(message).toContain('a source build was started (build/cmake exists) but made no binary');
  });

  it("gives the dynamic loader's message for a prebuilt binary that does not load", () => {
    const dir = tempDir();
    put(
      path.join(dir, 'prebuilds', `${process.platform}-${process.arch}`, 'selective-scan.glibc.node'),
      'not ELF'.repeat(20),
    );
    const message = loadError(dir);
    expect(message).toMatch(/selective-scan\.glibc\.node \(the prebuilt binary\) does not load on/);
    expect(message).toContain('invalid ELF header');
    expect(message).toContain('npm rebuild selective-scan --foreground-scripts');
  });

  it('says when a source build shadows a prebuilt binary', () => {
    const dir = tempDir();
    put(
      path.join(dir, 'prebuilds', `${process.platform}-${process.arch}`, 'selective-scan.glibc.node'),
      'not ELF'.repeat(20),
    );
    put(path.join(dir, 'build', 'Release', 'selective_scan.node'), 'not ELF'.repeat(20));
    const message = loadError(dir);
    expect(message).toContain('(built from source) does not load');
    expect(message).toContain('A source build takes precedence over the prebuilt binary');
  });

  // A real shared library that asks for a glibc from the future: its version string patched.
  const cc = spawnSync('cc', ['--version']).status === 0;
  it.skipIf(!cc)('says when the C library is too old (skipped without a C compiler)', () => {
    const dir = tempDir();
    const source = path.join(dir, 'needs.c');
    const library = path.join(dir, 'needs.so');
    put(source, '#include <string.h>\nvoid copy(char *d, const char *s, size_t n) { memcpy(d, s, n); }\n');
    execFileSync('cc', ['-shared', '-fPIC', '-O0', '-fno-builtin', source, '-o', library]);
    const bytes = readFileSync(library);
    const patched = Buffer.from(bytes.toString('latin1').replace(/GLIBC_2\.(\d+)/g, 'GLIBC_9.$1'), 'latin1');
    expect(patched.equals(bytes)).toBe(false);
    put(path.join(dir, 'prebuilds', `${process.platform}-${process.arch}`, 'selective-scan.glibc.node'), patched);
    const message = loadError(dir);
    expect(message).toMatch(/version `GLIBC_9\.[\d.]+' not found/);
    expect(message).toMatch(
      /The C library is too old: the binary needs glibc 9\.[\d.]+ or newer, this system has glibc 2\.\d+/,
    );
  });
});

describe('the CUDA architectures of a source build', () => {
  const { chooseCudaArchitectures } = require(path.join(ROOT, 'scripts', 'build-native.js'));
  /** A stand-in for nvidia-smi that prints `output` and exits with `status`. */
  function fakeNvidiaSmi(output: string, status = 0): string {
    const file = path.join(tempDir(), 'nvidia-smi');
    put(file, `#!/bin/sh\nprintf '${output}'\nexit ${status}\n`);
    chmodSync(file, 0o755);
    return file;
  }

  it("are the local GPUs' when nvidia-smi finds any", () => {
    expect(chooseCudaArchitectures({}, fakeNvidiaSmi('9.0\\n'))).toEqual({
      architectures: '90',
      source: 'the local GPU, from nvidia-smi',
    });
    expect(chooseCudaArchitectures({}, fakeNvidiaSmi('12.0\\n8.6\\n12.0\\n')).architectures).toBe('86;120');
  });

  it('are the release list where there is no GPU (null: CMakeLists.txt decides)', () => {
    expect(chooseCudaArchitectures({}, fakeNvidiaSmi('No devices were found\\n', 6)).architectures).toBeNull();
    expect(chooseCudaArchitectures({}, fakeNvidiaSmi('[N/A]\\n')).architectures).toBeNull();
    expect(chooseCudaArchitectures({}, path.join(tempDir(), 'absent')).architectures).toBeNull();
  });

  it('are CUDAARCHS when set, and the release list for the release build', () => {
    const gpu = fakeNvidiaSmi('9.0\\n');
    expect(chooseCudaArchitectures({ CUDAARCHS: '80-real;90' }, gpu).architectures).toBe('80-real;90');
    expect(chooseCudaArchitectures({ SELECTIVE_SCAN_RELEASE: '1' }, gpu).architectures).toBeNull();
  });
});
