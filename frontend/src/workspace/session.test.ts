import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseApiError } from '../api/client';
import type { InferenceJob, Lesion, MaskData, MaskVersion, Task } from '../api/types';
import type { LabelmapAccess } from '../viewer/types';
import { WorkspaceSession, type LabelmapEditLike, type LabelmapHost, type SessionApi } from './session';

// Compile-time: the viewer's labelmap access plugs in as the session's host.
export const viewerFits = (access: LabelmapAccess): LabelmapHost => access;

const N = 6;

function version(id: number, lesion: number): MaskVersion {
  return { id, lesion, parent: null, source: 'human', voxel_count: 1, created: '', author: 'ann', author_user: null, author_model: null, author_backend: '' };
}

function lesion(id: number, latest: MaskVersion | null, cls = 'tumour'): Lesion {
  return { id, task: 1, lesion_class: cls, name: '', key_slice: null, box: null, latest_mask: latest, created: '' };
}

/** Like the viewer: its own copy of the labelmap, edits reported as diffs. */
class FakeHost implements LabelmapHost {
  readonly dimensions = [3, 2, 1] as const;
  labelmap: Uint8Array = new Uint8Array(0);
  shown = 0;
  listener: ((edit: LabelmapEditLike) => void) | null = null;
  setLabelmap(labelmap: Uint8Array): void { this.labelmap = labelmap.slice(); this.shown++; }
  onEdit(listener: (edit: LabelmapEditLike) => void): () => void {
    this.listener = listener;
    return () => { this.listener = null; };
  }
  /** A tool paints `value` on voxels. */
  paint(indices: number[], value: number): void {
    const before = Uint8Array.from(indices.map((i) => this.labelmap[i]!));
    for (const i of indices) this.labelmap[i] = value;
    this.listener?.({ indices: Uint32Array.from(indices), before, after: new Uint8Array(indices.length).fill(value) });
  }
}

function setup(opts: { conflictOn?: number } = {}) {
  const data = new Map<number, Uint8Array>([
    [100, Uint8Array.from([1, 1, 0, 0, 0, 0])],
    [200, Uint8Array.from([0, 1, 1, 0, 0, 0])],
    [999, Uint8Array.from([1, 0, 0, 0, 0, 1])],
  ]);
  let nextVersion = 300;
  const saves: { lesion: number; parent: number | null; voxels: number[] }[] = [];
  const api: Partial<SessionApi> = {
    listLesions: vi.fn(async () => [lesion(2, version(200, 2)), lesion(1, version(100, 1)), lesion(3, null, 'cyst')]),
    fetchMaskData: vi.fn(async (id: number): Promise<MaskData> => ({ shape: [1, 2, 3], voxels: data.get(id)!.slice() as Uint8Array<ArrayBuffer> })),
    submitTask: vi.fn(async () => ({ id: 1, state: 'submitted' } as Task)),
    saveMask: vi.fn(async (lesionId: number, parent: number | null, voxels: Uint8Array) => {
      saves.push({ lesion: lesionId, parent, voxels: [...voxels] });
      if (lesionId === opts.conflictOn) {
        throw parseApiError(409, { detail: 'the mask changed meanwhile: the latest version is 999', parent: ['latest is 999'] });
      }
      const v = version(nextVersion++, lesionId);
      data.set(v.id, voxels.slice());
      return v;
    }),
    lesions: {
      create: vi.fn(async (_t: number, d) => lesion(4, null, d.lesion_class)),
      update: vi.fn(async (id: number, d) => lesion(id, null, d.lesion_class ?? 'tumour')),
      remove: vi.fn(async () => null),
    },
    segment: {
      request: vi.fn(async (): Promise<InferenceJob> => ({ id: 9, state: 'succeeded', result: 555 } as InferenceJob)),
      getJob: vi.fn(),
      getVersion: vi.fn(async (id: number) => version(id, 3)),
      fetchData: vi.fn(async () => ({ shape: [1, 2, 3], voxels: Uint8Array.from([0, 0, 0, 1, 1, 1]) } as MaskData)),
    },
    postEffort: vi.fn(async () => null),
    latestVersion: vi.fn(async (lesionId: number) => version(999, lesionId)),
  };
  const host = new FakeHost();
  const task = { id: 1, state: 'assigned' } as Task;
  const classes = [{ name: 'tumour', color: '#ff0000' }, { name: 'cyst', color: '#00ff00' }];
  const open = () => WorkspaceSession.open(
    { task, lesionClasses: classes, host, editable: true, api, autosave: { debounceMs: 100 } },
    { trackEffort: false },
  );
  return { api, host, saves, open };
}

beforeEach(() => vi.useFakeTimers());
afterEach(() => vi.useRealTimers());

describe('WorkspaceSession', () => {
  it('opens with the lesions in id order and their masks composed into the labelmap', async () => {
    const { host, open } = setup();
    const session = await open();
    expect(session.lesions.entries.map((e) => [e.lesion.id, e.segment])).toEqual([[1, 1], [2, 2], [3, 3]]);
    // lesion 2 (segment 2) covers lesion 1 where they overlap
    expect([...host.labelmap]).toEqual([1, 2, 2, 0, 0, 0]);
    expect(session.autosave.state(1)?.parent).toBe(100);
    expect(session.autosave.state(3)?.parent).toBeNull();
  });

  it('saves the binary mask of each lesion a stroke touched, on its own parent', async () => {
    const { host, saves, open } = setup();
    const session = await open();
    session.beginStroke('brush');
    host.paint([2], 1); // lesion 1 takes a voxel from lesion 2
    host.paint([3], 1);
    session.endStroke();
    expect(session.history.undoDepth).toBe(1);
    await vi.advanceTimersByTimeAsync(100);
    expect(saves).toEqual([
      { lesion: 1, parent: 100, voxels: [1, 0, 1, 1, 0, 0] },
      { lesion: 2, parent: 200, voxels: [0, 1, 0, 0, 0, 0] },
    ]);
    expect(session.effort?.counts().brush).toBe(1);
  });

  it('counts each viewer edit as one interaction of the current tool, with its slice', async () => {
    const { host, open } = setup();
    const session = await open();
    session.setTool('eraser');
    host.paint([1], 0);
    session.setTool('threshold');
    host.paint([4], 3);
    expect(session.effort?.counts()).toMatchObject({ eraser: 1, threshold: 1, brush: 0 });
    expect(session.effort?.pending().interactions.map((i) => [i.tool, i.slice_index])).toEqual([['eraser', 0], ['threshold', 0]]);
    expect(session.history.undoDepth).toBe(2);
    expect([...session.labelmapData]).toEqual([...host.labelmap]);
  });

  it('undo restores the voxels, re-renders and saves the restored masks', async () => {
    const { host, saves, open } = setup();
    const session = await open();
    host.paint([5], 2);
    await vi.advanceTimersByTimeAsync(100);
    const shown = host.shown;
    session.undo();
    expect([...host.labelmap]).toEqual([1, 2, 2, 0, 0, 0]);
    expect(host.shown).toBe(shown + 1);
    await vi.advanceTimersByTimeAsync(100);
    expect(saves.at(-1)).toEqual({ lesion: 2, parent: 300, voxels: [0, 1, 1, 0, 0, 0] });
    session.redo();
    expect([...host.labelmap]).toEqual([1, 2, 2, 0, 0, 2]);
    expect(session.effort?.counts()).toMatchObject({ undo: 1, redo: 1 });
  });

  it('deletes a lesion: server first, then its voxels, which undo never brings back', async () => {
    const { host, api, open } = setup();
    const session = await open();
    host.paint([4], 2);
    await session.deleteLesion(2);
    expect(api.lesions!.remove).toHaveBeenCalledWith(2);
    expect([...host.labelmap]).toEqual([1, 0, 0, 0, 0, 0]);
    session.undo();
    expect([...host.labelmap]).toEqual([1, 0, 0, 0, 0, 0]);
    expect(session.autosave.state(2)).toBeNull();
    const added = await session.addLesion('cyst');
    expect(added.segment).toBe(2); // the freed index, without ghosts
    expect(session.lesions.selected?.lesion.id).toBe(4);
  });

  it('segments a lesion: the result replaces its voxels as an undoable step', async () => {
    const { host, saves, open } = setup();
    const session = await open();
    const promise = session.segment(3, { key_slice: 0, box: [0, 0, 2, 1] });
    await vi.runAllTimersAsync();
    await promise;
    expect([...host.labelmap]).toEqual([1, 2, 2, 3, 3, 3]);
    expect(session.autosave.state(3)).toMatchObject({ status: 'saved', parent: 555 });
    expect(session.lesions.get(3)?.lesion).toMatchObject({ latest_mask: { id: 555 }, key_slice: 0, box: [0, 0, 2, 1] });
    await vi.advanceTimersByTimeAsync(1000);
    expect(saves).toEqual([]); // the model's version is not saved again
    session.undo();
    expect([...host.labelmap]).toEqual([1, 2, 2, 0, 0, 0]);
    expect(session.effort?.counts().box).toBe(1);
  });

  it('a point refinement counts as its points, not as another box', async () => {
    const { open } = setup();
    const session = await open();
    const promise = session.segment(3, { key_slice: 0, box: [0, 0, 2, 1], negative_points: [[1, 0, 0]] });
    await vi.runAllTimersAsync();
    await promise;
    expect(session.effort?.counts()).toMatchObject({ box: 0, 'point-': 1, 'point+': 0 });
  });

  it('a result that takes voxels from another lesion saves that lesion too', async () => {
    const { host, api, saves, open } = setup();
    const session = await open();
    api.segment!.fetchData = vi.fn(async () => ({ shape: [1, 2, 3], voxels: Uint8Array.from([0, 0, 1, 1, 0, 0]) } as MaskData));
    const promise = session.segment(3, { key_slice: 0, box: [0, 0, 2, 1] });
    await vi.runAllTimersAsync();
    await promise;
    expect([...host.labelmap]).toEqual([1, 2, 3, 3, 0, 0]);
    expect(saves).toEqual([{ lesion: 2, parent: 200, voxels: [0, 1, 0, 0, 0, 0] }]);
    expect(session.autosave.state(3)?.parent).toBe(555);
  });

  it('refuses to submit while a lesion is in conflict, and reload theirs resolves it', async () => {
    const { host, api, open } = setup({ conflictOn: 1 });
    const session = await open();
    host.paint([3], 1);
    await expect(session.submit()).rejects.toThrow(/Not submitted: tumour 1 could not be saved/);
    expect(api.submitTask).not.toHaveBeenCalled();
    expect(session.autosave.state(1)?.status).toBe('conflict');
    expect([...host.labelmap]).toEqual([1, 2, 2, 1, 0, 0]); // the local edit is still shown

    const state = await session.reloadTheirs(1); // theirs (999): voxels 0 and 5
    expect(state).toMatchObject({ status: 'saved', parent: 999 });
    expect([...host.labelmap]).toEqual([1, 2, 2, 0, 0, 1]);
    session.undo(); // ours is back
    expect([...host.labelmap]).toEqual([1, 2, 2, 1, 0, 0]);
  });

  it('submits after saving everything', async () => {
    const { host, api, saves, open } = setup();
    const session = await open();
    host.paint([5], 1);
    await expect(session.submit()).resolves.toMatchObject({ state: 'submitted' });
    expect(saves).toHaveLength(1);
    expect(api.submitTask).toHaveBeenCalledWith(1);
    await session.close();
    expect(host.listener).toBeNull();
  });

  it('records nothing for a read-only (review) session', async () => {
    const { host, saves, api } = setup();
    const session = await WorkspaceSession.open({
      task: { id: 1 } as Task, lesionClasses: [{ name: 'tumour', color: '#f00' }, { name: 'cyst', color: '#0f0' }],
      voxelCount: N, host, editable: false, api,
    }, { trackEffort: false });
    host.paint([5], 1);
    await vi.advanceTimersByTimeAsync(5000);
    expect(saves).toEqual([]);
    expect(session.history.canUndo).toBe(false);
    expect(session.effort).toBeNull();
  });
});
