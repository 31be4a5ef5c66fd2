// A throwaway project that depends on selective-scan as a user's would, for the tests that compile
// and run code against the package: the shipped types, the README's and docs/API.md's examples.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const ROOT = path.join(__dirname, '..', '..');
/** The project's TypeScript (devDependencies: TypeScript 7). */
export const TSC = path.join(ROOT, 'node_modules', '.bin', 'tsc');

export interface Consumer {
  dir: string;
  /** Runs tsc in the project; output is what it printed. */
  tsc(args: string[]): { ok: boolean; output: string };
  /** Runs a JavaScript file of the project with Node. */
  node(file: string): { ok: boolean; stdout: string; stderr: string };
  remove(): void;
}

/**
 * A project in a temporary folder, outside the repository (so that nothing of it, @types/node
 * included, is found by walking up), with `files` written into it. The package is either the
 * repository itself, linked as node_modules/selective-scan (it runs), or a copy of its
 * package.json and dist/ only (types alone, with no node_modules anywhere to fall back on).
 */
export function consumerProject(files: Record<string, string>, install: 'link' | 'copy-types'): Consumer {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'selective-scan-consumer-'));
  const installed = path.join(dir, 'node_modules', 'selective-scan');
  mkdirSync(path.dirname(installed), { recursive: true });
  if (install === 'link') {
    symlinkSync(ROOT, installed, 'dir');
  } else {
    cpSync(path.join(ROOT, 'dist'), path.join(installed, 'dist'), { recursive: true });
    cpSync(path.join(ROOT, 'package.json'), path.join(installed, 'package.json'));
  }
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), content);
  }
  return {
    dir,
    tsc(args) {
      const run = spawnSync(TSC, args, { cwd: dir, encoding: 'utf8' });
      return { ok: run.status === 0, output: `${run.stdout}${run.stderr}`.trim() };
    },
    node(file) {
      const run = spawnSync(process.execPath, [file], { cwd: dir, encoding: 'utf8' });
      return { ok: run.status === 0, stdout: run.stdout, stderr: run.stderr };
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
