// Multipart uploads with progress: fetch cannot report upload progress, XMLHttpRequest can.

import { ApiError, csrfToken, CSRF_HEADER, parseApiError } from './client';
import { isImportReport } from './endpoints';
import type { ImportReport, VolumeUploadResult } from './types';

const seg = encodeURIComponent;

export interface UploadOptions {
  /** Bytes of the request body sent so far (`total` is 0 while the browser does not know it). */
  onProgress?: (loaded: number, total: number) => void;
  /** Every byte is sent: the server is now processing (imports answer when they are done). */
  onUploaded?: () => void;
  signal?: AbortSignal;
}

export interface UploadResponse {
  status: number;
  body: unknown;
}

function parseBody(xhr: XMLHttpRequest): unknown {
  const text = xhr.responseText;
  if (!text) return null;
  const type = xhr.getResponseHeader('Content-Type') ?? '';
  if (type.includes('json')) {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return text;
    }
  }
  return text;
}

/** POSTs a form and resolves with the status and parsed body of any HTTP answer. */
export function postForm(url: string, form: FormData, opts: UploadOptions = {}): Promise<UploadResponse> {
  return new Promise((resolve, reject) => {
    const abortError = (): DOMException => new DOMException('The upload was aborted.', 'AbortError');
    if (opts.signal?.aborted) {
      reject(abortError());
      return;
    }
    const xhr = new XMLHttpRequest();
    xhr.open('POST', url);
    xhr.withCredentials = true;
    xhr.setRequestHeader('Accept', 'application/json');
    const token = csrfToken();
    if (token) xhr.setRequestHeader(CSRF_HEADER, token);

    const onAbort = (): void => xhr.abort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const done = (): void => opts.signal?.removeEventListener('abort', onAbort);

    xhr.upload.addEventListener('progress', (event) => {
      opts.onProgress?.(event.loaded, event.lengthComputable ? event.total : 0);
    });
    xhr.upload.addEventListener('load', () => opts.onUploaded?.());
    xhr.addEventListener('load', () => {
      done();
      resolve({ status: xhr.status, body: parseBody(xhr) });
    });
    xhr.addEventListener('error', () => {
      done();
      reject(new ApiError(0, 'Could not reach the server. Check your connection and try again.'));
    });
    xhr.addEventListener('abort', () => {
      done();
      reject(abortError());
    });
    xhr.send(form);
  });
}

function ok(status: number): boolean {
  return status >= 200 && status < 300;
}

/**
 * Imports DICOM files and zip archives (one request, field `files` repeated).
 * Resolves with the import report: 201 something imported, 200 all already there,
 * 400 nothing could be imported. Any other answer throws an ApiError.
 */
export async function importStudies(slug: string, files: File[], opts: UploadOptions = {}): Promise<ImportReport> {
  const form = new FormData();
  for (const file of files) form.append('files', file, file.name);
  const { status, body } = await postForm(`/api/projects/${seg(slug)}/imports/`, form, opts);
  if ((ok(status) || status === 400) && isImportReport(body)) return body;
  throw parseApiError(status, body);
}

/** Imports one image (NIfTI, NRRD, MHA) or video file as a series and queues its task. */
export async function uploadVolume(
  slug: string,
  file: File,
  description: string,
  opts: UploadOptions = {},
): Promise<VolumeUploadResult> {
  const form = new FormData();
  form.append('file', file, file.name);
  form.append('description', description);
  const { status, body } = await postForm(`/api/projects/${seg(slug)}/volumes/`, form, opts);
  if (ok(status)) return body as VolumeUploadResult;
  throw parseApiError(status, body);
}
