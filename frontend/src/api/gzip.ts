// gzip for mask payloads (RFC 1951 / 1952).
//
// The browser's CompressionStream / DecompressionStream do the work where they exist; the
// fallbacks below are complete, dependency-free implementations: `gzipFallback` writes one
// fixed-Huffman block of literals and distance-1 runs (masks are long runs of 0 / 1: a run of
// 258 equal bytes costs 13 bits), `gunzipFallback` inflates any gzip member (stored, fixed
// and dynamic Huffman blocks), checking the CRC-32 and the length in the trailer.

export type Bytes = Uint8Array<ArrayBuffer>;

// ---- CRC-32 -------------------------------------------------------------------------------

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) {
    crc = CRC_TABLE[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  }
  return (crc ^ 0xffffffff) >>> 0;
}

// ---- deflate tables ---------------------------------------------------------------------

const LENGTH_BASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59,
  67, 83, 99, 115, 131, 163, 195, 227, 258];
const LENGTH_EXTRA = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4,
  5, 5, 5, 5, 0];
const DIST_BASE = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513,
  769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577];
const DIST_EXTRA = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10,
  11, 11, 12, 12, 13, 13];
const CODE_LENGTH_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

// ---- compression fallback ---------------------------------------------------------------

class BitWriter {
  private buf: Bytes;
  private pos = 0;
  private acc = 0;
  private nbits = 0;

  constructor(capacity: number) {
    this.buf = new Uint8Array(Math.max(64, capacity));
  }

  private ensure(extra: number): void {
    if (this.pos + extra <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.pos + extra));
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  /** `n` bits of `value`, least significant first (n <= 24). */
  bits(value: number, n: number): void {
    this.acc |= value << this.nbits;
    this.nbits += n;
    this.ensure(4);
    while (this.nbits >= 8) {
      this.buf[this.pos++] = this.acc & 0xff;
      this.acc >>>= 8;
      this.nbits -= 8;
    }
  }

  /** A Huffman code: sent most significant bit first. */
  code(code: number, length: number): void {
    let reversed = 0;
    for (let i = 0; i < length; i++) reversed |= ((code >>> i) & 1) << (length - 1 - i);
    this.bits(reversed, length);
  }

  bytes(data: Uint8Array): void {
    this.flushByte();
    this.ensure(data.length);
    this.buf.set(data, this.pos);
    this.pos += data.length;
  }

  flushByte(): void {
    if (this.nbits > 0) this.bits(0, 8 - this.nbits);
  }

  result(): Bytes {
    this.flushByte();
    return this.buf.slice(0, this.pos);
  }
}

function fixedLiteral(out: BitWriter, symbol: number): void {
  if (symbol < 144) out.code(0x30 + symbol, 8);
  else if (symbol < 256) out.code(0x190 + symbol - 144, 9);
  else if (symbol < 280) out.code(symbol - 256, 7);
  else out.code(0xc0 + symbol - 280, 8);
}

const LENGTH_SYMBOL = (() => {
  const table = new Uint8Array(259);
  for (let len = 3; len <= 258; len++) {
    let idx = LENGTH_BASE.length - 1;
    while (LENGTH_BASE[idx]! > len) idx--;
    table[len] = idx;
  }
  return table;
})();

function writeU32(out: BitWriter, value: number): void {
  out.bytes(new Uint8Array([value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, (value >>> 24) & 0xff]));
}

/** gzip of `data` without CompressionStream. */
export function gzipFallback(data: Uint8Array): Bytes {
  const out = new BitWriter(1024 + (data.length >>> 6));
  out.bytes(new Uint8Array([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]));
  out.bits(1, 1); // BFINAL
  out.bits(1, 2); // BTYPE = 01, fixed Huffman
  const n = data.length;
  let i = 0;
  while (i < n) {
    const value = data[i]!;
    if (i > 0 && data[i - 1] === value) {
      let run = 1;
      while (run < 258 && i + run < n && data[i + run] === value) run++;
      if (run >= 3) {
        const idx = LENGTH_SYMBOL[run]!;
        fixedLiteral(out, 257 + idx);
        if (LENGTH_EXTRA[idx]! > 0) out.bits(run - LENGTH_BASE[idx]!, LENGTH_EXTRA[idx]!);
        out.code(0, 5); // distance code 0: distance 1
        i += run;
        continue;
      }
    }
    fixedLiteral(out, value);
    i++;
  }
  fixedLiteral(out, 256);
  writeU32(out, crc32(data));
  writeU32(out, n >>> 0);
  return out.result();
}

// ---- decompression fallback -------------------------------------------------------------

export class GzipError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GzipError';
  }
}

interface Huffman {
  counts: Uint16Array;
  symbols: Uint16Array;
}

function huffman(lengths: ArrayLike<number>, n: number): Huffman {
  const counts = new Uint16Array(16);
  for (let i = 0; i < n; i++) counts[lengths[i]!]!++;
  counts[0] = 0;
  const offsets = new Uint16Array(16);
  for (let len = 1; len < 15; len++) offsets[len + 1] = offsets[len]! + counts[len]!;
  const symbols = new Uint16Array(n);
  for (let i = 0; i < n; i++) {
    const len = lengths[i]!;
    if (len !== 0) symbols[offsets[len]!++] = i;
  }
  return { counts, symbols };
}

const FIXED = (() => {
  const lengths = new Uint8Array(288);
  lengths.fill(8, 0, 144);
  lengths.fill(9, 144, 256);
  lengths.fill(7, 256, 280);
  lengths.fill(8, 280, 288);
  return { lit: huffman(lengths, 288), dist: huffman(new Uint8Array(30).fill(5), 30) };
})();

class Inflater {
  private pos: number;
  private bitbuf = 0;
  private bitcnt = 0;
  out: Bytes;
  outPos = 0;

  private readonly input: Uint8Array;

  constructor(input: Uint8Array, start: number, sizeHint: number) {
    this.input = input;
    this.pos = start;
    this.out = new Uint8Array(Math.max(1024, sizeHint));
  }

  get position(): number {
    return this.pos;
  }

  private need(n: number): number {
    let val = this.bitbuf;
    while (this.bitcnt < n) {
      if (this.pos >= this.input.length) throw new GzipError('the gzip data is truncated');
      val |= this.input[this.pos++]! << this.bitcnt;
      this.bitcnt += 8;
    }
    this.bitbuf = val >>> n;
    this.bitcnt -= n;
    return val & ((1 << n) - 1);
  }

  private decode(h: Huffman): number {
    let code = 0;
    let first = 0;
    let index = 0;
    for (let len = 1; len <= 15; len++) {
      code |= this.need(1);
      const count = h.counts[len]!;
      if (code - first < count) return h.symbols[index + code - first]!;
      index += count;
      first = (first + count) << 1;
      code <<= 1;
    }
    throw new GzipError('invalid Huffman code in the gzip data');
  }

  private grow(extra: number): void {
    if (this.outPos + extra <= this.out.length) return;
    const next = new Uint8Array(Math.max(this.out.length * 2, this.outPos + extra));
    next.set(this.out.subarray(0, this.outPos));
    this.out = next;
  }

  private stored(): void {
    this.bitbuf = 0;
    this.bitcnt = 0;
    const p = this.pos;
    if (p + 4 > this.input.length) throw new GzipError('the gzip data is truncated');
    const len = this.input[p]! | (this.input[p + 1]! << 8);
    const nlen = this.input[p + 2]! | (this.input[p + 3]! << 8);
    if (len !== (~nlen & 0xffff)) throw new GzipError('corrupt stored block in the gzip data');
    if (p + 4 + len > this.input.length) throw new GzipError('the gzip data is truncated');
    this.grow(len);
    this.out.set(this.input.subarray(p + 4, p + 4 + len), this.outPos);
    this.outPos += len;
    this.pos = p + 4 + len;
  }

  private codes(lit: Huffman, dist: Huffman): void {
    for (;;) {
      const symbol = this.decode(lit);
      if (symbol < 256) {
        this.grow(1);
        this.out[this.outPos++] = symbol;
      } else if (symbol === 256) {
        return;
      } else {
        const li = symbol - 257;
        if (li >= 29) throw new GzipError('invalid length code in the gzip data');
        const length = LENGTH_BASE[li]! + this.need(LENGTH_EXTRA[li]!);
        const di = this.decode(dist);
        if (di >= 30) throw new GzipError('invalid distance code in the gzip data');
        const distance = DIST_BASE[di]! + this.need(DIST_EXTRA[di]!);
        if (distance > this.outPos) throw new GzipError('distance too far back in the gzip data');
        this.grow(length);
        const out = this.out;
        let from = this.outPos - distance;
        let to = this.outPos;
        const end = to + length;
        if (distance >= length) {
          out.copyWithin(to, from, from + length);
        } else {
          while (to < end) out[to++] = out[from++]!;
        }
        this.outPos = end;
      }
    }
  }

  private dynamic(): void {
    const nlen = this.need(5) + 257;
    const ndist = this.need(5) + 1;
    const ncode = this.need(4) + 4;
    if (nlen > 286 || ndist > 30) throw new GzipError('bad code counts in the gzip data');
    const lengths = new Uint8Array(320);
    for (let i = 0; i < ncode; i++) lengths[CODE_LENGTH_ORDER[i]!] = this.need(3);
    const lencode = huffman(lengths, 19);
    lengths.fill(0);
    let index = 0;
    while (index < nlen + ndist) {
      const symbol = this.decode(lencode);
      if (symbol < 16) {
        lengths[index++] = symbol;
        continue;
      }
      let value = 0;
      let repeat: number;
      if (symbol === 16) {
        if (index === 0) throw new GzipError('repeat with no first length in the gzip data');
        value = lengths[index - 1]!;
        repeat = 3 + this.need(2);
      } else if (symbol === 17) {
        repeat = 3 + this.need(3);
      } else {
        repeat = 11 + this.need(7);
      }
      if (index + repeat > nlen + ndist) throw new GzipError('too many lengths in the gzip data');
      while (repeat-- > 0) lengths[index++] = value;
    }
    if (lengths[256] === 0) throw new GzipError('no end-of-block code in the gzip data');
    const lit = huffman(lengths.subarray(0, nlen), nlen);
    const dist = huffman(lengths.subarray(nlen, nlen + ndist), ndist);
    this.codes(lit, dist);
  }

  run(): void {
    let last = 0;
    while (!last) {
      last = this.need(1);
      const type = this.need(2);
      if (type === 0) this.stored();
      else if (type === 1) this.codes(FIXED.lit, FIXED.dist);
      else if (type === 2) this.dynamic();
      else throw new GzipError('invalid block type in the gzip data');
    }
  }
}

function readU32(data: Uint8Array, at: number): number {
  return (data[at]! | (data[at + 1]! << 8) | (data[at + 2]! << 16) | (data[at + 3]! << 24)) >>> 0;
}

/** Inflates one gzip member (the server's raw-gzip payloads) without DecompressionStream. */
export function gunzipFallback(data: Uint8Array): Bytes {
  if (data.length < 18 || data[0] !== 0x1f || data[1] !== 0x8b) {
    throw new GzipError('not gzip data');
  }
  if (data[2] !== 8) throw new GzipError('unknown gzip compression method');
  const flags = data[3]!;
  let pos = 10;
  if (flags & 4) pos += 2 + (data[pos]! | (data[pos + 1]! << 8));
  if (flags & 8) while (pos < data.length && data[pos++] !== 0);
  if (flags & 16) while (pos < data.length && data[pos++] !== 0);
  if (flags & 2) pos += 2;
  const sizeHint = readU32(data, data.length - 4);
  const inflater = new Inflater(data, pos, Math.min(sizeHint, 1 << 30));
  inflater.run();
  const end = inflater.position;
  if (end + 8 > data.length) throw new GzipError('the gzip trailer is missing');
  const out = inflater.out.length === inflater.outPos ? inflater.out : inflater.out.slice(0, inflater.outPos);
  if (readU32(data, end) !== crc32(out)) throw new GzipError('gzip CRC mismatch: the data is corrupt');
  if (readU32(data, end + 4) !== (out.length >>> 0)) throw new GzipError('gzip length mismatch');
  return out;
}

// ---- public API -------------------------------------------------------------------------

function hasStreams(): boolean {
  return typeof CompressionStream !== 'undefined' && typeof DecompressionStream !== 'undefined';
}

async function throughStream(data: Uint8Array, transform: GenerateTransformStream): Promise<Bytes> {
  const source = new Blob([data.slice()]).stream().pipeThrough(transform);
  return new Uint8Array(await new Response(source).arrayBuffer());
}

type GenerateTransformStream = ReadableWritablePair<Uint8Array, Uint8Array>;

export interface GzipOptions {
  /** Use the pure TypeScript codec even where the browser has (De)CompressionStream. */
  fallback?: boolean;
}

export async function gzip(data: Uint8Array, { fallback = false }: GzipOptions = {}): Promise<Bytes> {
  if (!fallback && hasStreams()) {
    return throughStream(data, new CompressionStream('gzip') as unknown as GenerateTransformStream);
  }
  return gzipFallback(data);
}

export async function gunzip(data: Uint8Array, { fallback = false }: GzipOptions = {}): Promise<Bytes> {
  if (!fallback && hasStreams()) {
    try {
      return await throughStream(data, new DecompressionStream('gzip') as unknown as GenerateTransformStream);
    } catch (err) {
      throw new GzipError(`the gzip data could not be read: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return gunzipFallback(data);
}
