// A log-log line plot of time against L, as a self-contained SVG string (no dependencies).

const COLORS = [
  '#1f77b4',
  '#d62728',
  '#2ca02c',
  '#ff7f0e',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#17becf',
  '#7f7f7f',
  '#bcbd22',
];
const DASHES = { solid: '', dashed: '6 4', dotted: '2 3' };

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function fmtL(v) {
  if (v >= 1024 && v % 1024 === 0) return `${v / 1024}K`;
  return String(v);
}

function fmtMs(v) {
  if (v >= 1000) return `${v / 1000} s`;
  if (v >= 1) return `${v} ms`;
  if (v >= 1e-3) return `${+(v * 1e3).toPrecision(3)} µs`;
  return `${v} ms`;
}

/**
 * series: [{ label, points: [[L, ms], ...], dash?: 'solid'|'dashed'|'dotted', color? }]
 * Returns the SVG text, or null when no series has a point.
 */
export function timeVsLengthSvg({ title, subtitle, series, width = 760, height = 470 }) {
  const used = series.filter((s) => s.points.some(([x, y]) => x > 0 && y > 0));
  if (used.length === 0) return null;
  const xs = used.flatMap((s) => s.points.map((p) => p[0])).filter((v) => v > 0);
  const ys = used.flatMap((s) => s.points.map((p) => p[1])).filter((v) => v > 0);
  const lx0 = Math.log2(Math.min(...xs)),
    lx1 = Math.log2(Math.max(...xs));
  const ly0 = Math.floor(Math.log10(Math.min(...ys))),
    ly1 = Math.ceil(Math.log10(Math.max(...ys)));
  const yTop = ly1 === ly0 ? ly1 + 1 : ly1;
  const m = { left: 78, right: 230, top: 58, bottom: 56 };
  const pw = width - m.left - m.right,
    ph = height - m.top - m.bottom;
  const X = (v) => m.left + (lx1 === lx0 ? pw / 2 : ((Math.log2(v) - lx0) / (lx1 - lx0)) * pw);
  const Y = (v) => m.top + ph - ((Math.log10(v) - ly0) / (yTop - ly0)) * ph;
  const out = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
  );
  out.push(`<rect width="100%" height="100%" fill="white"/>`);
  out.push(`<text x="${m.left}" y="24" font-size="16" font-weight="bold">${esc(title)}</text>`);
  if (subtitle) {
    const text = subtitle.length > 112 ? `${subtitle.slice(0, 111)}…` : subtitle;
    out.push(`<text x="${m.left}" y="42" fill="#555">${esc(text)}</text>`);
  }
  // grid and ticks
  for (let e = ly0; e <= yTop; e++) {
    for (const k of [1, 2, 5]) {
      const v = k * 10 ** e;
      if (Math.log10(v) > yTop + 1e-9) continue;
      const y = Y(v).toFixed(1);
      out.push(`<line x1="${m.left}" x2="${m.left + pw}" y1="${y}" y2="${y}" stroke="${k === 1 ? '#ccc' : '#eee'}"/>`);
      if (k === 1)
        out.push(
          `<text x="${m.left - 8}" y="${y}" text-anchor="end" dominant-baseline="middle">${esc(fmtMs(+v.toPrecision(3)))}</text>`,
        );
    }
  }
  for (let e = Math.ceil(lx0); e <= Math.floor(lx1); e++) {
    const x = X(2 ** e).toFixed(1);
    out.push(`<line x1="${x}" x2="${x}" y1="${m.top}" y2="${m.top + ph}" stroke="#eee"/>`);
    out.push(`<text x="${x}" y="${m.top + ph + 18}" text-anchor="middle">${fmtL(2 ** e)}</text>`);
  }
  out.push(`<rect x="${m.left}" y="${m.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${m.left + pw / 2}" y="${height - 14}" text-anchor="middle">sequence length L</text>`);
  out.push(
    `<text transform="translate(18 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">time per call (log scale)</text>`,
  );
  // series
  used.forEach((s, i) => {
    const color = s.color ?? COLORS[i % COLORS.length];
    const pts = s.points.filter(([x, y]) => x > 0 && y > 0).sort((a, b) => a[0] - b[0]);
    const dash = DASHES[s.dash ?? 'solid'];
    out.push(
      `<polyline fill="none" stroke="${color}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''} points="${pts
        .map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`)
        .join(' ')}"/>`,
    );
    for (const [x, y] of pts) {
      out.push(
        `<circle cx="${X(x).toFixed(1)}" cy="${Y(y).toFixed(1)}" r="3" fill="${color}"><title>${esc(`${s.label}: L=${x}, ${y.toPrecision(4)} ms`)}</title></circle>`,
      );
    }
    const ly = m.top + 10 + i * 20;
    const lx = m.left + pw + 14;
    out.push(
      `<line x1="${lx}" x2="${lx + 26}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`,
    );
    out.push(`<text x="${lx + 32}" y="${ly}" dominant-baseline="middle">${esc(s.label)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
