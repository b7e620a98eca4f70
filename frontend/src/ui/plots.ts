// Plot geometry without the DOM: scales, ticks, bars and line points. charts.ts draws them as SVG.

import type { ThroughputRow } from '../api';

export interface Frame {
  width: number;
  height: number;
  margin: { top: number; right: number; bottom: number; left: number };
}

export const DEFAULT_FRAME: Frame = {
  width: 560,
  height: 240,
  margin: { top: 16, right: 16, bottom: 40, left: 56 },
};

/** The drawing area inside the margins, in SVG user units. */
export function plotArea(frame: Frame): { x0: number; x1: number; y0: number; y1: number } {
  const { width, height, margin } = frame;
  return { x0: margin.left, x1: width - margin.right, y0: height - margin.bottom, y1: margin.top };
}

/** Maps [d0, d1] linearly onto [r0, r1]; a zero-width domain maps everything to the middle. */
export function linearScale(
  [d0, d1]: [number, number],
  [r0, r1]: [number, number],
): (value: number) => number {
  if (d1 === d0) return () => (r0 + r1) / 2;
  const k = (r1 - r0) / (d1 - d0);
  return (value) => r0 + (value - d0) * k;
}

/** Round tick values (1, 2 or 5 times a power of ten) covering [min, max], about `count` of them. */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [];
  if (max < min) [min, max] = [max, min];
  if (max === min) {
    if (min === 0) return [0, 1];
    max = min > 0 ? min * 2 : 0;
    min = min > 0 ? 0 : min * 2;
  }
  const raw = (max - min) / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  const first = Math.floor(min / step) * step;
  const last = Math.ceil(max / step) * step;
  const ticks: number[] = [];
  for (let v = first; v <= last + step / 2; v += step) {
    ticks.push(Number(v.toPrecision(12)));
  }
  return ticks;
}

/** The y domain of the values, always including zero, widened to round ticks. */
export function valueDomain(values: (number | null)[], fixed?: [number, number]): [number, number] {
  if (fixed) return fixed;
  const finite = values.filter((v): v is number => v !== null && Number.isFinite(v));
  const ticks = niceTicks(Math.min(0, ...finite), Math.max(0, ...finite));
  return [ticks[0] ?? 0, ticks.at(-1) ?? 1];
}

/** Equal bands for `n` categories across [r0, r1]; `padding` is the gap share of a band. */
export function bandScale(
  n: number,
  [r0, r1]: [number, number],
  padding = 0.2,
): { start: (i: number) => number; center: (i: number) => number; width: number } {
  const band = n > 0 ? (r1 - r0) / n : 0;
  const inner = band * (1 - padding);
  return {
    start: (i) => r0 + i * band + (band - inner) / 2,
    center: (i) => r0 + (i + 0.5) * band,
    width: inner,
  };
}

export interface Series {
  name: string;
  values: (number | null)[];
}

export interface BarRect {
  x: number;
  y: number;
  width: number;
  height: number;
  value: number;
  category: number;
  series: number;
}

/** Side-by-side bars, one group per category; null values draw no bar. Bars grow from zero. */
export function groupedBars(
  categories: number,
  series: Series[],
  frame: Frame,
  domain: [number, number],
): BarRect[] {
  const area = plotArea(frame);
  const y = linearScale(domain, [area.y0, area.y1]);
  const bands = bandScale(categories, [area.x0, area.x1]);
  const width = series.length > 0 ? bands.width / series.length : 0;
  const zero = y(Math.min(Math.max(0, domain[0]), domain[1]));
  const bars: BarRect[] = [];
  series.forEach((s, si) => {
    for (let ci = 0; ci < categories; ci++) {
      const value = s.values[ci];
      if (value === null || value === undefined || !Number.isFinite(value)) continue;
      const top = y(value);
      bars.push({
        x: bands.start(ci) + si * width,
        y: Math.min(top, zero),
        width,
        height: Math.abs(zero - top),
        value,
        category: ci,
        series: si,
      });
    }
  });
  return bars;
}

export interface LinePoint {
  x: number;
  y: number;
  value: number;
  index: number;
}

/** Points of one series, centred on the category bands; nulls leave gaps. */
export function linePoints(
  values: (number | null)[],
  frame: Frame,
  domain: [number, number],
): LinePoint[] {
  const area = plotArea(frame);
  const y = linearScale(domain, [area.y0, area.y1]);
  const bands = bandScale(values.length, [area.x0, area.x1]);
  const points: LinePoint[] = [];
  values.forEach((value, index) => {
    if (value === null || !Number.isFinite(value)) return;
    points.push({ x: bands.center(index), y: y(value), value, index });
  });
  return points;
}

/** An SVG path through the points, broken where a category had no value. */
export function linePath(points: LinePoint[]): string {
  return points
    .map((p, i) => {
      const previous = points[i - 1];
      const joined = previous !== undefined && previous.index === p.index - 1;
      return `${joined ? 'L' : 'M'}${p.x.toFixed(1)},${p.y.toFixed(1)}`;
    })
    .join(' ');
}

/** Throughput rows (per day and annotator) summed per day, days in order. */
export function dailyTotals(rows: ThroughputRow[]): {
  days: string[];
  submitted: number[];
  accepted: number[];
} {
  const byDay = new Map<string, { submitted: number; accepted: number }>();
  for (const row of rows) {
    const day = byDay.get(row.day) ?? { submitted: 0, accepted: 0 };
    day.submitted += row.submitted;
    day.accepted += row.accepted;
    byDay.set(row.day, day);
  }
  const days = [...byDay.keys()].sort();
  return {
    days,
    submitted: days.map((d) => byDay.get(d)?.submitted ?? 0),
    accepted: days.map((d) => byDay.get(d)?.accepted ?? 0),
  };
}

/** One series per annotator of a throughput count ('submitted' or 'accepted'), days in order. */
export function perAnnotator(
  rows: ThroughputRow[],
  key: 'submitted' | 'accepted',
): { days: string[]; series: Series[] } {
  const days = [...new Set(rows.map((r) => r.day))].sort();
  const names = [...new Set(rows.map((r) => r.annotator))].sort();
  const series = names.map((name) => ({
    name: name || '(none)',
    values: days.map((day) =>
      rows.filter((r) => r.day === day && r.annotator === name).reduce((n, r) => n + r[key], 0)),
  }));
  return { days, series };
}
