// Finds and loads the native addon, as node-gyp-build does (a source build in build/Release first,
// then prebuilds/<platform>-<arch>/), and when that fails, says which of these went wrong: no
// binary at all (none shipped for this platform, none built here, and why not), or a binary that
// exists but does not load (the dynamic loader's message, and whether the C library is too old).
import fs from 'node:fs';
import path from 'node:path';

interface NodeGypBuild {
  /** The path of the binary to load; throws when there is none. */
  resolve(dir: string): string;
}

const BUILD_FROM_SOURCE =
  'A source build needs cmake 3.25 or newer, a C++17 compiler (g++ 9 or newer), the CUDA toolkit 13.0 or newer ' +
  'for the GPU backend (optional), and three packages:\n' +
  '  npm install --save-dev cmake-js node-addon-api node-api-headers\n' +
  '  npm install-scripts approve selective-scan    # npm 11 skips install scripts it has not approved\n' +
  '  npm rebuild selective-scan --foreground-scripts';

export function loadAddon<T>(packageRoot: string): T {
  const nodeGypBuild = require('node-gyp-build') as NodeGypBuild;
  let file: string;
  try {
    file = nodeGypBuild.resolve(packageRoot);
  } catch (error) {
    throw new Error(noBinaryMessage(packageRoot, messageOf(error)));
  }
  try {
    return require(file) as T;
  } catch (error) {
    throw new Error(loadFailedMessage(packageRoot, file, messageOf(error)));
  }
}

function messageOf(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).trim();
}

/** The C library's version where it is glibc (process.report knows it). */
function glibcVersion(): string | undefined {
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
  return report?.header?.glibcVersionRuntime;
}

/** This machine as the binaries care about it: "linux-x64, glibc 2.36, Node v20.20.2". */
function describeSystem(glibc: string | undefined): string {
  return [`${process.platform}-${process.arch}`, glibc ? `glibc ${glibc}` : '', `Node ${process.version}`]
    .filter(Boolean)
    .join(', ');
}

function readdir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

/** The prebuilt binaries this copy of the package carries, as "<platform>-<arch>/<file>". */
function prebuiltBinaries(packageRoot: string): string[] {
  const prebuilds = path.join(packageRoot, 'prebuilds');
  return readdir(prebuilds).flatMap((platform) =>
    readdir(path.join(prebuilds, platform))
      .filter((file) => file.endsWith('.node'))
      .map((file) => `${platform}/${file}`),
  );
}

function resolvable(name: string, packageRoot: string): boolean {
  try {
    require.resolve(`${name}/package.json`, { paths: [packageRoot] });
    return true;
  } catch {
    return false;
  }
}

function noBinaryMessage(packageRoot: string, loaderMessage: string): string {
  const prebuilt = prebuiltBinaries(packageRoot);
  const noPrebuilt = prebuilt.length
    ? `no prebuilt binary for this platform: the package carries ${prebuilt.map((p) => `prebuilds/${p}`).join(', ')} only`
    : 'no prebuilt binary: this copy of the package carries none (no prebuilds/ folder; it was packed without ' +
      '`npm run prebuilds`)';
  let noSourceBuild: string;
  if (fs.existsSync(path.join(packageRoot, 'build', 'cmake'))) {
    noSourceBuild =
      'a source build was started (build/cmake exists) but made no binary; `npm rebuild selective-scan --foreground-scripts` shows why';
  } else if (!resolvable('cmake-js', packageRoot) || !resolvable('node-addon-api', packageRoot)) {
    noSourceBuild = 'no source build: cmake-js and node-addon-api, which it needs, are not installed';
  } else {
    noSourceBuild =
      'no source build: the install script that makes one did not run (npm 11 skips install scripts it has not ' +
      'approved; --ignore-scripts skips all)';
  }
  return (
    `selective-scan: no native addon for ${describeSystem(glibcVersion())}:\n` +
    `- ${noPrebuilt};\n- ${noSourceBuild}.\n` +
    `(node-gyp-build: ${loaderMessage.split('\n')[0]})\n\n${BUILD_FROM_SOURCE}`
  );
}

function loadFailedMessage(packageRoot: string, file: string, loaderMessage: string): string {
  const relative = path.relative(packageRoot, file);
  const prebuilt = relative.startsWith(`prebuilds${path.sep}`);
  const glibc = glibcVersion();
  const lines = [
    `selective-scan: its native addon ${relative} (${prebuilt ? 'the prebuilt binary' : 'built from source'}) ` +
      `does not load on ${describeSystem(glibc)}:`,
    `  ${loaderMessage.split('\n').join('\n  ')}`,
  ];
  const neededGlibc = /GLIBC_(\d+(?:\.\d+)+)'? not found/.exec(loaderMessage)?.[1];
  if (neededGlibc) {
    lines.push(
      `The C library is too old: the binary needs glibc ${neededGlibc} or newer, this system has ` +
        `${glibc ? `glibc ${glibc}` : 'an older one'}.`,
    );
  }
  if (prebuilt) {
    lines.push(
      'The published binary needs Linux x64 with glibc 2.28 or newer. Where it does not load, build from source.',
      BUILD_FROM_SOURCE,
    );
  } else {
    lines.push(
      'Rebuild it (after a change of Node, compiler or system): npm rebuild selective-scan --foreground-scripts ' +
        '(in a clone of the repository: npm run build:native)',
    );
    const own = `${process.platform}-${process.arch}/`;
    if (prebuiltBinaries(packageRoot).some((p) => p.startsWith(own))) {
      lines.push(
        `A source build takes precedence over the prebuilt binary; remove ${path.join(packageRoot, 'build')} to use the prebuilt one.`,
      );
    }
  }
  return lines.join('\n');
}
