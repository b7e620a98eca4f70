import { describe, expect, it } from 'vitest';
import { paintStroke, planeInView, planeToIndex, type SegmentLook, type Vec3 } from './strokePaint';

const identity = (world: Vec3): Vec3 => world;
// a grid with 2 mm voxels along i, its origin at (10, 0, 0)
const scaled = (world: Vec3): Vec3 => [(world[0] - 10) / 2, world[1], world[2]];

describe('planeInView', () => {
  it('finds the plane of an axial, a coronal and a sagittal view', () => {
    expect(planeInView([4, 3, 2], identity, [1, 1, 1], [0, 0, 1])).toEqual({ axis: 2, index: 1, width: 4, height: 3 });
    expect(planeInView([4, 3, 2], identity, [1, 2, 0], [0, -1, 0])).toEqual({ axis: 1, index: 2, width: 4, height: 2 });
    expect(planeInView([4, 3, 2], scaled, [16, 1, 0], [1, 0, 0])).toEqual({ axis: 0, index: 3, width: 3, height: 2 });
  });

  it('refuses oblique views, views between planes and planes outside the grid', () => {
    expect(planeInView([4, 3, 2], identity, [1, 1, 1], [0, 0.1, 0.995])).toBeNull();
    expect(planeInView([4, 3, 2], identity, [1, 1, 0.5], [0, 0, 1])).toBeNull();
    expect(planeInView([4, 3, 2], identity, [1, 1, 2], [0, 0, 1])).toBeNull();
    expect(planeInView([4, 3, 2], identity, [1, 1, 1], [0, 0, 0])).toBeNull();
  });

  it('accepts a focal point a little off the voxel centre', () => {
    expect(planeInView([4, 3, 2], identity, [1, 1, 1.2], [0, 0, 1])?.index).toBe(1);
  });
});

describe('planeToIndex', () => {
  it('puts u and v on the plane axes in order', () => {
    expect(planeToIndex({ axis: 2, index: 5, width: 4, height: 3 }, 1, 2)).toEqual([1, 2, 5]);
    expect(planeToIndex({ axis: 1, index: 5, width: 4, height: 3 }, 1, 2)).toEqual([1, 5, 2]);
    expect(planeToIndex({ axis: 0, index: 5, width: 4, height: 3 }, 1, 2)).toEqual([5, 1, 2]);
  });
});

describe('paintStroke', () => {
  const red: SegmentLook = { rgb: [255, 0, 0], alpha: 0.5 };
  const looks = (segment: number): SegmentLook => (segment === 1 ? red : null);
  const pixel = (pixels: Uint8ClampedArray, i: number): number[] => [...pixels.subarray(i * 4, i * 4 + 4)];

  it('colours the voxels the stroke set, and reports the box around them', () => {
    const width = 4;
    const before = new Uint8Array(8);
    const shown = before.slice();
    const now = before.slice();
    now[5] = 1; // (1, 1)
    now[6] = 1; // (2, 1)
    const pixels = new Uint8ClampedArray(32);
    expect(paintStroke(before, shown, now, pixels, width, looks)).toEqual({ x: 1, y: 1, width: 2, height: 1 });
    expect(pixel(pixels, 5)).toEqual([255, 0, 0, 128]);
    expect(pixel(pixels, 6)).toEqual([255, 0, 0, 128]);
    expect(pixel(pixels, 4)).toEqual([0, 0, 0, 0]);
    expect([...shown]).toEqual([...now]);
    // nothing new: no box
    expect(paintStroke(before, shown, now, pixels, width, looks)).toBeNull();
  });

  it('leaves voxels labelled before the stroke and hidden segments transparent', () => {
    const before = Uint8Array.from([1, 0, 0, 0, 0, 0, 0, 0]);
    const shown = before.slice();
    const now = Uint8Array.from([1, 2, 0, 0, 0, 0, 0, 1]);
    const pixels = new Uint8ClampedArray(32);
    expect(paintStroke(before, shown, now, pixels, 4, looks)).toEqual({ x: 1, y: 0, width: 3, height: 2 });
    expect(pixel(pixels, 0)).toEqual([0, 0, 0, 0]); // already labelled: under the overlay
    expect(pixel(pixels, 1)).toEqual([0, 0, 0, 0]); // segment 2 is hidden
    expect(pixel(pixels, 7)).toEqual([255, 0, 0, 128]);
  });

  it('clears a voxel that went back to what it was', () => {
    const before = new Uint8Array(8);
    const shown = before.slice();
    const pixels = new Uint8ClampedArray(32);
    const now = before.slice();
    now[3] = 1;
    paintStroke(before, shown, now, pixels, 4, looks);
    now[3] = 0;
    expect(paintStroke(before, shown, now, pixels, 4, looks)).toEqual({ x: 3, y: 0, width: 1, height: 1 });
    expect(pixel(pixels, 3)).toEqual([0, 0, 0, 0]);
  });

  it('reports an erased voxel when it has nothing to draw underneath', () => {
    const before = Uint8Array.from([0, 1, 1, 0]);
    const now = Uint8Array.from([0, 1, 0, 0]);
    expect(paintStroke(before, before.slice(), now, new Uint8ClampedArray(16), 2, looks)).toBe('erased');
  });

  it('draws the image underneath where a shown label was erased or replaced, opaque', () => {
    const blue: SegmentLook = { rgb: [0, 0, 255], alpha: 0.25 };
    const three = (segment: number): SegmentLook => (segment === 1 ? red : segment === 3 ? blue : null);
    const before = Uint8Array.from([1, 1, 2, 0]);
    const now = Uint8Array.from([0, 3, 0, 0]); // erased, replaced by 3, a hidden 2 erased
    const pixels = new Uint8ClampedArray(16);
    const grey = (i: number): number => 100 + i;
    expect(paintStroke(before, before.slice(), now, pixels, 2, three, grey)).toEqual({ x: 0, y: 0, width: 2, height: 2 });
    expect(pixel(pixels, 0)).toEqual([100, 100, 100, 255]);
    expect(pixel(pixels, 1)).toEqual([76, 76, 140, 255]); // 0.25 blue over grey 101
    expect(pixel(pixels, 2)).toEqual([0, 0, 0, 0]); // segment 2 never showed: nothing to hide
  });

  it('finds changes in planes whose size is not a multiple of four', () => {
    const before = new Uint8Array(15);
    const shown = before.slice();
    const now = before.slice();
    now[14] = 1;
    const pixels = new Uint8ClampedArray(60);
    expect(paintStroke(before, shown, now, pixels, 5, looks)).toEqual({ x: 4, y: 2, width: 1, height: 1 });
    expect(() => paintStroke(before, shown, now, new Uint8ClampedArray(4), 5, looks)).toThrow(/differ in size/);
  });
});
