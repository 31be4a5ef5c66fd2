// A run's files: <name>.json, the markdown report as <name>.md, and the plot of time against L as <name>.svg.
import fs from 'node:fs';
import path from 'node:path';
import { markdownReport } from './report.mjs';
import { timeVsLengthSvg } from './svg.mjs';

/** The plot's series: ours and PyTorch's along the sweep; a CPU sweep of the same invocation joins a GPU's. */
function plotSeries(res, extra = null) {
  const sw = res.sweep;
  if (!sw?.points.length) return null;
  const where = res.device.kind === 'cpu' ? 'CPU' : res.device.kind === 'simulated-gpu' ? 'sim. GPU' : 'GPU';
  const tname = res.device.kind === 'cpu' ? 'PyTorch CPU' : 'PyTorch ref';
  const series = (r, w, t, colors, dashOurs, dim) => {
    const pts = (f) => r.sweep.points.filter((p) => f(p)).map((p) => [p.L, f(p)]);
    return [
      { label: `ours fwd (${w}${dim})`, points: pts((p) => p.fwdMs), color: colors[0], dash: dashOurs },
      { label: `ours bwd (${w}${dim})`, points: pts((p) => p.bwdMs), color: colors[1], dash: dashOurs },
      {
        label: `${t} fwd${dim ? ` (${dim.slice(2)})` : ''}`,
        points: pts((p) => p.torch?.fwdMs),
        color: colors[0],
        dash: 'dashed',
      },
      {
        label: `${t} fwd+bwd${dim ? ` (${dim.slice(2)})` : ''}`,
        points: pts((p) => p.torch?.fwdBwdMs),
        color: colors[2],
        dash: 'dashed',
      },
    ];
  };
  const out = series(res, where, tname, ['#1f77b4', '#d62728', '#9467bd'], 'solid', '');
  // The CPU's dim is named where it differs.
  if (extra?.sweep?.points.length && extra !== res) {
    const dim =
      extra.sweep.dim !== sw.dim || extra.sweep.batch !== sw.batch ? `, ${extra.sweep.batch}×${extra.sweep.dim}` : '';
    out.push(
      ...series(extra, 'CPU', 'PyTorch CPU', ['#2ca02c', '#ff7f0e', '#8c564b'], 'dotted', dim).map((x) => ({
        ...x,
        dash: x.dash === 'dashed' ? 'dashed' : 'dotted',
      })),
    );
  }
  return out;
}

/** The SVG of res's sweep (and extra's, a CPU run beside a GPU's), or null without a sweep. */
export function sweepPlot(res, extra = null) {
  const series = plotSeries(res, extra);
  if (!series) return null;
  const sw = res.sweep;
  return timeVsLengthSvg({
    title: 'selective-scan: time per call against sequence length',
    subtitle: `${res.device.name}; batch ${sw.batch}, dim ${sw.dim}, N ${sw.N}, float32, z, D, softplus; ${res.date} ${res.commit.hash?.slice(0, 10) ?? ''}`,
    series,
  });
}

/** Where a run's files go: --json, else <out-dir>/<date>-<device>-bench.json; .md and .svg beside it. */
export function outputPaths(res, o, multi) {
  const base = `${res.date}-${res.device.slug}-bench`;
  let json = path.join(o.outDir, `${base}.json`);
  if (o.json) json = multi ? o.json.replace(/(\.json)?$/, `-${res.device.slug}.json`) : o.json;
  const stem = json.replace(/\.json$/, '');
  return { json, md: `${stem}.md`, svg: `${stem}.svg` };
}

/** Prints the report of one device's result and writes its files (unless --no-save); returns the paths written. */
export function writeResult(res, paths, o, ops) {
  const svg = o.plot ? sweepPlot(res) : null;
  if (svg && o.save) res.sweep.plot = path.basename(paths.svg);
  const md = markdownReport(res, ops);
  process.stdout.write(`\n${md}\n`);
  if (!o.save) return [];
  fs.mkdirSync(path.dirname(paths.json), { recursive: true });
  fs.writeFileSync(paths.json, `${JSON.stringify(res, null, 1)}\n`);
  fs.writeFileSync(paths.md, md);
  if (svg) fs.writeFileSync(paths.svg, svg);
  return [paths.json, paths.md, ...(svg ? [paths.svg] : [])];
}
