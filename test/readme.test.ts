// The README's TypeScript example runs as written (on the GPU where there is one, else the CPU),
// as an ES module and as CommonJS, and prints what the README says it prints: the first thing a
// user copies keeps working.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cuda } from './helpers/api.js';
import { consumerProject } from './helpers/consumer.js';

const readme = readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
const exampleBlock = /```ts\n([\s\S]*?)```\n/.exec(readme);
const example = exampleBlock?.[1] ?? '';
// The plain block after the example: what it prints.
const printed = /```\n([\s\S]*?)```/.exec(
  readme.slice((exampleBlock?.index ?? 0) + (exampleBlock?.[0].length ?? 0)),
)?.[1];

// The Mamba-2 example (the first TypeScript block under '### Mamba-2') and the plain block after it.
const mamba2Start = readme.indexOf('### Mamba-2');
const mamba2Block = /```ts\n([\s\S]*?)```\n/.exec(readme.slice(mamba2Start));
const mamba2 = mamba2Block?.[1] ?? '';
const mamba2Printed = /```\n([\s\S]*?)```/.exec(
  readme.slice(mamba2Start + (mamba2Block?.index ?? 0) + (mamba2Block?.[0].length ?? 0)),
)?.[1];

const NUMBER = String.raw`-?\d+\.\d{4}`;
const FOUR = `${NUMBER}( ${NUMBER}){3}`;
/** The lines the example prints, on `device`. */
function expectedLines(device: string): RegExp[] {
  const t = (shape: string, dtype: string) => String.raw`Tensor\(\[${shape}\], ${dtype}, ${device}\)`;
  return [
    new RegExp(`^forward: out ${t('2, 64, 128', 'bfloat16')}, lastState ${t('2, 64, 16', 'float32')}$`),
    new RegExp(`^backward: du ${t('2, 64, 128', 'bfloat16')}, dD ${t('64', 'float32')}, dA\\[0\\.\\.3\\] = ${FOUR}$`),
    new RegExp(`^step: y ${t('2, 64', 'bfloat16')}, y\\[0\\.\\.3\\] = ${FOUR}$`),
  ];
}

function expectPrinted(output: string, device: string) {
  const lines = output.trim().split('\n');
  const patterns = expectedLines(device);
  expect(lines.length, output).toBe(patterns.length);
  for (const [i, pattern] of patterns.entries()) expect(lines[i]).toMatch(pattern);
}

describe('README', () => {
  it('has a TypeScript example that uses forward, backward and the stepwise update', () => {
    for (const name of ['selectiveScan(', 'selectiveScanBackward(', 'selectiveStateUpdate(']) {
      expect(example).toContain(name);
    }
  });

  it('shows the two commands for a fresh machine', () => {
    expect(readme).toMatch(/npm install\s/);
    expect(readme).toMatch(/npm test\s/);
  });

  it('shows what its example prints', () => {
    expect(printed).toBeDefined();
    expectPrinted(printed ?? '', 'cpu');
  });

  it('has a Mamba-2 example that uses ssdScan, its backward and the heads-form step, and shows what it prints', () => {
    expect(mamba2Start).toBeGreaterThan(0);
    for (const name of ['ssdScan(', 'ssdScanBackward(', 'selectiveStateUpdate(']) expect(mamba2).toContain(name);
    expect(mamba2Printed).toBeDefined();
  });

  describe('its Mamba-2 example (CPU), compiled with tsc --strict --module nodenext', () => {
    const project = consumerProject(
      {
        'package.json': '{ "name": "readme-mamba2", "private": true }',
        'tsconfig.json': JSON.stringify({
          compilerOptions: { strict: true, module: 'nodenext', outDir: 'out' },
          files: ['mamba2.mts'],
        }),
        'mamba2.mts': mamba2,
      },
      'link',
    );
    afterAll(() => project.remove());

    it('compiles, runs and prints what the README shows', () => {
      const { ok, output } = project.tsc(['-p', '.']);
      expect(output).toBe('');
      expect(ok).toBe(true);
      const run = project.node('out/mamba2.mjs');
      expect(run.stderr).toBe('');
      expect(run.ok).toBe(true);
      expect(run.stdout.trim()).toBe((mamba2Printed ?? '').trim());
    });
  });

  describe('its example, compiled with tsc --strict --module nodenext', () => {
    const project = consumerProject(
      {
        'package.json': '{ "name": "readme-example", "private": true }',
        'tsconfig.json': JSON.stringify({
          compilerOptions: { strict: true, module: 'nodenext', outDir: 'out' },
          files: ['example.mts', 'example.cts'],
        }),
        'example.mts': example,
        'example.cts': example,
      },
      'link',
    );
    afterAll(() => project.remove());
    const device = cuda.isAvailable() ? 'cuda:0' : 'cpu';

    it('compiles', () => {
      const { ok, output } = project.tsc(['-p', '.']);
      expect(output).toBe('');
      expect(ok).toBe(true);
      // Really one module of each kind.
      expect(readFileSync(path.join(project.dir, 'out', 'example.cjs'), 'utf8')).toContain('require("selective-scan")');
      expect(readFileSync(path.join(project.dir, 'out', 'example.mjs'), 'utf8')).toContain("from 'selective-scan'");
    });

    for (const [kind, file] of [
      ['ES module', 'out/example.mjs'],
      ['CommonJS', 'out/example.cjs'],
    ]) {
      it(`runs as ${kind} and prints what it computed`, () => {
        const run = project.node(file);
        expect(run.stderr).toBe('');
        expect(run.ok).toBe(true);
        expectPrinted(run.stdout, device);
      });
    }
  });
});
