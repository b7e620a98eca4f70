// The series' bulk data, fetched and unpacked off the page's main thread: the page is busy
// parsing the viewer's chunk and drawing while it downloads, and a stream read on the main
// thread waits for each pause (70 MB took 3.5 s there, 0.3 s here). Each frame is converted to
// Float32 here (pixels.ts) and handed over without a copy; the page only places it.

import { boundaryOf, MultipartReader } from './multipart';
import { frameToFloat32 } from './pixels';
import { frameKey, type FromDownload, type ToDownload } from './downloadProtocol';

const post = (message: FromDownload, transfer: Transferable[] = []): void => self.postMessage(message, { transfer });

async function download({ url, accept, plans, expectedBytes }: ToDownload): Promise<void> {
  const response = await fetch(url, { credentials: 'same-origin', headers: { Accept: accept } });
  post({ kind: 'status', status: response.status });
  if (response.status === 406) return;
  if (!response.ok || !response.body) throw new Error(`series pixel data: HTTP ${response.status}`);
  const frames = new Map(plans);
  const reader = new MultipartReader(boundaryOf(response.headers.get('Content-Type') ?? ''), Math.min(expectedBytes, 4 << 20));
  const stream = response.body.getReader();
  for (;;) {
    const { done, value } = await stream.read();
    if (done) break;
    const out: { key: string; data: Float32Array }[] = [];
    for (const part of reader.push(value)) {
      const key = frameKey(part.headers['content-location'] ?? '');
      if (!key) throw new Error('series pixel data: a part without the Content-Location of its frame');
      const plan = frames.get(key);
      if (plan) out.push({ key, data: frameToFloat32(part.data, plan) }); // else: not in this volume
    }
    post({ kind: 'frames', frames: out, received: reader.received }, out.map((f) => f.data.buffer));
  }
  reader.end();
  post({ kind: 'done' });
}

self.onmessage = (event: MessageEvent<ToDownload>): void => {
  download(event.data).catch((err: unknown) => post({ kind: 'error', message: err instanceof Error ? err.message : String(err) }));
};
