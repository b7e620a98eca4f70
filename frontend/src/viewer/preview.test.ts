import { describe, expect, it } from 'vitest';
import { previewWindow, windowed } from './preview';

describe('the key slice preview', () => {
  it('windows with the project preset', () => {
    expect(previewWindow(new Float32Array([0, 1]), { name: 'Lung', center: -600, width: 1500 })).toEqual([-1350, 150]);
  });

  it('windows without a preset by the slice\'s robust range, ignoring a few outliers', () => {
    const values = new Float32Array(1000).map((_, i) => i);
    values[0] = -100000; // metal, air outside the scanner
    values[999] = 100000;
    const [lower, upper] = previewWindow(values, null);
    expect(lower).toBe(5);
    expect(upper).toBe(995);
  });

  it('gives a flat slice a window around its value', () => {
    expect(previewWindow(new Float32Array(10).fill(7), null)).toEqual([6, 8]);
  });

  it('maps the window to opaque grey, clamped at both ends', () => {
    const rgba = windowed(new Float32Array([-50, 0, 60, 100, 500]), [0, 100]);
    expect([...rgba.filter((_, i) => i % 4 === 0)]).toEqual([0, 0, 153, 255, 255]);
    expect(rgba[1]).toBe(0);
    expect(rgba[4 * 2 + 2]).toBe(153);
    expect([...rgba.filter((_, i) => i % 4 === 3)]).toEqual([255, 255, 255, 255, 255]);
  });
});
