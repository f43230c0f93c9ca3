// Hand-written SVG charts (no library, no inline styles: colors are presentation
// attributes, which the page's Content-Security-Policy allows). Geometry uses
// floats; the labels show the exact amounts the caller formatted.

const NS = 'http://www.w3.org/2000/svg';
// Okabe–Ito and Tableau-like colors, distinguishable for common color-vision deficiencies.
export const PALETTE = ['#0072b2', '#e69f00', '#009e73', '#cc79a7', '#56b4e9', '#d55e00', '#f0e442',
  '#7f7f7f', '#1b9e77', '#a6761d', '#666699', '#b2182b'];
const OTHER_COLOR = '#bdbdbd';
const UNALLOCATED_COLOR = '#4d4d4d';

function el(name, attrs = {}, text) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function shortMoney(v, currency) {
  try {
    return new Intl.NumberFormat(undefined, {
      style: 'currency', currency, notation: 'compact', maximumFractionDigits: 1,
    }).format(v);
  } catch {
    return String(v);
  }
}

/** Nice tick step for a range of `span`: 1, 2, 2.5 or 5 times a power of ten,
 *  about four steps over the span. */
function niceStep(span) {
  return niceMax(span / 4);
}

/** Stacked columns: one per bucket, one segment per series (teams). Positive
 *  amounts stack up from zero and negative ones (credits charged to a cost
 *  center) down from it, so every segment is drawn and a column's height above
 *  zero less its depth below is the bucket's net; a dark mark shows that net.
 *  buckets: [label], series: [{name, values: [number per bucket], labels: [exact text]}],
 *  netLabels: [exact text of each bucket's net] */
export function stackedColumns(container, { buckets, series, netLabels = [], currency, emptyText = 'No data' }) {
  container.replaceChildren();
  if (!buckets.length || !series.length) {
    container.textContent = emptyText;
    return;
  }
  const W = 900;
  const H = 300;
  const m = { l: 70, r: 10, t: 10, b: 60 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const sumWhere = (keep) => buckets.map((_, i) => series.reduce((s, x) => s + (keep(x.values[i] || 0) ? x.values[i] : 0), 0));
  const ups = sumWhere((v) => v > 0);
  const downs = sumWhere((v) => v < 0);
  const top = Math.max(0, ...ups);
  const bottom = Math.min(0, ...downs);
  const tick = niceStep(top - bottom || 1);
  const hi = Math.max(tick, Math.ceil(top / tick) * tick);
  const lo = Math.floor(bottom / tick) * tick;
  const svg = el('svg', { viewBox: `0 0 ${W} ${H + 20 * Math.ceil((series.length + 1) / 4)}`, class: 'chart-svg', focusable: 'false' });
  const y = (v) => m.t + ph - ((v - lo) / (hi - lo)) * ph;
  const ticks = Math.round((hi - lo) / tick);
  for (let k = 0; k <= ticks; k++) {
    const at = lo + k * tick;
    svg.append(el('line', { x1: m.l, x2: W - m.r, y1: y(at), y2: y(at), stroke: at === 0 ? '#888' : '#ddd', class: at === 0 ? 'zero' : 'grid' }));
    svg.append(el('text', { x: m.l - 6, y: y(at) + 4, 'text-anchor': 'end', class: 'tick' }, shortMoney(at, currency)));
  }
  const step = pw / buckets.length;
  const bw = Math.max(2, Math.min(60, step * 0.7));
  const labelEvery = Math.ceil(buckets.length / 12);
  let netsDrawn = false;
  buckets.forEach((b, i) => {
    let up = 0;
    let down = 0;
    const x = m.l + step * i + (step - bw) / 2;
    series.forEach((s, j) => {
      const v = s.values[i] || 0;
      if (v === 0) return;
      const [from, to] = v > 0 ? [up, up + v] : [down + v, down];
      if (v > 0) up += v; else down += v;
      const rect = el('rect', {
        x, y: y(to), width: bw, height: Math.max(0.5, y(from) - y(to)),
        fill: s.color ?? PALETTE[j % PALETTE.length], class: 'segment',
      });
      rect.append(el('title', {}, `${s.name}, ${b}: ${s.labels?.[i] ?? v}`));
      svg.append(rect);
    });
    if (down < 0) {
      const net = el('line', { x1: x - 3, x2: x + bw + 3, y1: y(up + down), y2: y(up + down), stroke: '#222', 'stroke-width': 2, class: 'net' });
      net.append(el('title', {}, `net, ${b}: ${netLabels[i] ?? up + down}`));
      svg.append(net);
      netsDrawn = true;
    }
    if (i % labelEvery === 0) {
      svg.append(el('text', {
        x: x + bw / 2, y: H - m.b + 16, 'text-anchor': 'middle', class: 'tick',
      }, b));
    }
  });
  // Legend.
  series.forEach((s, j) => {
    const lx = m.l + (j % 4) * 210;
    const ly = H - 18 + Math.floor(j / 4) * 20;
    svg.append(el('rect', { x: lx, y: ly - 10, width: 12, height: 12, fill: s.color ?? PALETTE[j % PALETTE.length] }));
    svg.append(el('text', { x: lx + 18, y: ly, class: 'legend' }, s.name.length > 28 ? `${s.name.slice(0, 27)}…` : s.name));
  });
  if (netsDrawn) {
    const j = series.length;
    const lx = m.l + (j % 4) * 210;
    const ly = H - 18 + Math.floor(j / 4) * 20;
    svg.append(el('line', { x1: lx, x2: lx + 12, y1: ly - 4, y2: ly - 4, stroke: '#222', 'stroke-width': 2 }));
    svg.append(el('text', { x: lx + 18, y: ly, class: 'legend' }, 'net (the bucket\'s bill)'));
  }
  container.append(svg);
}

/** Horizontal bars: items [{name, value: number, label: exact text}] (already sorted, top N). */
export function horizontalBars(container, { items, emptyText = 'No data' }) {
  container.replaceChildren();
  if (!items.length) {
    container.textContent = emptyText;
    return;
  }
  const W = 440;
  const row = 24;
  const H = items.length * row + 10;
  const labelW = 150;
  const valueW = 100;
  const max = Math.max(...items.map((i) => Math.max(0, i.value)), 0) || 1;
  const svg = el('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart-svg', focusable: 'false' });
  items.forEach((it, i) => {
    const yy = 5 + i * row;
    const name = it.name.length > 22 ? `${it.name.slice(0, 21)}…` : it.name;
    svg.append(el('text', { x: labelW - 6, y: yy + 15, 'text-anchor': 'end', class: 'tick' }, name));
    const w = Math.max(0, (it.value / max) * (W - labelW - valueW));
    const rect = el('rect', { x: labelW, y: yy + 3, width: Math.max(w, 1), height: row - 8, fill: it.color ?? PALETTE[0] });
    rect.append(el('title', {}, `${it.name}: ${it.label}`));
    svg.append(rect);
    svg.append(el('text', { x: labelW + w + 6, y: yy + 15, class: 'tick' }, it.label));
  });
  container.append(svg);
}

export { OTHER_COLOR, UNALLOCATED_COLOR };
