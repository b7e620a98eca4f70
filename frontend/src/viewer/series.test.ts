import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Task } from '../api';
import { findSeriesUids } from './series';

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
