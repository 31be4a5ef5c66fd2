#!/usr/bin/env node
// Prints the description of a device as JSON, or one field of it, for bench/gpu-session.sh:
//   node bench/device-info.mjs [cpu|cuda|cuda:N] [--field slug]
// With no device: the first GPU when cuda.isAvailable(), else the CPU.
import { cuda } from 'selective-scan';
import { describeDevice, resultHeader } from './lib/device.mjs';
import { makeTarget } from './lib/targets.mjs';

const args = process.argv.slice(2);
const fieldAt = args.indexOf('--field');
const field = fieldAt >= 0 ? args[fieldAt + 1] : null;
const spec = args.find((a, i) => !a.startsWith('--') && i !== fieldAt + 1) ?? (cuda.isAvailable() ? 'cuda' : 'cpu');
const target = makeTarget(spec);
if (field === 'header') {
  console.log(
    JSON.stringify(resultHeader(process.env.RESULT_WHAT ?? 'tests', target, process.env.RESULT_COMMAND ?? null)),
  );
} else {
  const info = describeDevice(target);
  console.log(field ? String(info[field] ?? '') : JSON.stringify(info, null, 2));
}
