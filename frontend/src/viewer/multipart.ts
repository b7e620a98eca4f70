// multipart/related bodies (RFC 2387) as the server's DICOMweb sends them: each part's headers,
// then its bytes. A part with Content-Length is skipped over without reading its bytes; only a
// part without one is searched for the next boundary. MultipartReader takes the body as it
// arrives and hands out each part as soon as it is complete.

export interface Part {
  /** Header names in lower case. */
  headers: Record<string, string>;
  /** The part's bytes (a view into the reader's buffer: use or copy it before the next push). */
  data: Uint8Array;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('latin1');

/** The boundary parameter of a multipart Content-Type; throws when there is none. */
export function boundaryOf(contentType: string): string {
  const match = /boundary=("([^"]+)"|[^;\s]+)/i.exec(contentType);
  const boundary = match?.[2] ?? match?.[1];
  if (!boundary) throw new Error(`not a multipart response: ${contentType}`);
  return boundary;
}

function startsWith(body: Uint8Array, at: number, bytes: ArrayLike<number>): boolean {
  if (at + bytes.length > body.length) return false;
  for (let i = 0; i < bytes.length; i++) if (body[at + i] !== bytes[i]) return false;
  return true;
}

function indexOf(body: Uint8Array, bytes: Uint8Array, from: number): number {
  const first = bytes[0] as number;
  for (let i = body.indexOf(first, from); i !== -1; i = body.indexOf(first, i + 1)) {
    if (startsWith(body, i, bytes)) return i;
  }
  return -1;
}

export class MultipartReader {
  private readonly delimiter: Uint8Array;
  private readonly next: Uint8Array;
  private buffer: Uint8Array;
  private length = 0;
  /** Where the next part's "\r\n" after a delimiter starts (-1: before the first delimiter). */
  private at = -1;
  private closed = false;
  private count = 0;

  constructor(boundary: string, initialBytes = 1 << 20) {
    this.delimiter = encoder.encode(`--${boundary}`);
    this.next = encoder.encode(`\r\n--${boundary}`);
    this.buffer = new Uint8Array(Math.max(initialBytes, 1024));
  }

  private consumed = 0;

  /** Bytes taken so far. */
  get received(): number {
    return this.consumed + this.length;
  }

  /** Takes the next bytes of the body; returns the parts they complete, in order. */
  push(bytes: Uint8Array): Part[] {
    if (this.closed) { // an epilogue: ignored
      this.consumed += bytes.length;
      return [];
    }
    if (this.length + bytes.length > this.buffer.length) {
      // keep only what is not parsed yet (the parts handed out before are the caller's now)
      const keep = Math.max(this.at, 0);
      const live = this.length - keep;
      const grown = new Uint8Array(Math.max(this.buffer.length, (live + bytes.length) * 2));
      grown.set(this.buffer.subarray(keep, this.length));
      this.buffer = grown;
      this.length = live;
      if (this.at > 0) this.at -= keep;
      this.consumed += keep;
    }
    this.buffer.set(bytes, this.length);
    this.length += bytes.length;
    return this.parse();
  }

  /** The body has ended: throws unless it closed properly. */
  end(): void {
    if (this.at === -1) throw new Error('multipart body does not start with its boundary');
    if (!this.closed) {
      throw new Error(`multipart: the body ended after ${this.count} parts without its closing boundary`);
    }
  }

  private parse(): Part[] {
    const body = this.buffer.subarray(0, this.length);
    const parts: Part[] = [];
    if (this.at === -1) {
      if (body.length < this.delimiter.length) return parts;
      if (!startsWith(body, 0, this.delimiter)) throw new Error('multipart body does not start with its boundary');
      this.at = this.delimiter.length;
    }
    while (!this.closed) {
      if (this.at + 2 > body.length) break;
      if (body[this.at] === 45 && body[this.at + 1] === 45) { // "--": the closing delimiter
        this.closed = true;
        break;
      }
      if (body[this.at] !== 13 || body[this.at + 1] !== 10) {
        throw new Error(`multipart: no line break after boundary ${this.count + 1}`);
      }
      const headStart = this.at + 2;
      const headEnd = indexOf(body, encoder.encode('\r\n\r\n'), headStart);
      if (headEnd === -1) {
        if (body.length - headStart > 65536) throw new Error(`multipart: part ${this.count + 1} has no end of headers`);
        break;
      }
      const headers: Record<string, string> = {};
      for (const line of decoder.decode(body.subarray(headStart, headEnd)).split('\r\n')) {
        const colon = line.indexOf(':');
        if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      const start = headEnd + 4;
      let stop: number;
      const length = headers['content-length'];
      if (length !== undefined) {
        if (!/^\d+$/.test(length)) throw new Error(`multipart: part ${this.count + 1} has Content-Length ${length}`);
        stop = start + Number(length);
        if (stop + this.next.length > body.length) break; // not all here yet
        if (!startsWith(body, stop, this.next)) {
          throw new Error(`multipart: part ${this.count + 1} is not ${length} bytes long`);
        }
      } else {
        stop = indexOf(body, this.next, start);
        if (stop === -1) break;
      }
      parts.push({ headers, data: body.subarray(start, stop) });
      this.count += 1;
      this.at = stop + this.next.length;
    }
    return parts;
  }
}

/** Splits a whole multipart body; throws on anything malformed (a cut-short body included). */
export function parseMultipart(body: Uint8Array, boundary: string): Part[] {
  const reader = new MultipartReader(boundary, body.length);
  const parts = reader.push(body);
  reader.end();
  return parts;
}
