import { describe, expect, it } from 'vitest';
import { countVoxels, gunzip, paintSegment, parseShape } from './masks';

async function gzip(data: Uint8Array<ArrayBuffer>): Promise<ArrayBuffer> {
  const stream = new Blob([data]).stream().pipeThrough(new CompressionStream('gzip'));
  return new Response(stream).arrayBuffer();
}

describe('mask data', () => {
  it('parses X-Mask-Shape', () => {
    expect(parseShape('3,4,5')).toEqual([3, 4, 5]);
    expect(parseShape(' 134, 512 ,512')).toEqual([134, 512, 512]);
  });

  it.each([null, '', '3,4', '3,4,0', '3,4,x', '1,2,3,4', '2.5,4,4'])('rejects the shape %j', (header) => {
    expect(() => parseShape(header)).toThrow(/X-Mask-Shape/);
  });

  it('gunzips what the server sends (gzip of z*y*x uint8)', async () => {
    const voxels = Uint8Array.from({ length: 2 * 3 * 4 }, (_, i) => i % 3);
    expect(await gunzip(await gzip(voxels))).toEqual(voxels);
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
