// Pre-segmentation of one lesion: POST /lesions/<id>/segment/, poll GET /jobs/<id>/ with
// progress, then fetch the mask version the job saved (GET /masks/<id>/ and its data).
//
// The server saves the model's mask on top of the lesion's latest version, so local edits must
// be saved first (a "propagate my correction" prompt reads the *saved* mask anyway): given the
// autosave, the request waits for the lesion to be saved and refuses to start while it is in
// conflict or error. Given `apply`, the result is put in the labelmap without marking the
// lesion dirty and adopted as the parent of the next save.

import { ApiError } from '../api/client';
import { fetchMaskData, getJob, getMaskVersion, requestSegmentation } from '../api/endpoints';
import type { Box, InferenceJob, MaskData, MaskVersion, Point, SegmentRequest } from '../api/types';
import { attemptSuffix, noticeLine } from '../ui/jobNotice';
import type { Autosave } from './autosave';

export interface SegmentApi {
  request(lesionId: number, prompt: SegmentRequest, opts: { signal?: AbortSignal }): Promise<InferenceJob>;
  getJob(id: number, opts: { signal?: AbortSignal }): Promise<InferenceJob>;
  getVersion(id: number, opts: { signal?: AbortSignal }): Promise<MaskVersion>;
  fetchData(id: number, opts: { signal?: AbortSignal }): Promise<MaskData>;
}

export const defaultSegmentApi: SegmentApi = {
  request: (lesionId, prompt, opts) => requestSegmentation(lesionId, prompt, opts),
  getJob: (id, opts) => getJob(id, opts),
  getVersion: (id, opts) => getMaskVersion(id, opts),
  fetchData: (id, opts) => fetchMaskData(id, opts),
};

export interface SegmentProgress {
  job: InferenceJob;
  state: InferenceJob['state'];
  /** 0..1; null while the job has no total yet (queued, loading). */
  fraction: number | null;
  /** "Queued", "Segmenting… 40 %", "Worker lost; re-queued (attempt 2 of 3) · waiting for a worker" */
  label: string;
}

export interface SegmentResult {
  job: InferenceJob;
  version: MaskVersion;
  mask: MaskData;
}

export interface SegmentOptions {
  api?: SegmentApi;
  /** First poll delay; grows by half each poll up to maxPollMs. */
  pollMs?: number;
  maxPollMs?: number;
  /** Give up waiting after this long (the job may still finish on the server). */
  timeoutMs?: number;
  /** Consecutive failed polls tolerated (network blips) before giving up. */
  maxPollErrors?: number;
  signal?: AbortSignal;
  onProgress?: (progress: SegmentProgress) => void;
  /** Saves the lesion before asking, and adopts the result after `apply`. */
  autosave?: Autosave;
  /** Puts the result in the labelmap (called before the promise resolves). */
  apply?: (result: SegmentResult) => void;
}

export class SegmentJobError extends Error {
  readonly job: InferenceJob | null;

  constructor(message: string, job: InferenceJob | null = null, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'SegmentJobError';
    this.job = job;
  }
}

/** A job queued longer than this says that it waits for a worker, rather than just "Queued". */
export const LONG_QUEUE_MS = 10_000;

/** What a job waiting in the queue shows: why it waits, once that is worth saying. */
function queuedLabel(job: InferenceJob, now: number): string {
  const line = noticeLine(job.notice ?? '');
  if (line) return `${line} · waiting for a worker`;
  const waited = now - Date.parse(job.created);
  if (waited >= LONG_QUEUE_MS) return `Queued ${Math.round(waited / 1000)} s: waiting for a free worker`;
  return 'Queued';
}

export function progressOf(job: InferenceJob, now: number = Date.now()): SegmentProgress {
  const fraction = job.progress_total > 0 ? Math.min(1, job.progress_done / job.progress_total) : null;
  const again = attemptSuffix(job.attempts ?? 0);
  const label = job.state === 'queued'
    ? queuedLabel(job, now)
    : job.state === 'running'
      ? fraction === null ? `Segmenting…${again}` : `Segmenting… ${Math.round(fraction * 100)} %${again}`
      : job.state === 'succeeded' ? 'Done' : 'Failed';
  return { job, state: job.state, fraction: job.state === 'succeeded' ? 1 : fraction, label };
}

/** [x0, y0, x1, y1] from two corners of a drag, in any order, clamped to the slice. */
export function boxFromCorners(a: [number, number], b: [number, number], width: number, height: number): Box {
  const clamp = (v: number, max: number): number => Math.min(max - 1, Math.max(0, Math.round(v)));
  const [x0, x1] = [clamp(a[0], width), clamp(b[0], width)].sort((p, q) => p - q) as [number, number];
  const [y0, y1] = [clamp(a[1], height), clamp(b[1], height)].sort((p, q) => p - q) as [number, number];
  return [x0, y0, x1, y1];
}

/** A box on the key slice, optionally refined by clicks ([x, y, z]). */
export function boxPrompt(
  keySlice: number,
  box: Box,
  { positive = [], negative = [], zRange }: { positive?: Point[]; negative?: Point[]; zRange?: [number, number] } = {},
): SegmentRequest {
  const prompt: SegmentRequest = { key_slice: keySlice, box };
  if (positive.length) prompt.positive_points = positive;
  if (negative.length) prompt.negative_points = negative;
  if (zRange) prompt.z_range = zRange;
  return prompt;
}

/** "Propagate my correction": from slice `maskSlice` of the saved mask, within `zRange`. */
export function propagatePrompt(maskSlice: number, zRange?: [number, number]): SegmentRequest {
  return zRange ? { mask_slice: maskSlice, z_range: zRange } : { mask_slice: maskSlice };
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason ?? new DOMException('Aborted', 'AbortError'));
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason ?? new DOMException('Aborted', 'AbortError'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function transient(err: unknown): boolean {
  return err instanceof ApiError && (err.status === 0 || err.status === 408 || err.status === 429 || err.status >= 500);
}

/**
 * Segments the lesion and resolves with the saved mask version and its voxels. Rejects with a
 * SegmentJobError carrying the job's own error message when the job fails, and with the API's
 * message when the request is refused (e.g. "mask_slice needs a saved mask").
 */
export async function runSegmentation(
  lesionId: number,
  prompt: SegmentRequest,
  options: SegmentOptions = {},
): Promise<SegmentResult> {
  const {
    api = defaultSegmentApi, pollMs = 500, maxPollMs = 2000, timeoutMs = 5 * 60_000,
    maxPollErrors = 5, signal, onProgress, autosave, apply,
  } = options;

  if (autosave?.state(lesionId)) {
    const saved = await autosave.saveNow(lesionId);
    if (saved.status !== 'saved') {
      throw new SegmentJobError(
        saved.status === 'conflict'
          ? 'Resolve the save conflict of this lesion before segmenting it.'
          : `Save this lesion before segmenting it: ${saved.message}`,
      );
    }
  }

  let job: InferenceJob;
  try {
    job = await api.request(lesionId, prompt, { signal });
  } catch (err) {
    if (err instanceof ApiError) throw new SegmentJobError(err.message, null, err);
    throw err;
  }
  onProgress?.(progressOf(job));

  const started = Date.now();
  let delay = pollMs;
  let errors = 0;
  while (job.state === 'queued' || job.state === 'running') {
    if (Date.now() - started >= timeoutMs) {
      throw new SegmentJobError(
        `The segmentation did not finish within ${Math.round(timeoutMs / 1000)} s (job ${job.id} is ${job.state}).`,
        job,
      );
    }
    await sleep(delay, signal);
    delay = Math.min(maxPollMs, Math.round(delay * 1.5));
    try {
      job = await api.getJob(job.id, { signal });
      errors = 0;
    } catch (err) {
      if (transient(err) && ++errors <= maxPollErrors) continue;
      if (err instanceof ApiError) throw new SegmentJobError(`Lost track of job ${job.id}: ${err.message}`, job, err);
      throw err;
    }
    onProgress?.(progressOf(job));
  }

  if (job.state === 'failed') {
    throw new SegmentJobError(job.error || `Segmentation job ${job.id} failed.`, job);
  }
  if (job.result === null) {
    throw new SegmentJobError(`Segmentation job ${job.id} finished without a mask.`, job);
  }
  let version: MaskVersion;
  let mask: MaskData;
  try {
    [version, mask] = await Promise.all([
      api.getVersion(job.result, { signal }),
      api.fetchData(job.result, { signal }),
    ]);
  } catch (err) {
    if (err instanceof ApiError) throw new SegmentJobError(`Could not load the new mask: ${err.message}`, job, err);
    throw err;
  }
  const result = { job, version, mask };
  if (apply) {
    if (autosave?.state(lesionId)) {
      autosave.withoutAutosave(lesionId, () => apply(result));
      autosave.adopt(lesionId, version);
    } else {
      apply(result);
    }
  }
  return result;
}
