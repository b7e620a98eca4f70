// A whole series' pixels in one DICOMweb request: the series resource asked for its bulk data
// (multipart/related; type="application/octet-stream", explicit VR little endian), every frame a
// part with its frame resource in Content-Location and its Content-Length. Instead of one request,
// one decode-worker round trip and one image object per slice. Fetched, split and converted to
// Float32 in a worker (download.worker.ts). No Cornerstone here: the page starts the download
// before the viewer's chunk has loaded.

import type { FromDownload, ToDownload } from './downloadProtocol';
import type { FramePlan } from './pixels';
import { dicomwebRoot } from './series';
import type { SeriesUids } from './types';

export { frameKey } from './downloadProtocol';

const EXPLICIT_LE = '1.2.840.10008.1.2.1';
export const BULK_ACCEPT = `multipart/related; type="application/octet-stream"; transfer-syntax=${EXPLICIT_LE}`;

/** Where a frame goes: its key ("sop/frame") and its values, modality LUT applied. */
export type FrameSink = (key: string, data: Float32Array) => void;

/**
 * The series' bulk data, downloading: `accepted` says (once the response starts) whether the
 * server sends it so (false on 406: load frame by frame instead); each frame goes to the sink
 * given to drainTo() (frames that came before are kept until then); `finished` resolves when the
 * body ended well, and rejects on a failed, cut-short or malformed response or on abort.
 */
export class SeriesDownload {
  readonly accepted: Promise<boolean>;
  readonly finished: Promise<void>;
  /** The body has ended well (all frames taken). */
  complete = false;
  received = 0;
  private early = new Map<string, Float32Array>();
  private sink: FrameSink | null = null;

  /** Called as the bytes arrive (the viewer shows them as progress). */
  onBytes: ((received: number) => void) | null = null;
  readonly expectedBytes: number;

  constructor(uids: SeriesUids, signal: AbortSignal, expectedBytes: number, plans: Map<string, FramePlan>) {
    this.expectedBytes = expectedBytes;
    const worker = new Worker(new URL('./download.worker.ts', import.meta.url), { type: 'module' });
    let accept: (sent: boolean) => void = () => undefined;
    this.accepted = new Promise((resolve) => (accept = resolve));
    this.finished = new Promise<void>((resolve, reject) => {
      const stop = (error?: unknown): void => {
        worker.terminate();
        signal.removeEventListener('abort', onAbort);
        accept(true); // a failure before the response shows in `finished`
        if (error === undefined) resolve();
        else reject(error);
      };
      const onAbort = (): void => stop(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      worker.onerror = (event) => stop(new Error(`series pixel data: the download worker failed (${event.message})`));
      worker.onmessage = ({ data: message }: MessageEvent<FromDownload>) => {
        if (message.kind === 'status') {
          accept(message.status !== 406);
          if (message.status === 406) stop();
        } else if (message.kind === 'frames') {
          try {
            for (const { key, data } of message.frames) this.take(key, data);
          } catch (err) {
            stop(err);
            return;
          }
          this.received = message.received;
          this.onBytes?.(this.received);
        } else if (message.kind === 'done') {
          performance.mark('viewer:downloaded');
          this.complete = true;
          stop();
        } else {
          stop(new Error(message.message));
        }
      };
      if (signal.aborted) return onAbort();
      const url = `${dicomwebRoot()}/studies/${uids.study}/series/${uids.series}`;
      const request: ToDownload = { url, accept: BULK_ACCEPT, plans: [...plans], expectedBytes };
      worker.postMessage(request);
    });
    this.finished.catch(() => undefined); // awaited (and reported) by the caller
  }

  /** From now on every frame goes to `sink`, the ones already here first. */
  drainTo(sink: FrameSink): void {
    for (const [key, data] of this.early) sink(key, data);
    this.early.clear();
    this.sink = sink;
  }

  private take(key: string, data: Float32Array): void {
    if (this.sink) this.sink(key, data);
    else this.early.set(key, data);
  }
}
