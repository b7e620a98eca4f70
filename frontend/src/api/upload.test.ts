import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiError } from './client';
import { importStudies, uploadVolume } from './upload';

// A stand-in for XMLHttpRequest: records the request, and lets the test play the events.
class FakeXhr {
  static last: FakeXhr | null = null;
  method = '';
  url = '';
  headers: Record<string, string> = {};
  body: unknown = null;
  withCredentials = false;
  status = 0;
  responseText = '';
  responseHeaders: Record<string, string> = {};
  aborted = false;
  private listeners: Record<string, (() => void)[]> = {};
  private uploadListeners: Record<string, ((e: { loaded: number; total: number; lengthComputable: boolean }) => void)[]> = {};
  upload = {
    addEventListener: (type: string, fn: (e: { loaded: number; total: number; lengthComputable: boolean }) => void) => {
      (this.uploadListeners[type] ??= []).push(fn);
    },
  };

  constructor() {
    FakeXhr.last = this;
  }
  open(method: string, url: string): void { this.method = method; this.url = url; }
  setRequestHeader(name: string, value: string): void { this.headers[name] = value; }
  getResponseHeader(name: string): string | null { return this.responseHeaders[name] ?? null; }
  addEventListener(type: string, fn: () => void): void { (this.listeners[type] ??= []).push(fn); }
  send(body: unknown): void { this.body = body; }
  abort(): void { this.aborted = true; this.fire('abort'); }

  fire(type: string): void { for (const fn of this.listeners[type] ?? []) fn(); }
  progress(loaded: number, total: number): void {
    for (const fn of this.uploadListeners.progress ?? []) fn({ loaded, total, lengthComputable: true });
  }
  uploaded(): void { for (const fn of this.uploadListeners.load ?? []) fn({ loaded: 0, total: 0, lengthComputable: false }); }
  respond(status: number, body: unknown): void {
    this.status = status;
    this.responseText = JSON.stringify(body);
    this.responseHeaders['Content-Type'] = 'application/json';
    this.fire('load');
  }
}

function current(): FakeXhr {
  if (!FakeXhr.last) throw new Error('no request was sent');
  return FakeXhr.last;
}

const report = {
  counts: { files: 2, 'files imported': 1, 'files rejected': 1, series: 1, 'series imported': 1 },
  series: [],
  files: [],
};

beforeEach(() => {
  FakeXhr.last = null;
  vi.stubGlobal('XMLHttpRequest', FakeXhr);
  vi.stubGlobal('document', { cookie: 'csrftoken=tok' });
});

afterEach(() => {
  vi.unstubAllGlobals();
});

describe('importStudies', () => {
  it('posts every file as `files` with the CSRF token and reports progress', async () => {
    const progress: [number, number][] = [];
    let uploaded = false;
    const files = [new File(['a'], 'one.dcm'), new File(['bb'], 'two.zip')];
    const done = importStudies('liver ct', files, {
      onProgress: (l, t) => progress.push([l, t]),
      onUploaded: () => { uploaded = true; },
    });
    const xhr = current();
    expect(xhr.method).toBe('POST');
    expect(xhr.url).toBe('/api/projects/liver%20ct/imports/');
    expect(xhr.headers['X-CSRFToken']).toBe('tok');
    expect(xhr.withCredentials).toBe(true);
    const form = xhr.body as FormData;
    expect(form.getAll('files').map((f) => (f as File).name)).toEqual(['one.dcm', 'two.zip']);

    xhr.progress(1, 3);
    xhr.progress(3, 3);
    xhr.uploaded();
    xhr.respond(201, report);
    await expect(done).resolves.toEqual(report);
    expect(progress).toEqual([[1, 3], [3, 3]]);
    expect(uploaded).toBe(true);
  });

  it('resolves with the report when nothing could be imported (400)', async () => {
    const done = importStudies('p', [new File(['x'], 'x.txt')]);
    current().respond(400, report);
    await expect(done).resolves.toEqual(report);
  });

  it('rejects other errors as ApiError with their fields', async () => {
    const done = importStudies('p', [new File(['x'], 'x.dcm')]);
    current().respond(400, { detail: 'the upload is larger than the limit', files: ['at most 10 bytes'] });
    const err = await done.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ status: 400, message: 'the upload is larger than the limit', fields: { files: ['at most 10 bytes'] } });
  });

  it('turns a network failure into status 0 and an abort into AbortError', async () => {
    const failed = importStudies('p', [new File(['x'], 'x.dcm')]);
    current().fire('error');
    await expect(failed).rejects.toMatchObject({ status: 0 });

    const controller = new AbortController();
    const aborted = importStudies('p', [new File(['x'], 'x.dcm')], { signal: controller.signal });
    controller.abort();
    const err = await aborted.catch((e: unknown) => e);
    expect(current().aborted).toBe(true);
    expect((err as DOMException).name).toBe('AbortError');
  });
});

describe('uploadVolume', () => {
  it('posts the file and its description and resolves with the new task', async () => {
    const done = uploadVolume('p', new File(['nii'], 'scan.nii.gz'), 'Baseline');
    const xhr = current();
    expect(xhr.url).toBe('/api/projects/p/volumes/');
    const form = xhr.body as FormData;
    expect((form.get('file') as File).name).toBe('scan.nii.gz');
    expect(form.get('description')).toBe('Baseline');
    const body = { series: 1, volume: 2, task: 3, size: [4, 4, 4], spacing: [1, 1, 1], lesions: [] };
    xhr.respond(201, body);
    await expect(done).resolves.toEqual(body);
  });

  it('rejects with the server message', async () => {
    const done = uploadVolume('p', new File(['?'], 'scan.png'), '');
    current().respond(400, { detail: "'scan.png' is not a supported image" });
    await expect(done).rejects.toMatchObject({ status: 400, message: "'scan.png' is not a supported image" });
  });
});
