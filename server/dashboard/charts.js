// Charts drawn as SVG: the axes' ticks and the Pareto front are pure
// functions (tested under node --test); the drawing needs a DOM.
import { svgEl } from './dom.js';
import { fmtNum } from './format.js';

export function niceTicks(lo, hi, count = 5) {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) { lo = 0; hi = 1; }
  if (hi - lo < 1e-12) { const d = Math.abs(lo) * 0.1 || 1; lo -= d; hi += d; }
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  const step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
  const start = Math.floor(lo / step + 1e-9) * step;
  const end = Math.ceil(hi / step - 1e-9) * step;
  const ticks = [];
  for (let v = start; v <= end + step * 1e-6; v += step) ticks.push(Number(v.toPrecision(12)));
  return { lo: start, hi: end, ticks, step };
}

export function tickLabel(v, step) {
  const digits = Math.max(0, Math.min(6, -Math.floor(Math.log10(step) + 1e-9)));
  return v.toFixed(digits);
}

// One colour per algorithm, in order of first appearance.
export const PALETTE = ['#1f6feb', '#d9480f', '#2f9e44', '#9c36b5', '#c92a2a', '#1098ad', '#e67700', '#5c7cfa'];

// The points no other point beats on both axes (smaller and lower), by x:
// the sizes at which nothing gives a lower value.
export function paretoFront(points) {
  const sorted = [...points].sort((a, b) => a.x - b.x || a.y - b.y);
  const front = [];
  for (const p of sorted) if (!front.length || p.y < front[front.length - 1].y) front.push(p);
  return front;
}

// points: [{x, y, label, original, group}]; group picks the colour
export function scatterChart(points, { xTitle, yTitle, title }) {
  const W = 760;
  const H = 400;
  const m = { l: 70, r: 30, t: 34, b: 56 };
  const xs = points.map((p) => p.x);
  const ys = points.map((p) => p.y);
  const xMax = Math.max(...xs);
  const xr = niceTicks(0, xMax * 1.08);
  const yLo = Math.min(...ys);
  const yHi = Math.max(...ys);
  const pad = (yHi - yLo) * 0.12 || Math.abs(yHi) * 0.05 || 1;
  const yr = niceTicks(yLo - pad, yHi + pad);
  const px = (x) => m.l + ((x - xr.lo) / (xr.hi - xr.lo)) * (W - m.l - m.r);
  const py = (y) => H - m.b - ((y - yr.lo) / (yr.hi - yr.lo)) * (H - m.t - m.b);

  const svg = svgEl('svg', {
    class: 'chart', testid: 'compare-chart', viewBox: `0 0 ${W} ${H}`, width: W, height: H,
    role: 'img', 'aria-label': title,
  });
  svg.append(svgEl('text', { x: m.l, y: 18, class: 'chart-title' }, title));
  const grid = svgEl('g', { class: 'grid-lines' });
  const axes = svgEl('g', { class: 'axes' });
  for (const t of xr.ticks) {
    const x = px(t);
    grid.append(svgEl('line', { x1: x, x2: x, y1: m.t, y2: H - m.b }));
    axes.append(svgEl('line', { x1: x, x2: x, y1: H - m.b, y2: H - m.b + 5 }));
    axes.append(svgEl('text', { x, y: H - m.b + 18, 'text-anchor': 'middle', class: 'tick' }, tickLabel(t, xr.step)));
  }
  for (const t of yr.ticks) {
    const y = py(t);
    grid.append(svgEl('line', { x1: m.l, x2: W - m.r, y1: y, y2: y }));
    axes.append(svgEl('line', { x1: m.l - 5, x2: m.l, y1: y, y2: y }));
    axes.append(svgEl('text', { x: m.l - 8, y: y + 4, 'text-anchor': 'end', class: 'tick' }, tickLabel(t, yr.step)));
  }
  axes.append(svgEl('line', { x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b, class: 'axis' }));
  axes.append(svgEl('line', { x1: m.l, x2: m.l, y1: m.t, y2: H - m.b, class: 'axis' }));
  axes.append(svgEl('text', { x: (m.l + W - m.r) / 2, y: H - 12, 'text-anchor': 'middle', class: 'axis-title' }, xTitle));
  axes.append(svgEl('text', {
    x: 0, y: 0, transform: `translate(18 ${(m.t + H - m.b) / 2}) rotate(-90)`, 'text-anchor': 'middle', class: 'axis-title',
  }, yTitle));
  svg.append(grid, axes);

  // the Pareto front, under the points
  const front = paretoFront(points);
  const onFront = new Set(front);
  if (front.length > 1) {
    svg.append(svgEl('polyline', {
      class: 'pareto', testid: 'pareto-front',
      points: front.map((p) => `${px(p.x)},${py(p.y)}`).join(' '),
    }));
  }
  const groups = [...new Set(points.filter((p) => !p.original).map((p) => p.group || ''))];
  const colour = (p) => PALETTE[groups.indexOf(p.group || '') % PALETTE.length];
  if (groups.length) {
    const legend = svgEl('g', { class: 'legend', testid: 'chart-legend' });
    groups.forEach((g, k) => {
      const x = W - m.r - 150;
      const y = m.t + 4 + k * 16;
      legend.append(svgEl('circle', { cx: x, cy: y, r: 5, fill: PALETTE[k % PALETTE.length] }),
        svgEl('text', { x: x + 10, y: y + 4, class: 'tick' }, g || '?'));
    });
    legend.append(svgEl('line', { x1: W - m.r - 155, x2: W - m.r - 145, y1: m.t + 4 + groups.length * 16,
      y2: m.t + 4 + groups.length * 16, class: 'pareto' }),
    svgEl('text', { x: W - m.r - 140, y: m.t + 8 + groups.length * 16, class: 'tick' }, 'Pareto front'));
    svg.append(legend);
  }

  // labels: placed right of the point (left near the right edge), nudged
  // down until they do not overlap a label already placed
  const placed = [];
  const overlaps = (b) => placed.some((o) => b.x1 < o.x2 && b.x2 > o.x1 && b.y1 < o.y2 && b.y2 > o.y1);
  const dots = svgEl('g', { class: 'points' });
  const sorted = points.map((p, k) => ({ ...p, k })).sort((a, b) => py(a.y) - py(b.y));
  for (const p of sorted) {
    const x = px(p.x);
    const y = py(p.y);
    const text = p.label;
    const w = text.length * 6.6 + 4;
    const right = x + 9 + w < W - 4;
    let ly = y + 4;
    let box;
    for (let tries = 0; tries < 8; tries += 1) {
      box = right ? { x1: x + 8, x2: x + 8 + w, y1: ly - 11, y2: ly + 3 } : { x1: x - 8 - w, x2: x - 8, y1: ly - 11, y2: ly + 3 };
      if (!overlaps(box)) break;
      ly += 14;
    }
    placed.push(box);
    const isFront = onFront.has(points[p.k]);
    const g = svgEl('g', {
      class: `${p.original ? 'pt original' : 'pt'}${isFront ? ' front' : ''}`, testid: 'chart-point',
      dataset: { label: p.label, group: p.group || '', front: isFront ? '1' : '0' },
    },
      svgEl('title', null, `${p.label}: ${fmtNum(p.y)} at ${fmtNum(p.x)} MiB${isFront ? ' (on the Pareto front)' : ''}`),
      p.original
        ? svgEl('rect', { x: x - 5, y: y - 5, width: 10, height: 10 })
        : svgEl('circle', { cx: x, cy: y, r: 5.5, style: `fill: ${colour(p)}` }),
      svgEl('text', { x: right ? x + 9 : x - 9, y: ly, 'text-anchor': right ? 'start' : 'end', class: 'pt-label' }, text));
    dots.append(g);
  }
  svg.append(dots);
  return svg;
}


// The compare page's per-block error curves, from GET /compare's columns:
// one series per column that has block_errors, grouped by the metric (a
// relative output error is not drawn on the axis of a weight error). Points
// skip the blocks without a value. Pure: [{metric, series: [{id, label,
// points: [{x, y}]}]}], metrics in order of first appearance.
export function blockErrorSeries(columns) {
  const byMetric = new Map();
  for (const c of Array.isArray(columns) ? columns : []) {
    const be = c && c.block_errors;
    if (!be || typeof be.metric !== 'string' || !Array.isArray(be.values)) continue;
    const points = [];
    be.values.forEach((y, x) => { if (typeof y === 'number' && Number.isFinite(y)) points.push({ x, y }); });
    if (!points.length) continue;
    if (!byMetric.has(be.metric)) byMetric.set(be.metric, []);
    byMetric.get(be.metric).push({ id: c.id, label: c.label || c.name || c.id, points });
  }
  return [...byMetric].map(([metric, series]) => ({ metric, series }));
}

// series: [{label, points: [{x, y}]}], one colour each; x is a block index.
export function lineChart(series, { xTitle, yTitle, title, testid }) {
  const W = 760;
  const H = 360;
  const m = { l: 70, r: 30, t: 34, b: 56 };
  const all = series.flatMap((s) => s.points);
  const xr = niceTicks(0, Math.max(1, ...all.map((p) => p.x)));
  const yr = niceTicks(0, Math.max(...all.map((p) => p.y)) * 1.08);
  const px = (x) => m.l + ((x - xr.lo) / (xr.hi - xr.lo)) * (W - m.l - m.r);
  const py = (y) => H - m.b - ((y - yr.lo) / (yr.hi - yr.lo)) * (H - m.t - m.b);
  const svg = svgEl('svg', {
    class: 'chart', testid, viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': title,
  });
  svg.append(svgEl('text', { x: m.l, y: 18, class: 'chart-title' }, title));
  const grid = svgEl('g', { class: 'grid-lines' });
  const axes = svgEl('g', { class: 'axes' });
  for (const t of xr.ticks) {
    if (!Number.isInteger(t)) continue; // blocks are whole
    grid.append(svgEl('line', { x1: px(t), x2: px(t), y1: m.t, y2: H - m.b }));
    axes.append(svgEl('text', { x: px(t), y: H - m.b + 18, 'text-anchor': 'middle', class: 'tick' }, String(t)));
  }
  for (const t of yr.ticks) {
    grid.append(svgEl('line', { x1: m.l, x2: W - m.r, y1: py(t), y2: py(t) }));
    axes.append(svgEl('text', { x: m.l - 8, y: py(t) + 4, 'text-anchor': 'end', class: 'tick' }, tickLabel(t, yr.step)));
  }
  axes.append(svgEl('line', { x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b, class: 'axis' }),
    svgEl('line', { x1: m.l, x2: m.l, y1: m.t, y2: H - m.b, class: 'axis' }),
    svgEl('text', { x: (m.l + W - m.r) / 2, y: H - 12, 'text-anchor': 'middle', class: 'axis-title' }, xTitle),
    svgEl('text', {
      x: 0, y: 0, transform: `translate(18 ${(m.t + H - m.b) / 2}) rotate(-90)`, 'text-anchor': 'middle', class: 'axis-title',
    }, yTitle));
  svg.append(grid, axes);
  const legend = svgEl('g', { class: 'legend' });
  series.forEach((s, k) => {
    const colour = PALETTE[k % PALETTE.length];
    svg.append(svgEl('g', { class: 'curve', testid: 'block-curve', dataset: { label: s.label, blocks: s.points.length } },
      svgEl('title', null, s.label),
      svgEl('polyline', {
        points: s.points.map((p) => `${px(p.x)},${py(p.y)}`).join(' '),
        style: `fill: none; stroke: ${colour}; stroke-width: 2`,
      }),
      s.points.map((p) => svgEl('circle', { cx: px(p.x), cy: py(p.y), r: 3, style: `fill: ${colour}` },
        svgEl('title', null, `${s.label}: block ${p.x}, ${fmtNum(p.y)}`)))));
    const y = m.t + 4 + k * 16;
    legend.append(svgEl('line', { x1: W - m.r - 260, x2: W - m.r - 244, y1: y, y2: y, style: `stroke: ${colour}; stroke-width: 2` }),
      svgEl('text', { x: W - m.r - 238, y: y + 4, class: 'tick' }, s.label));
  });
  svg.append(legend);
  return svg;
}
