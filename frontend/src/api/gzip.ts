// gzip for mask payloads, by the browser's own CompressionStream / DecompressionStream (every
// browser the viewer supports has both: Chromium 80+, Firefox 113+, Safari 16.4+; Node 18+ runs
// the tests).

export type Bytes = Uint8Array<ArrayBuffer>;

export class GzipError extends Error {
  override name = 'GzipError';
}

type Transform = ReadableWritablePair<Uint8Array, Uint8Array>;

async function through(data: Uint8Array, transform: Transform): Promise<Bytes> {
  const source = new Blob([data.slice()]).stream().pipeThrough(transform);
  return new Uint8Array(await new Response(source).arrayBuffer());
}

export async function gzip(data: Uint8Array): Promise<Bytes> {
  return through(data, new CompressionStream('gzip') as unknown as Transform);
}

/** Inflates one gzip member; corrupt or truncated data raises GzipError. */
export async function gunzip(data: Uint8Array): Promise<Bytes> {
  try {
    return await through(data, new DecompressionStream('gzip') as unknown as Transform);
  } catch (err) {
    throw new GzipError(`the gzip data could not be read: ${err instanceof Error ? err.message : String(err)}`);
  }
}
