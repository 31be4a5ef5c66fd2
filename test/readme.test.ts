// The README's TypeScript example runs as written (on the GPU where there is one, else the CPU),
// so the first thing a user copies keeps working.
import { readFileSync, writeFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const readme = readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
const example = /```ts\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';

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

  it('runs its example, which produces finite values', async () => {
    // The example ends by binding y; export what we check.
    const file = path.join(__dirname, `.readme-example-${process.pid}.ts`);
    writeFileSync(file, `${example}\nexport { y, dA, out };\n`);
    try {
      const m = await import(file);
      const [y, dA, out] = [m.y.dataSync(), m.dA.dataSync(), m.out.dataSync()];
      expect(y.length).toBe(2 * 64);
      expect(dA.length).toBe(64 * 16);
      expect(out.length).toBe(2 * 64 * 128);
      for (const values of [y, dA, out]) expect(values.every(Number.isFinite)).toBe(true);
    } finally {
      rmSync(file, { force: true });
    }
  });
});
