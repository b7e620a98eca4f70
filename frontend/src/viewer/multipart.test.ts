import { describe, expect, it } from 'vitest';
import { boundaryOf, MultipartReader, parseMultipart } from './multipart';

const enc = new TextEncoder();

function body(boundary: string, parts: { headers: string[]; data: Uint8Array }[], close = true): Uint8Array {
  const chunks: Uint8Array[] = [];
  for (const part of parts) {
    chunks.push(enc.encode(`--${boundary}\r\n${part.headers.join('\r\n')}\r\n\r\n`), part.data, enc.encode('\r\n'));
  }
  if (close) chunks.push(enc.encode(`--${boundary}--\r\n`));
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

// payloads that contain the boundary's text and CRLFs: only Content-Length tells where they end
const tricky = enc.encode('\r\n--b0undary\r\n\r\n--b0undary--');
const frames = [new Uint8Array([1, 2, 3, 4]), tricky, new Uint8Array(1000).fill(7)];
const withLength = frames.map((data, i) => ({
  headers: [`Content-Type: application/octet-stream`, `Content-Location: /i/${i}/frames/1`, `Content-Length: ${data.length}`],
  data,
}));

describe('multipart bodies', () => {
  it('reads the boundary from Content-Type, quoted or not', () => {
    expect(boundaryOf('multipart/related; type="application/octet-stream"; boundary=abc-1')).toBe('abc-1');
    expect(boundaryOf('multipart/related; boundary="x y"; type=a')).toBe('x y');
    expect(() => boundaryOf('application/json')).toThrow(/not a multipart/);
  });

  it('splits parts by Content-Length, even when the bytes contain the boundary', () => {
    const parts = parseMultipart(body('b0undary', withLength), 'b0undary');
    expect(parts.map((p) => Array.from(p.data))).toEqual(frames.map((f) => Array.from(f)));
    expect(parts[1]?.headers['content-location']).toBe('/i/1/frames/1');
  });

  it('finds parts without Content-Length by their boundary', () => {
    const plain = [{ headers: ['Content-Type: a/b'], data: new Uint8Array([9, 8, 7]) }];
    expect(Array.from(parseMultipart(body('zz', plain), 'zz')[0]!.data)).toEqual([9, 8, 7]);
  });

  it('hands out each part as soon as it is complete, whatever the chunking', () => {
    const whole = body('b0undary', withLength);
    for (const size of [1, 7, 64, whole.length]) {
      const reader = new MultipartReader('b0undary', 16);
      const seen: number[][] = [];
      for (let at = 0; at < whole.length; at += size) {
        for (const part of reader.push(whole.subarray(at, at + size))) seen.push(Array.from(part.data));
      }
      reader.end();
      expect(seen).toEqual(frames.map((f) => Array.from(f)));
      expect(reader.received).toBe(whole.length);
    }
  });

  it('refuses a body cut short, a wrong length and a missing first boundary', () => {
    const whole = body('b0undary', withLength);
    expect(() => parseMultipart(whole.subarray(0, whole.length - 20), 'b0undary')).toThrow(/without its closing boundary/);
    const wrong = body('b0undary', [{ ...withLength[0]!, headers: ['Content-Length: 3'] }]);
    expect(() => parseMultipart(wrong, 'b0undary')).toThrow(/is not 3 bytes long/);
    expect(() => parseMultipart(enc.encode('hello'), 'b0undary')).toThrow(/does not start with its boundary/);
    expect(() => parseMultipart(body('b0undary', withLength, false), 'b0undary')).toThrow(/closing boundary/);
  });
});
