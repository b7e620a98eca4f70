import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Task } from '../api';
import { findSeriesUids, seriesPixelBytes } from './series';

const fetchMock = vi.fn<typeof fetch>();

function task(series: Record<string, unknown>): Task {
  return { id: 1, series: { id: 5, description: 'CHEST', modality: 'CT', ...series } } as unknown as Task;
}

function qido(...uids: [string, string][]): Response {
  const body = uids.map(([study, series]) => ({
    '0020000D': { vr: 'UI', Value: [study] },
    '0020000E': { vr: 'UI', Value: [series] },
  }));
  return new Response(JSON.stringify(body), { status: 200, headers: { 'Content-Type': 'application/dicom+json' } });
}

beforeEach(() => vi.stubGlobal('fetch', fetchMock));
afterEach(() => {
  vi.unstubAllGlobals();
  fetchMock.mockReset();
});

describe('the DICOM series of a task', () => {
  it('uses the UIDs the task API gives', async () => {
    const uids = await findSeriesUids(task({ study_instance_uid: '1.2', series_instance_uid: '1.2.3' }));
    expect(uids).toEqual({ study: '1.2', series: '1.2.3' });
    expect(fetchMock).not.toHaveBeenCalled();
  });

  it('falls back to the only QIDO-RS match for description and modality', async () => {
    fetchMock.mockResolvedValueOnce(qido(['9.8', '9.8.7']));
    expect(await findSeriesUids(task({}))).toEqual({ study: '9.8', series: '9.8.7' });
    const url = String(fetchMock.mock.calls[0]?.[0]);
    expect(url).toMatch(/^\/dicomweb\/series\?/);
    expect(url).toContain('Modality=CT');
    expect(url).toContain('SeriesDescription=CHEST');
  });

  it('refuses to guess between several matches', async () => {
    fetchMock.mockResolvedValueOnce(qido(['1', '1.1'], ['2', '2.1']));
    await expect(findSeriesUids(task({}))).rejects.toThrow(/2 matches/);
  });

  it('reports a failed search', async () => {
    fetchMock.mockResolvedValueOnce(new Response('nope', { status: 403 }));
    await expect(findSeriesUids(task({}))).rejects.toThrow(/HTTP 403/);
  });
});

describe('the bytes of a series as one bulk download', () => {
  const instance = (rows: number, columns: number, bits: number, extra: Record<string, unknown> = {}) => ({
    '00280010': { vr: 'US', Value: [rows] },
    '00280011': { vr: 'US', Value: [columns] },
    '00280100': { vr: 'US', Value: [bits] },
    ...extra,
  });

  it('adds up rows x columns x bytes per sample of every instance', () => {
    expect(seriesPixelBytes([instance(512, 512, 16), instance(512, 512, 16), instance(4, 3, 8)])).toBe(2 * 524288 + 12);
  });

  it('counts every frame of a multi-frame instance and the three samples of colour', () => {
    const cine = instance(8, 8, 8, { '00280008': { vr: 'IS', Value: ['30'] }, '00280002': { vr: 'US', Value: [3] } });
    expect(seriesPixelBytes([cine])).toBe(30 * 64 * 3);
  });

  it('is null where the viewer loads frame by frame', () => {
    expect(seriesPixelBytes([instance(8, 8, 16)])).toBeNull(); // one image
    const rgb16 = instance(8, 8, 16, { '00280002': { vr: 'US', Value: [3] } });
    expect(seriesPixelBytes([rgb16, rgb16])).toBeNull();
    expect(seriesPixelBytes([instance(8, 8, 32), instance(8, 8, 32)])).toBeNull();
    expect(seriesPixelBytes([instance(8, 8, 16), { '00280100': { vr: 'US', Value: [16] } }])).toBeNull();
  });
});
