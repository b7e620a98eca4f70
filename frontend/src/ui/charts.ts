// Inline SVG charts drawn from data (no chart library). Geometry comes from plots.ts.
// Each <svg> carries data-chart, data-points (values drawn) and data-series so tests can check it;
// each bar and line marker carries data-value, data-category and data-series-name.

import {
  DEFAULT_FRAME,
  groupedBars,
  linePath,
  linePoints,
  linearScale,
  niceTicks,
  plotArea,
  valueDomain,
  type Frame,
  type Series,
} from './plots';

const SVG_NS = 'http://www.w3.org/2000/svg';
export const PALETTE = ['#2457c5', '#1a7f4b', '#b45309', '#7c3aed'];

type SvgAttrs = Record<string, string | number>;

function s<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: SvgAttrs = {},
  ...children: (SVGElement | string)[]
): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  for (const child of children) {
    el.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return el;
}

export interface ChartOptions {
  /** Accessible name of the chart. */
  title: string;
  categories: string[];
  series: Series[];
  /** Fixed y domain (e.g. [0, 1] for Dice); else from the data, always including zero. */
  domain?: [number, number];
  /** Values in tooltips; `tickFormat` (default: the same) labels the y axis. */
  format?: (value: number) => string;
  tickFormat?: (value: number) => string;
  yLabel?: string;
  frame?: Frame;
}

function frameOf(opts: ChartOptions, kind: string): { svg: SVGSVGElement; frame: Frame; domain: [number, number] } {
  const frame = opts.frame ?? DEFAULT_FRAME;
  const domain = valueDomain(opts.series.flatMap((x) => x.values), opts.domain);
  const points = opts.series.reduce(
    (n, x) => n + x.values.filter((v) => v !== null && Number.isFinite(v)).length,
    0,
  );
  const svg = s('svg', {
    class: 'chart',
    viewBox: `0 0 ${frame.width} ${frame.height}`,
    role: 'img',
    'aria-label': opts.title,
    'data-chart': kind,
    'data-points': points,
    'data-series': opts.series.length,
  });
  svg.appendChild(s('title', {}, opts.title));
  return { svg, frame, domain };
}

function axes(svg: SVGSVGElement, opts: ChartOptions, frame: Frame, domain: [number, number]): void {
  const area = plotArea(frame);
  const y = linearScale(domain, [area.y0, area.y1]);
  const format = opts.tickFormat ?? opts.format ?? ((v: number) => String(v));
  const grid = s('g', { class: 'chart-grid' });
  for (const tick of niceTicks(domain[0], domain[1], 4)) {
    if (tick < domain[0] || tick > domain[1]) continue;
    const ty = y(tick);
    grid.append(
      s('line', { x1: area.x0, x2: area.x1, y1: ty, y2: ty, class: tick === 0 ? 'chart-zero' : '' }),
      s('text', { x: area.x0 - 6, y: ty + 4, 'text-anchor': 'end' }, format(tick)),
    );
  }
  const n = opts.categories.length;
  const band = n > 0 ? (area.x1 - area.x0) / n : 0;
  const every = Math.max(1, Math.ceil(n / 12));
  opts.categories.forEach((label, i) => {
    if (i % every !== 0) return;
    grid.append(s('text', { x: area.x0 + (i + 0.5) * band, y: area.y0 + 16, 'text-anchor': 'middle' }, label));
  });
  if (opts.yLabel) {
    grid.append(s('text', {
      x: 12, y: (area.y0 + area.y1) / 2, 'text-anchor': 'middle',
      transform: `rotate(-90 12 ${(area.y0 + area.y1) / 2})`,
    }, opts.yLabel));
  }
  svg.appendChild(grid);
}

function legend(svg: SVGSVGElement, opts: ChartOptions, frame: Frame): void {
  if (opts.series.length < 2) return;
  const g = s('g', { class: 'chart-legend' });
  opts.series.forEach((x, i) => {
    const lx = frame.margin.left + i * 130;
    const ly = frame.height - 8;
    g.append(
      s('rect', { x: lx, y: ly - 9, width: 10, height: 10, fill: PALETTE[i % PALETTE.length] ?? '#000' }),
      s('text', { x: lx + 14, y: ly }, x.name),
    );
  });
  svg.appendChild(g);
}

/** Grouped bars: one group per category, one bar per series. */
export function barChart(opts: ChartOptions): SVGSVGElement {
  const { svg, frame, domain } = frameOf(opts, 'bar');
  axes(svg, opts, frame, domain);
  const format = opts.format ?? ((v: number) => String(v));
  const g = s('g', { class: 'chart-bars' });
  for (const bar of groupedBars(opts.categories.length, opts.series, frame, domain)) {
    const name = opts.series[bar.series]?.name ?? '';
    g.appendChild(s('rect', {
      x: bar.x.toFixed(1), y: bar.y.toFixed(1),
      width: Math.max(0, bar.width - 1).toFixed(1), height: bar.height.toFixed(1),
      fill: PALETTE[bar.series % PALETTE.length] ?? '#000',
      'data-value': bar.value,
      'data-category': opts.categories[bar.category] ?? '',
      'data-series-name': name,
    }, s('title', {}, `${opts.categories[bar.category] ?? ''} · ${name}: ${format(bar.value)}`)));
  }
  svg.appendChild(g);
  legend(svg, opts, frame);
  return svg;
}

/** One line with markers per series over the categories. */
export function lineChart(opts: ChartOptions): SVGSVGElement {
  const { svg, frame, domain } = frameOf(opts, 'line');
  axes(svg, opts, frame, domain);
  const format = opts.format ?? ((v: number) => String(v));
  opts.series.forEach((x, i) => {
    const color = PALETTE[i % PALETTE.length] ?? '#000';
    const points = linePoints(x.values, frame, domain);
    const g = s('g', { class: 'chart-line', 'data-series-name': x.name });
    g.appendChild(s('path', { d: linePath(points), stroke: color, fill: 'none', 'stroke-width': 2 }));
    for (const p of points) {
      g.appendChild(s('circle', {
        cx: p.x.toFixed(1), cy: p.y.toFixed(1), r: 4, fill: color, 'data-value': p.value,
        'data-category': opts.categories[p.index] ?? '', 'data-series-name': x.name,
      }, s('title', {}, `${opts.categories[p.index] ?? ''} · ${x.name}: ${format(p.value)}`)));
    }
    svg.appendChild(g);
  });
  legend(svg, opts, frame);
  return svg;
}
