// multipart/related bodies (RFC 2387) as the server's DICOMweb sends them: each part's headers,
// then its bytes. A part with Content-Length is skipped over without reading its bytes; only a
// part without one is searched for the next boundary.

export interface Part {
  /** Header names in lower case. */
  headers: Record<string, string>;
  /** The part's bytes (a view into the body, not a copy). */
  data: Uint8Array;
}

const CRLF = [13, 10];
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
  const first = bytes[0];
  for (let i = body.indexOf(first as number, from); i !== -1; i = body.indexOf(first as number, i + 1)) {
    if (startsWith(body, i, bytes)) return i;
  }
  return -1;
}

/** Splits a whole multipart body; throws on anything malformed (a cut-short body included). */
export function parseMultipart(body: Uint8Array, boundary: string): Part[] {
  const delimiter = encoder.encode(`--${boundary}`);
  const next = encoder.encode(`\r\n--${boundary}`);
  const headerEnd = encoder.encode('\r\n\r\n');
  const parts: Part[] = [];
  if (!startsWith(body, 0, delimiter)) throw new Error('multipart body does not start with its boundary');
  let at = delimiter.length;
  for (;;) {
    if (startsWith(body, at, [45, 45])) return parts; // "--": the closing delimiter
    if (!startsWith(body, at, CRLF)) throw new Error(`multipart: no line break after boundary ${parts.length + 1}`);
    at += 2;
    const end = indexOf(body, headerEnd, at);
    if (end === -1) throw new Error(`multipart: part ${parts.length + 1} has no end of headers`);
    const headers: Record<string, string> = {};
    for (const line of decoder.decode(body.subarray(at, end)).split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const start = end + 4;
    let stop: number;
    const length = headers['content-length'];
    if (length !== undefined) {
      stop = start + Number(length);
      if (!Number.isInteger(Number(length)) || stop + next.length > body.length || !startsWith(body, stop, next)) {
        throw new Error(`multipart: part ${parts.length + 1} is not ${length} bytes long (body cut short?)`);
      }
    } else {
      stop = indexOf(body, next, start);
      if (stop === -1) throw new Error(`multipart: part ${parts.length + 1} has no closing boundary`);
    }
    parts.push({ headers, data: body.subarray(start, stop) });
    at = stop + next.length;
  }
}
