import { describe, expect, it } from 'vitest';
import { countVoxels, paintSegment, parseShape } from './masks';

describe('mask data', () => {
  it('parses X-Mask-Shape', () => {
    expect(parseShape('3,4,5')).toEqual([3, 4, 5]);
    expect(parseShape(' 134, 512 ,512')).toEqual([134, 512, 512]);
  });

  it.each([null, '', '3,4', '3,4,0', '3,4,x', '1,2,3,4', '2.5,4,4'])('rejects the shape %j', (header) => {
    expect(() => parseShape(header)).toThrow(/X-Mask-Shape/);
  });

  it('paints one lesion mask as its segment and counts voxels', () => {
    const labelmap = new Uint8Array([0, 2, 2, 0, 0, 0]);
    const mask = new Uint8Array([1, 0, 1, 0, 255, 0]);
    expect(paintSegment(labelmap, mask, 3)).toBe(3);
    expect(Array.from(labelmap)).toEqual([3, 2, 3, 0, 3, 0]);
    expect(countVoxels(labelmap)).toBe(4);
    expect(countVoxels(labelmap, 3)).toBe(3);
    expect(countVoxels(labelmap, 2)).toBe(1);
    expect(countVoxels(labelmap, 7)).toBe(0);
    expect(() => paintSegment(labelmap, new Uint8Array(2), 1)).toThrow(/sizes differ/);
  });
});
