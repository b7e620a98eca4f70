// A whole series' pixels in one DICOMweb request: the series resource asked for its bulk data
// (multipart/related; type="application/octet-stream", explicit VR little endian), every frame a
// part with its frame resource in Content-Location and its Content-Length. Instead of one request,
// one decode-worker round trip and one image object per slice. No Cornerstone here: the page
// starts the download before the viewer's chunk has loaded.

import { boundaryOf, MultipartReader } from './multipart';
import { dicomwebRoot } from './series';
import type { SeriesUids } from './types';

const EXPLICIT_LE = '1.2.840.10008.1.2.1';
export const BULK_ACCEPT = `multipart/related; type="application/octet-stream"; transfer-syntax=${EXPLICIT_LE}`;

/** "sop/frame" of a wadors imageId or a frame resource URL. */
export function frameKey(url: string): string | null {
  const match = /\/instances\/([^/]+)\/frames\/(\d+)$/.exec(url);
  return match ? `${match[1]}/${match[2]}` : null;
}

/**
 * The series' bulk data, downloading: `accepted` says (once the response starts) whether the
 * server sends it so (false on 406: load frame by frame instead); each frame goes to the sink
 * given to drainTo() (frames that came before are kept until then); `finished` resolves when the
 * body ended well, and rejects on a failed, cut-short or malformed response.
 */
export class SeriesDownload {
  readonly accepted: Promise<boolean>;
  readonly finished: Promise<void>;
  /** The body has ended well (all frames taken). */
  complete = false;
  received = 0;
  private early = new Map<string, Uint8Array>();
  private sink: ((key: string, data: Uint8Array) => void) | null = null;

  /** Called as the bytes arrive (the viewer shows them as progress). */
  onBytes: ((received: number) => void) | null = null;
  readonly expectedBytes: number;

  constructor(uids: SeriesUids, signal: AbortSignal, expectedBytes: number) {
    this.expectedBytes = expectedBytes;
    const url = `${dicomwebRoot()}/studies/${uids.study}/series/${uids.series}`;
    const response = fetch(url, { credentials: 'same-origin', signal, headers: { Accept: BULK_ACCEPT } });
    this.accepted = response.then((r) => r.status !== 406, () => true); // a failure shows in `finished`
    this.finished = response.then(async (r) => {
      if (r.status === 406) return;
      if (!r.ok || !r.body) throw new Error(`series pixel data: HTTP ${r.status}`);
      const reader = new MultipartReader(boundaryOf(r.headers.get('Content-Type') ?? ''), Math.min(expectedBytes, 4 << 20));
      const stream = r.body.getReader();
      for (;;) {
        const { done, value } = await stream.read();
        if (done) break;
        for (const part of reader.push(value)) this.take(part.headers['content-location'] ?? '', part.data);
        this.received = reader.received;
        this.onBytes?.(this.received);
      }
      reader.end();
      this.complete = true;
    });
    this.accepted.catch(() => undefined);
    this.finished.catch(() => undefined); // awaited (and reported) by the caller
  }

  /** From now on every frame goes to `sink`, the ones already here first. */
  drainTo(sink: (key: string, data: Uint8Array) => void): void {
    for (const [key, data] of this.early) sink(key, data);
    this.early.clear();
    this.sink = sink;
  }

  private take(location: string, data: Uint8Array): void {
    const key = frameKey(location);
    if (!key) throw new Error('series pixel data: a part without the Content-Location of its frame');
    if (this.sink) this.sink(key, data);
    else this.early.set(key, data);
  }
}
