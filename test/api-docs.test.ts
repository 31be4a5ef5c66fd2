// docs/API.md cannot go stale: its TypeScript blocks compile against the package (tsc --strict,
// as a user's ES module), the example programs run, the signatures it writes out have the types of
// the package's own (each assignable to the other), and its list of exported names is the list.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as api from './helpers/api.js';
import { consumerProject, ROOT } from './helpers/consumer.js';

const DOC = 'docs/API.md';
const text = readFileSync(path.join(ROOT, DOC), 'utf8');

interface Block {
  /** The line of docs/API.md where the block's code starts. */
  line: number;
  code: string;
}
const blocks: Block[] = [...text.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => ({
  line: text.slice(0, m.index).split('\n').length + 1,
  code: m[1],
}));
// Programs start with an import; the other blocks write out signatures and types.
const programs = blocks.filter((b) => b.code.startsWith('import '));
const declarations = blocks.filter((b) => !b.code.startsWith('import '));

// "## Exported types": the types, then (after "the values") the values; remarks in parentheses.
const exportedSection = /## Exported types\n([\s\S]*?)\n## /.exec(text)?.[1] ?? '';
const [typesPart, valuesPart] = exportedSection.replace(/\([^)]*\)/g, '').split('the values');
const names = (part = '') => [...part.matchAll(/`(\w+)`/g)].map((m) => m[1]);
const exportedTypes = names(typesPart);
const exportedValues = names(valuesPart);

/** A generated source file whose lines map back to lines of docs/API.md (0: generated). */
interface Generated {
  name: string;
  lines: string[];
  docLines: number[];
}
function generated(name: string): Generated {
  return { name, lines: [], docLines: [] };
}
function add(file: Generated, code: string, docLine = 0) {
  code
    .replace(/\n$/, '')
    .split('\n')
    .forEach((line, i) => {
      file.lines.push(line);
      file.docLines.push(docLine ? docLine + i : 0);
    });
}

// Each program as its own module.
const programFiles = programs.map((block) => {
  const file = generated(`program-${block.line}.mts`);
  add(file, block.code, block.line);
  return file;
});

// The written-out signatures inside `declare namespace Documented`, each name checked against the
// package's: a function or constant by its type, a type alias as a type.
const declared = generated('declared.mts');
add(declared, "import * as api from 'selective-scan';");
add(declared, `import type { ${[...exportedTypes, ...exportedValues].join(', ')} } from 'selective-scan';`);
add(declared, 'type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;');
add(declared, 'declare namespace Documented {');
/** Names the blocks declare, with the line of docs/API.md that declares each. */
const documentedValues: [string, number][] = [];
const documentedTypes: [string, number][] = [];
for (const block of declarations) {
  add(declared, block.code, block.line);
  block.code.split('\n').forEach((line, i) => {
    const value = /^(?:function|const) (\w+)/.exec(line)?.[1];
    const type = /^type (\w+)/.exec(line)?.[1];
    if (value) documentedValues.push([value, block.line + i]);
    if (type) documentedTypes.push([type, block.line + i]);
  });
}
add(declared, '}');
// A mismatch is reported at the line of the signature: "Type 'true' is not assignable to type 'false'".
for (const [name, line] of documentedValues) {
  add(declared, `export const same_${name}: Same<typeof Documented.${name}, typeof api.${name}> = true;`, line);
}
for (const [name, line] of documentedTypes) {
  add(declared, `export const same_${name}: Same<Documented.${name}, api.${name}> = true;`, line);
}

/** tsc's output with every position in a generated file given as docs/API.md:LINE too. */
function mapToDoc(output: string, files: Generated[]): string {
  return output.replace(/^(\S+?)\((\d+),(\d+)\)/gm, (whole, name: string, line: string) => {
    const file = files.find((f) => f.name === name);
    const docLine = file?.docLines[Number(line) - 1];
    return docLine ? `${DOC}:${docLine} (${whole})` : whole;
  });
}

describe('docs/API.md', () => {
  const files = [...programFiles, declared];
  const project = consumerProject(
    {
      'package.json': '{ "name": "api-docs", "private": true }',
      // As the page says: `using` needs lib esnext.disposable and compiles for Node 20 at es2022.
      'tsconfig.json': JSON.stringify({
        compilerOptions: {
          strict: true,
          module: 'nodenext',
          target: 'es2022',
          lib: ['es2022', 'esnext.disposable'],
          types: ['node'],
          typeRoots: [path.join(ROOT, 'node_modules', '@types')],
          outDir: 'out',
        },
        files: files.map((f) => f.name),
      }),
      ...Object.fromEntries(files.map((f) => [f.name, `${f.lines.join('\n')}\n`])),
    },
    'link',
  );
  afterAll(() => project.remove());

  it('has example programs and written-out signatures', () => {
    expect(programs.length).toBeGreaterThanOrEqual(7);
    expect(documentedValues.map(([name]) => name)).toEqual(
      expect.arrayContaining(['selectiveScan', 'selectiveScanBackward', 'selectiveStateUpdate', 'cuda', 'buildInfo']),
    );
    expect(documentedTypes.map(([name]) => name)).toEqual(expect.arrayContaining(['DType', 'DeviceSpec', 'Device']));
  });

  it('lists exactly the values the package exports', () => {
    expect([...exportedValues].sort()).toEqual(Object.keys(api).sort());
  });

  it("compiles: every example, and every signature matches the package's", () => {
    const { ok, output } = project.tsc(['-p', '.']);
    expect(mapToDoc(output, files)).toBe('');
    expect(ok).toBe(true);
  });

  for (const [i, block] of programs.entries()) {
    it(`runs the example at ${DOC}:${block.line}`, () => {
      const run = project.node(path.join('out', programFiles[i].name.replace(/\.mts$/, '.mjs')));
      expect(run.stderr).toBe('');
      expect(run.ok).toBe(true);
    });
  }
});
