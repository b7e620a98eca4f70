// What the page and the download worker (download.worker.ts) say to each other.

import type { FramePlan } from './pixels';

/** "sop/frame" of a wadors imageId or a frame resource URL. */
export function frameKey(url: string): string | null {
  const match = /\/instances\/([^/]+)\/frames\/(\d+)$/.exec(url);
  return match ? `${match[1]}/${match[2]}` : null;
}

/** The one request to the worker: what to fetch, and how to convert each frame it wants. */
export interface ToDownload {
  url: string;
  accept: string;
  plans: [string, FramePlan][];
  expectedBytes: number;
}

export type FromDownload =
  | { kind: 'status'; status: number }
  /** The frames a chunk of the body completed (Float32 values), and the bytes taken so far. */
  | { kind: 'frames'; frames: { key: string; data: Float32Array }[]; received: number }
  | { kind: 'done' }
  | { kind: 'error'; message: string };
