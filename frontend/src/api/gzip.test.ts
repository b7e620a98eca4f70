import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { crc32, gunzip, gunzipFallback, gzip, gzipFallback, GzipError } from './gzip';

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

function random(n: number, seed = 7): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

describe('crc32', () => {
  it('matches the standard check value', () => {
    expect(crc32(new TextEncoder().encode('123456789'))).toBe(0xcbf43926);
  });
});

describe('gzipFallback', () => {
  it.each([
    ['empty', new Uint8Array(0)],
    ['one byte', new Uint8Array([1])],
    ['all zeros', new Uint8Array(100_000)],
    ['mask', maskLike(20, 40, 50)],
    ['random bytes', random(5000)],
  ])('writes gzip that zlib reads back exactly (%s)', (_name, data) => {
    const packed = gzipFallback(data);
    expect(new Uint8Array(gunzipSync(packed))).toEqual(data);
  });

  it('compresses runs hard (a mostly empty mask is tiny)', () => {
    const data = new Uint8Array(512 * 512 * 20);
    data.fill(1, 1000, 50_000);
    expect(gzipFallback(data).length).toBeLessThan(data.length / 150);
  });
});

describe('gunzipFallback', () => {
  it.each([0, 1, 6, 9])('inflates zlib level %i output (stored, fixed and dynamic blocks)', (level) => {
    for (const data of [maskLike(12, 30, 33, 3), random(70_000, level + 1), new Uint8Array(0)]) {
      const packed = new Uint8Array(gzipSync(data, { level }));
      expect(gunzipFallback(packed)).toEqual(data);
    }
  });

  it('skips the optional header fields', () => {
    const data = maskLike(4, 8, 8);
    const plain = new Uint8Array(gzipSync(data));
    // FNAME ("m\0") and FEXTRA (2 bytes) inserted after the 10-byte header
    const withFields = new Uint8Array([...plain.slice(0, 3), 8 | 4, ...plain.slice(4, 10), 2, 0, 0xaa, 0xbb, 0x6d, 0, ...plain.slice(10)]);
    expect(gunzipFallback(withFields)).toEqual(data);
  });

  it('refuses corrupt or truncated data', () => {
    const packed = new Uint8Array(gzipSync(maskLike(6, 10, 10)));
    const badCrc = packed.slice();
    badCrc[badCrc.length - 6]! ^= 0xff;
    expect(() => gunzipFallback(badCrc)).toThrow(/CRC/);
    expect(() => gunzipFallback(packed.slice(0, packed.length - 12))).toThrow(GzipError);
    expect(() => gunzipFallback(new Uint8Array(30))).toThrow(/not gzip/);
  });
});

describe('gzip / gunzip', () => {
  it('round-trip through CompressionStream and through the fallback alike', async () => {
    const data = maskLike(10, 20, 30);
    for (const fallback of [false, true]) {
      const packed = await gzip(data, { fallback });
      expect(new Uint8Array(gunzipSync(packed))).toEqual(data);
      expect(await gunzip(packed, { fallback: !fallback })).toEqual(data);
    }
  });

  it('uses the fallback when the streams are missing', async () => {
    const saved = globalThis.CompressionStream;
    // @ts-expect-error: simulating an older browser
    delete globalThis.CompressionStream;
    try {
      const data = maskLike(5, 6, 7);
      const packed = await gzip(data);
      expect(packed).toEqual(gzipFallback(data));
      expect(await gunzip(packed)).toEqual(data);
    } finally {
      globalThis.CompressionStream = saved;
    }
  });
});
