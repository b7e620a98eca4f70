import { gzipSync } from 'node:zlib';
import { gunzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { json, lastCall } from './fetchMock';
import { ApiError, parseApiError } from './client';
import {
  acceptTask, createLesion, deleteLesion, fetchMaskData, getJob, listMaskVersions, maskConflict,
  maskDataUrl, parseMaskShape, postEffort, rejectTask, requestSegmentation, saveMask,
  saveMaskVersion, submitTask, updateLesion,
} from './endpoints';

const fetchMock = vi.fn<typeof fetch>();

beforeEach(() => {
  fetchMock.mockReset();
  vi.stubGlobal('fetch', fetchMock);
  vi.stubGlobal('document', { cookie: 'csrftoken=tok' });
});

afterEach(() => vi.unstubAllGlobals());

describe('lesions', () => {
  it('creates, updates the class and deletes', async () => {
    fetchMock.mockResolvedValueOnce(json(201, { id: 5, lesion_class: 'tumour' }));
    await createLesion(3, { lesion_class: 'tumour', key_slice: 4, box: [1, 2, 3, 4] });
    expect(lastCall(fetchMock).url).toBe('/api/tasks/3/lesions/');
    expect(lastCall(fetchMock).init.method).toBe('POST');
    expect(JSON.parse(String(lastCall(fetchMock).init.body))).toEqual({ lesion_class: 'tumour', key_slice: 4, box: [1, 2, 3, 4] });

    fetchMock.mockResolvedValueOnce(json(200, { id: 5, lesion_class: 'cyst' }));
    await updateLesion(5, { lesion_class: 'cyst' });
    expect(lastCall(fetchMock)).toMatchObject({ url: '/api/lesions/5/', init: { method: 'PATCH' } });
    expect(JSON.parse(String(lastCall(fetchMock).init.body))).toEqual({ lesion_class: 'cyst' });

    fetchMock.mockResolvedValueOnce(new Response(null, { status: 204 }));
    await expect(deleteLesion(5)).resolves.toBeNull();
    expect(lastCall(fetchMock)).toMatchObject({ url: '/api/lesions/5/', init: { method: 'DELETE' } });
    expect(lastCall(fetchMock).headers['X-CSRFToken']).toBe('tok');
  });

  it('lists the mask history', async () => {
    fetchMock.mockResolvedValueOnce(json(200, [{ id: 1 }, { id: 2 }]));
    await expect(listMaskVersions(9)).resolves.toEqual([{ id: 1 }, { id: 2 }]);
    expect(lastCall(fetchMock).url).toBe('/api/lesions/9/masks/');
  });
});

describe('mask versions', () => {
  it('posts multipart with the parent, the encoding and the gzipped voxels', async () => {
    fetchMock.mockResolvedValueOnce(json(201, { id: 8, parent: 7 }));
    const voxels = new Uint8Array([0, 1, 1, 0, 0, 0]);
    await saveMask(4, 7, voxels);
    const { url, init, headers } = lastCall(fetchMock);
    expect(url).toBe('/api/lesions/4/masks/');
    expect(init.method).toBe('POST');
    // multipart: the browser sets Content-Type with the boundary
    expect(headers['Content-Type']).toBeUndefined();
    expect(headers['X-CSRFToken']).toBe('tok');
    const form = init.body as FormData;
    expect(form.get('parent')).toBe('7');
    expect(form.get('encoding')).toBe('raw-gzip');
    const file = form.get('mask') as File;
    expect(file.name).toBe('mask.raw.gz');
    expect(new Uint8Array(gunzipSync(new Uint8Array(await file.arrayBuffer())))).toEqual(voxels);
  });

  it('sends an empty parent for a first mask (DRF reads it as null)', async () => {
    fetchMock.mockResolvedValueOnce(json(201, { id: 1, parent: null }));
    await saveMaskVersion(4, null, new Uint8Array([1]));
    expect((lastCall(fetchMock).init.body as FormData).get('parent')).toBe('');
  });

  it('recognises the stale-parent 409 and reads the latest version from it', async () => {
    fetchMock.mockResolvedValueOnce(json(409, {
      detail: 'the mask changed meanwhile: the latest version is 12, your edit started from 7; reload it and apply your edit again',
      parent: ['latest is 12'],
    }));
    const err = await saveMaskVersion(4, 7, new Uint8Array([1])).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(maskConflict(err)).toEqual({ message: expect.stringContaining('changed meanwhile') as unknown, latest: 12 });
  });

  it('tells the other 409s apart', () => {
    expect(maskConflict(parseApiError(409, { detail: 'the task is submitted: its lesions cannot be changed' }))).toBeNull();
    expect(maskConflict(parseApiError(400, { parent: ['latest is 3'] }))).toBeNull();
    expect(maskConflict(new Error('x'))).toBeNull();
    // the race lost at the database: no latest named
    expect(maskConflict(parseApiError(409, { detail: 'the mask changed meanwhile; reload it and apply your edit again' })))
      .toEqual({ message: 'the mask changed meanwhile; reload it and apply your edit again' });
    expect(maskConflict(parseApiError(409, { detail: 'the mask changed meanwhile: ...', parent: ['latest is None'] })))
      .toMatchObject({ latest: null });
  });

  it('downloads and inflates the voxels with their shape', async () => {
    const voxels = new Uint8Array(2 * 3 * 4).map((_, i) => (i % 5 === 0 ? 1 : 0));
    fetchMock.mockResolvedValueOnce(new Response(new Uint8Array(gzipSync(voxels)), {
      status: 200,
      headers: { 'Content-Type': 'application/octet-stream', 'X-Mask-Shape': '2,3,4' },
    }));
    const data = await fetchMaskData(6);
    expect(lastCall(fetchMock).url).toBe('/api/masks/6/data/');
    expect(data.shape).toEqual([2, 3, 4]);
    expect(data.voxels).toEqual(voxels);
  });

  it('refuses a payload that does not match its shape', async () => {
    fetchMock.mockResolvedValueOnce(new Response(new Uint8Array(gzipSync(new Uint8Array(5))), {
      status: 200, headers: { 'X-Mask-Shape': '2,3,4' },
    }));
    await expect(fetchMaskData(6)).rejects.toThrow(/5 voxels/);
  });

  it('parses error bodies of binary requests', async () => {
    fetchMock.mockResolvedValueOnce(json(404, { detail: 'not found' }));
    await expect(fetchMaskData(6)).rejects.toMatchObject({ status: 404, message: 'not found' });
  });

  it('parses X-Mask-Shape strictly', () => {
    expect(parseMaskShape('10, 20,30')).toEqual([10, 20, 30]);
    expect(() => parseMaskShape(null)).toThrow(/mask shape/);
    expect(() => parseMaskShape('1,2')).toThrow();
    expect(maskDataUrl(3, 'nifti')).toBe('/api/masks/3/data/?encoding=nifti');
  });
});

describe('segmentation and jobs', () => {
  it('sends box, points, mask_slice and z_range as given', async () => {
    fetchMock.mockResolvedValueOnce(json(202, { id: 77, state: 'queued' }));
    const prompt = {
      key_slice: 5, box: [1, 2, 10, 12] as [number, number, number, number],
      positive_points: [[3, 4, 5]] as [number, number, number][], negative_points: [[9, 9, 5]] as [number, number, number][],
      mask_slice: 5, z_range: [2, 8] as [number, number],
    };
    await expect(requestSegmentation(3, prompt)).resolves.toMatchObject({ id: 77 });
    expect(lastCall(fetchMock).url).toBe('/api/lesions/3/segment/');
    expect(JSON.parse(String(lastCall(fetchMock).init.body))).toEqual(prompt);

    fetchMock.mockResolvedValueOnce(json(200, { id: 77, state: 'running', progress: 0.5 }));
    await getJob(77);
    expect(lastCall(fetchMock)).toMatchObject({ url: '/api/jobs/77/', init: { method: 'GET' } });
  });
});

describe('effort, submit and review', () => {
  it('posts the EffortSerializer payload, with keepalive when asked', async () => {
    const batch = {
      intervals: [{ started_at: '2026-11-27T10:00:00.000Z', ended_at: '2026-11-27T10:00:30.000Z', lesion: 4 }],
      interactions: [{ tool: 'brush' as const, at: '2026-11-27T10:00:10.000Z', lesion: 4, slice_index: 12 }],
    };
    fetchMock.mockResolvedValueOnce(json(201, batch));
    await postEffort(2, batch, { keepalive: true });
    expect(lastCall(fetchMock).url).toBe('/api/tasks/2/effort/');
    expect(lastCall(fetchMock).init.keepalive).toBe(true);
    expect(JSON.parse(String(lastCall(fetchMock).init.body))).toEqual(batch);
  });

  it('submits and reviews', async () => {
    fetchMock.mockResolvedValueOnce(json(200, { id: 2, state: 'submitted' }));
    await expect(submitTask(2)).resolves.toMatchObject({ state: 'submitted' });
    expect(lastCall(fetchMock).url).toBe('/api/tasks/2/submit/');

    fetchMock.mockResolvedValueOnce(json(201, { id: 1, decision: 'accept', comment: '' }));
    await acceptTask(2);
    expect(JSON.parse(String(lastCall(fetchMock).init.body))).toEqual({ decision: 'accept', comment: '' });

    fetchMock.mockResolvedValueOnce(json(201, { id: 2, decision: 'reject', comment: 'slice 4' }));
    await rejectTask(2, 'slice 4');
    expect(lastCall(fetchMock).url).toBe('/api/tasks/2/review/');
    expect(JSON.parse(String(lastCall(fetchMock).init.body))).toEqual({ decision: 'reject', comment: 'slice 4' });
  });

  it('surfaces the submit conflict of an unmasked lesion', async () => {
    fetchMock.mockResolvedValueOnce(json(409, { detail: 'lesions [4] have no mask yet: segment or delete them first' }));
    await expect(submitTask(2)).rejects.toMatchObject({ status: 409, message: expect.stringContaining('no mask yet') as unknown });
  });
});
