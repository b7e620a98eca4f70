import { describe, expect, it } from 'vitest';
import {
  bandScale,
  dailyTotals,
  groupedBars,
  linePath,
  linePoints,
  linearScale,
  niceTicks,
  perAnnotator,
  plotArea,
  valueDomain,
  type Frame,
} from './plots';

// A 100 x 100 plot area: x from 10 to 110, y from 110 (value 0) up to 10.
const FRAME: Frame = { width: 120, height: 120, margin: { top: 10, right: 10, bottom: 10, left: 10 } };

describe('scales', () => {
  it('maps a domain linearly onto a range, inverted for y', () => {
    const y = linearScale([0, 50], [110, 10]);
    expect(y(0)).toBe(110);
    expect(y(25)).toBe(60);
    expect(y(50)).toBe(10);
    expect(linearScale([3, 3], [0, 10])(3)).toBe(5);
  });

  it('picks round ticks that cover the data', () => {
    expect(niceTicks(0, 1, 5)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(0, 137, 4)).toEqual([0, 50, 100, 150]);
    expect(niceTicks(-0.3, 0.8, 5)).toEqual([-0.5, 0, 0.5, 1]);
    expect(niceTicks(0, 0)).toEqual([0, 1]);
    expect(niceTicks(7, 7, 2)).toEqual([0, 10, 20]);
  });

  it('builds a value domain that includes zero, unless fixed', () => {
    expect(valueDomain([12, 130, null])).toEqual([0, 150]);
    expect(valueDomain([-0.25, 0.83])).toEqual([-0.5, 1]);
    expect(valueDomain([])).toEqual([0, 1]);
    expect(valueDomain([0.2], [0, 1])).toEqual([0, 1]);
  });

  it('splits a range into padded bands', () => {
    const bands = bandScale(4, [10, 110], 0.2);
    expect(bands.width).toBe(20);
    expect(bands.start(0)).toBe(12.5);
    expect(bands.center(3)).toBe(97.5);
    expect(plotArea(FRAME)).toEqual({ x0: 10, x1: 110, y0: 110, y1: 10 });
  });
});

describe('bars and lines from data', () => {
  it('draws one bar per value, grown from zero, none for null', () => {
    const bars = groupedBars(2, [{ name: 'median s', values: [50, null] }], FRAME, [0, 100]);
    expect(bars).toHaveLength(1);
    expect(bars[0]).toEqual({ x: 15, y: 60, width: 40, height: 50, value: 50, category: 0, series: 0 });
  });

  it('puts the bars of several series side by side', () => {
    const bars = groupedBars(
      1,
      [{ name: 'submitted', values: [4] }, { name: 'accepted', values: [2] }],
      FRAME,
      [0, 4],
    );
    expect(bars.map((b) => [b.x, b.width, b.y, b.height])).toEqual([[20, 40, 10, 100], [60, 40, 60, 50]]);
  });

  it('draws negative values below the zero line', () => {
    const [bar] = groupedBars(1, [{ name: 'saved', values: [-0.5] }], FRAME, [-1, 1]);
    expect(bar).toMatchObject({ y: 60, height: 25 });
  });

  it('centres line points on the bands and breaks the path at gaps', () => {
    const points = linePoints([0.5, null, 1], FRAME, [0, 1]);
    expect(points.map((p) => [Math.round(p.x * 10) / 10, p.y, p.index])).toEqual([
      [26.7, 60, 0],
      [93.3, 10, 2],
    ]);
    expect(linePath(points)).toBe('M26.7,60.0 M93.3,10.0');
    expect(linePath(linePoints([0, 1], FRAME, [0, 1]))).toBe('M35.0,110.0 L85.0,10.0');
  });

  it('sums throughput per day across annotators, days in order', () => {
    expect(dailyTotals([
      { day: '2026-03-03', annotator: 'b', submitted: 1, accepted: 0 },
      { day: '2026-03-02', annotator: 'a', submitted: 2, accepted: 1 },
      { day: '2026-03-03', annotator: 'a', submitted: 3, accepted: 2 },
    ])).toEqual({ days: ['2026-03-02', '2026-03-03'], submitted: [2, 4], accepted: [1, 2] });
  });

  it('splits throughput into one series per annotator', () => {
    expect(perAnnotator([
      { day: '2026-03-03', annotator: 'b', submitted: 1, accepted: 0 },
      { day: '2026-03-02', annotator: 'a', submitted: 2, accepted: 1 },
      { day: '2026-03-03', annotator: 'a', submitted: 3, accepted: 2 },
    ], 'submitted')).toEqual({
      days: ['2026-03-02', '2026-03-03'],
      series: [{ name: 'a', values: [2, 3] }, { name: 'b', values: [0, 1] }],
    });
  });
});
