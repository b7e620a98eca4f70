import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { gunzip, gzip, GzipError } from './gzip';

function maskLike(z: number, y: number, x: number, seed = 1): Uint8Array {
  // A blob-shaped binary mask plus salt: long runs, short runs, isolated voxels.
  const out = new Uint8Array(z * y * x);
  let s = seed;
  for (let k = 0; k < z; k++) for (let j = 0; j < y; j++) for (let i = 0; i < x; i++) {
    const d = (k - z / 2) ** 2 + (j - y / 2) ** 2 + (i - x / 3) ** 2;
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    out[(k * y + j) * x + i] = d < (z * z) / 6 || s % 97 === 0 ? 1 : 0;
  }
  return out;
}

describe('gzip / gunzip (zlib as the independent reference)', () => {
  it.each([
    ['empty', new Uint8Array(0)],
    ['one byte', new Uint8Array([1])],
    ['mask', maskLike(20, 40, 50)],
  ])('writes gzip that zlib reads back exactly (%s)', async (_name, data) => {
    expect(new Uint8Array(gunzipSync(await gzip(data)))).toEqual(data);
  });

  it('compresses runs hard (a mostly empty mask is tiny)', async () => {
    const data = new Uint8Array(512 * 512 * 20);
    data.fill(1, 1000, 50_000);
    expect((await gzip(data)).length).toBeLessThan(data.length / 150);
  });

  it.each([0, 1, 6, 9])('reads zlib level %i output', async (level) => {
    const data = maskLike(12, 30, 33, 3);
    expect(await gunzip(new Uint8Array(gzipSync(data, { level })))).toEqual(data);
  });

  it('refuses corrupt or truncated data', async () => {
    const packed = new Uint8Array(gzipSync(maskLike(6, 10, 10)));
    const badCrc = packed.slice();
    badCrc[badCrc.length - 6]! ^= 0xff;
    await expect(gunzip(badCrc)).rejects.toThrow(GzipError);
    await expect(gunzip(packed.slice(0, packed.length - 12))).rejects.toThrow(GzipError);
    await expect(gunzip(new Uint8Array(30))).rejects.toThrow(GzipError);
  });
});
