import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiError } from '../api/client';
import type { InferenceJob, MaskData, MaskVersion } from '../api/types';
import { Autosave } from './autosave';
import { LabelmapHistory } from './history';
import { extractMask, replaceSegment } from './labelmap';
import {
  boxFromCorners, boxPrompt, progressOf, propagatePrompt, runSegmentation, SegmentJobError, type SegmentApi,
} from './segmentJob';

function job(overrides: Partial<InferenceJob> = {}): InferenceJob {
  return {
    id: 50, kind: 'segment', lesion: 1, prompt: {}, backend: 'b', model_version: null, queue: 'gpu-interactive',
    state: 'queued', progress: 0, progress_done: 0, progress_total: 0, error: '', notice: '', attempts: 0, worker: '',
    heartbeat_at: null, timings: {}, result: null, created: '', started_at: null, finished_at: null, ...overrides,
  };
}

const version = (id: number): MaskVersion => ({ id, parent: null, lesion: 1, source: 'model', voxel_count: 2, created: '', author: 'medsam2', author_user: null, author_model: null, author_backend: '' });
const mask: MaskData = { shape: [1, 1, 4], voxels: Uint8Array.from([0, 1, 1, 0]) };

function fakeApi(states: InferenceJob[]): SegmentApi & { polls: number } {
  const api = {
    polls: 0,
    request: vi.fn(async () => job()),
    getJob: vi.fn(async () => {
      const next = states[Math.min(api.polls, states.length - 1)]!;
      api.polls++;
      return next;
    }),
    getVersion: vi.fn(async (id: number) => version(id)),
    fetchData: vi.fn(async () => mask),
  };
  return api;
}

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

describe('runSegmentation', () => {
  it('sends the prompt, reports progress and resolves with the new version and its voxels', async () => {
    const api = fakeApi([
      job({ state: 'running', progress_done: 0, progress_total: 0 }),
      job({ state: 'running', progress_done: 2, progress_total: 5, progress: 0.4 }),
      job({ state: 'succeeded', progress_done: 5, progress_total: 5, progress: 1, result: 77 }),
    ]);
    const progress: string[] = [];
    const promise = runSegmentation(1, boxPrompt(4, [1, 2, 3, 4]), {
      api, pollMs: 100, onProgress: (p) => progress.push(p.label),
    });
    await vi.runAllTimersAsync();
    const result = await promise;
    expect(api.request).toHaveBeenCalledWith(1, { key_slice: 4, box: [1, 2, 3, 4] }, { signal: undefined });
    expect(progress).toEqual(['Queued', 'Segmenting…', 'Segmenting… 40 %', 'Done']);
    expect(result.version.id).toBe(77);
    expect(result.mask).toBe(mask);
    expect(api.getVersion).toHaveBeenCalledWith(77, { signal: undefined });
  });

  it("rejects with the job's own error message", async () => {
    const api = fakeApi([job({ state: 'failed', error: 'the lesion was deleted while the job ran' })]);
    const promise = runSegmentation(1, boxPrompt(4, [1, 2, 3, 4]), { api, pollMs: 10 });
    const caught = promise.catch((e: unknown) => e);
    await vi.runAllTimersAsync();
    const err = await caught;
    expect(err).toBeInstanceOf(SegmentJobError);
    expect((err as SegmentJobError).message).toBe('the lesion was deleted while the job ran');
    expect((err as SegmentJobError).job?.state).toBe('failed');
    expect(api.fetchData).not.toHaveBeenCalled();
  });

  it("rejects with the API's message when the request is refused", async () => {
    const api = fakeApi([]);
    api.request = vi.fn(async () => {
      throw new ApiError(400, 'mask_slice needs a saved mask: save the corrected mask first');
    });
    await expect(runSegmentation(1, propagatePrompt(3), { api })).rejects.toThrow('mask_slice needs a saved mask');
  });

  it('rides out a few failed polls, then gives up', async () => {
    const api = fakeApi([job({ state: 'succeeded', result: 5 })]);
    let failures = 2;
    const getJob = api.getJob;
    api.getJob = vi.fn(async (id: number, opts: { signal?: AbortSignal }) => {
      if (failures-- > 0) throw new ApiError(502, 'Bad Gateway');
      return getJob(id, opts);
    });
    const ok = runSegmentation(1, boxPrompt(0, [0, 0, 1, 1]), { api, pollMs: 10 });
    await vi.runAllTimersAsync();
    await expect(ok).resolves.toMatchObject({ version: { id: 5 } });

    api.getJob = vi.fn(async () => { throw new ApiError(0, 'offline'); });
    const lost = runSegmentation(1, boxPrompt(0, [0, 0, 1, 1]), { api, pollMs: 10, maxPollErrors: 2 }).catch((e: unknown) => e);
    await vi.runAllTimersAsync();
    expect(await lost).toMatchObject({ name: 'SegmentJobError', message: 'Lost track of job 50: offline' });
  });

  it('times out a job that never finishes', async () => {
    const api = fakeApi([job({ state: 'queued' })]);
    const caught = runSegmentation(1, boxPrompt(0, [0, 0, 1, 1]), { api, pollMs: 1000, maxPollMs: 1000, timeoutMs: 5000 }).catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(6000);
    expect(await caught).toMatchObject({ message: expect.stringContaining('did not finish within 5 s') as unknown });
  });

  it('stops polling when aborted', async () => {
    const api = fakeApi([job({ state: 'running' })]);
    const controller = new AbortController();
    const caught = runSegmentation(1, boxPrompt(0, [0, 0, 1, 1]), { api, pollMs: 1000, signal: controller.signal }).catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(2500);
    const polls = api.polls;
    controller.abort();
    expect(await caught).toMatchObject({ name: 'AbortError' });
    await vi.advanceTimersByTimeAsync(10_000);
    expect(api.polls).toBe(polls);
  });

  it('saves the lesion first, applies the result without re-saving it and adopts the version', async () => {
    const map = Uint8Array.from([1, 0, 0, 0]);
    const history = new LabelmapHistory(map);
    const saves: (number | null)[] = [];
    const save = vi.fn(async (_id: number, parent: number | null) => {
      saves.push(parent);
      return version(70);
    });
    const autosave = new Autosave({ getMask: () => extractMask(map, 1), save }, { debounceMs: 10_000 });
    autosave.track(1, null);
    autosave.markDirty(1);
    const api = fakeApi([job({ state: 'succeeded', result: 71 })]);
    const promise = runSegmentation(1, propagatePrompt(0, [0, 0]), {
      api, pollMs: 10, autosave,
      apply: ({ mask: m }) => {
        const change = history.record(replaceSegment(map, 1, m.voxels), map, 'Segmentation');
        for (const s of change?.segments ?? []) autosave.markDirty(s);
      },
    });
    await vi.runAllTimersAsync();
    await promise;
    expect(saves).toEqual([null]); // saved before the request, not after the result
    expect(vi.mocked(api.request).mock.invocationCallOrder[0]).toBeGreaterThan(save.mock.invocationCallOrder[0]!);
    expect([...map]).toEqual([0, 1, 1, 0]);
    expect(autosave.state(1)).toMatchObject({ status: 'saved', parent: 71 });
    history.undo(map); // the model's mask is an undoable step
    expect([...map]).toEqual([1, 0, 0, 0]);
  });

  it('refuses to segment a lesion whose save is in conflict', async () => {
    const autosave = new Autosave({
      getMask: () => new Uint8Array(1),
      save: vi.fn(async () => { throw new ApiError(409, 'the mask changed meanwhile', { parent: ['latest is 3'] }); }),
    });
    autosave.track(1, null);
    autosave.markDirty(1);
    const api = fakeApi([]);
    await expect(runSegmentation(1, boxPrompt(0, [0, 0, 1, 1]), { api, autosave })).rejects.toThrow(/Resolve the save conflict/);
    expect(api.request).not.toHaveBeenCalled();
  });
});

describe('prompt helpers', () => {
  it('orders and clamps a dragged box', () => {
    expect(boxFromCorners([30.4, 5], [10, 50], 32, 40)).toEqual([10, 5, 30, 39]);
    expect(boxFromCorners([-5, -5], [2, 2], 8, 8)).toEqual([0, 0, 2, 2]);
  });

  it('builds box, point and propagation prompts', () => {
    expect(boxPrompt(3, [1, 1, 4, 4], { positive: [[2, 2, 3]], negative: [[0, 0, 3]], zRange: [1, 5] })).toEqual({
      key_slice: 3, box: [1, 1, 4, 4], positive_points: [[2, 2, 3]], negative_points: [[0, 0, 3]], z_range: [1, 5],
    });
    expect(propagatePrompt(7)).toEqual({ mask_slice: 7 });
    expect(propagatePrompt(7, [4, 9])).toEqual({ mask_slice: 7, z_range: [4, 9] });
  });

  it('labels progress', () => {
    expect(progressOf(job({ state: 'running', progress_done: 1, progress_total: 4 }))).toMatchObject({ fraction: 0.25, label: 'Segmenting… 25 %' });
    expect(progressOf(job({ state: 'succeeded' })).fraction).toBe(1);
  });

  it('says why a job waits instead of spinning silently', () => {
    const created = '2026-12-01T10:00:00Z';
    const at = (s: number): number => Date.parse(created) + s * 1000;
    expect(progressOf(job({ created }), at(3)).label).toBe('Queued');
    expect(progressOf(job({ created }), at(42)).label).toBe('Queued 42 s: waiting for a free worker');
    const notice = 'worker lost: gpu0 (process 7) stopped during attempt 1 of 3 (...); re-queued (attempt 2 of 3)';
    expect(progressOf(job({ created, notice, attempts: 1 }), at(50)).label)
      .toBe('Worker lost; re-queued (attempt 2 of 3) · waiting for a worker');
    expect(progressOf(job({ state: 'running', notice, attempts: 2, progress_done: 1, progress_total: 2 })).label)
      .toBe('Segmenting… 50 % (attempt 2 of 3)');
  });
});
