#!/usr/bin/env node
// selective-scan benchmarks: each op's rows (bench/ops/) over the standard shapes, on the CPU and
// the GPU, with a roofline per row, comparisons (a plain JS loop, the PyTorch CPU baseline, the
// PyTorch sequential reference on the GPU), time against L (SVG), peak GPU memory, and agreement
// checks. `npm run bench -- --help` lists the options; bench/README.md describes what is measured.
import fs from 'node:fs';
import path from 'node:path';
import { HELP, parseOptions } from './lib/cli.mjs';
import { DeviceRun } from './lib/device-run.mjs';
import { findBaselineScript, findTorchPython } from './lib/env.mjs';
import { outputPaths, sweepPlot, writeResult } from './lib/results.mjs';
import { targetsFor } from './lib/targets.mjs';
import { torchInfo } from './lib/torch.mjs';
import { BENCH_OPS } from './ops/index.mjs';

/** Notes every result of a device kind carries. */
function deviceNotes(target) {
  if (target.kind === 'cpu')
    return [
      'CPU times are wall clock; the JS loop is one thread, float32 arrays, double arithmetic (bench/lib/jsref.mjs).',
      "The CPU copy bandwidth is one thread (the addon's host copy is a memmove), which understates a many-core machine's bandwidth and so overstates the fraction of the memory floor there.",
    ];
  if (target.simulated)
    return [
      'Simulated GPU: the GPU code path of this harness run on the CPU with tiny shapes; the numbers are CPU numbers.',
    ];
  return [];
}

async function main() {
  let o;
  let targets;
  try {
    o = parseOptions(process.argv.slice(2), BENCH_OPS);
    if (o.help) {
      console.log(HELP);
      return;
    }
    targets = targetsFor(o.devices, { simulate: o.simulate });
  } catch (e) {
    console.error(`bench: ${e.message}${o ? '' : `\n\n${HELP}`}`);
    process.exit(2);
  }
  const argText = process.argv.slice(2).join(' ');
  const command =
    process.env.npm_lifecycle_event === 'bench'
      ? `npm run bench${argText ? ` -- ${argText}` : ''}`
      : `node bench/bench.mjs${argText ? ` ${argText}` : ''}`;

  const torchPy = o.torch ? findTorchPython(o.python) : { python: null, tried: [] };
  const baselineScript = findBaselineScript();
  const torchWanted = o.torch;
  const triedPythons = torchPy.tried.map((t) => t.python).join(', ');
  if (o.torch && !torchPy.python) {
    console.error(`bench: no python3 with torch found (tried ${triedPythons}): the PyTorch columns are skipped`);
    o.torch = false;
  }

  let failedChecks = 0;
  let errors = 0;
  const written = [];
  const results = [];
  for (const target of targets) {
    const run = new DeviceRun(target, o, command, BENCH_OPS, { ...torchPy, baselineScript });
    const res = await run.run();
    res.torch = { ...res.torch, ...torchInfo(torchPy, baselineScript) };
    if (torchWanted && !torchPy.python)
      res.notes.push(`No python3 that can import torch was found (tried ${triedPythons}): PyTorch columns skipped.`);
    res.notes.push(...deviceNotes(target));
    failedChecks += res.checks.filter((c) => !c.pass).length;
    errors += res.errors.length;
    const paths = outputPaths(res, o, targets.length > 1);
    written.push(...writeResult(res, paths, o, BENCH_OPS));
    results.push({ res, paths });
  }
  // The GPU's plot also shows the CPU's sweep when both ran in this invocation.
  const cpuRes = results.find((r) => r.res.device.kind === 'cpu')?.res;
  if (o.plot && o.save && cpuRes) {
    for (const { res, paths } of results) {
      if (res.device.kind === 'cpu' || !res.sweep?.plot) continue;
      const svg = sweepPlot(res, cpuRes);
      if (svg) fs.writeFileSync(paths.svg, svg);
    }
  }
  if (written.length) console.error(`bench: wrote ${written.map((p) => path.relative(process.cwd(), p)).join(', ')}`);
  if (failedChecks) {
    console.error(`bench: ${failedChecks} agreement check(s) FAILED (see the tables)`);
    process.exitCode = 3;
  }
  if (errors) {
    console.error(`bench: ${errors} case(s) threw (see "Errors" in the report)`);
    process.exitCode = 4;
  }
}

await main();
