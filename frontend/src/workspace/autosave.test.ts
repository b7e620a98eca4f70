import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiError, parseApiError } from '../api/client';
import type { MaskData, MaskVersion } from '../api/types';
import { Autosave, CONFLICT_MESSAGE, installUnloadGuard, isTransient, type LesionSaveState } from './autosave';
import { LabelmapHistory } from './history';
import { extractMask, replaceSegment } from './labelmap';

function version(id: number, parent: number | null = null): MaskVersion {
  return { id, parent, lesion: 1, source: 'human', voxel_count: 1, created: '', author: 'ann', author_user: null, author_model: null, author_backend: '' };
}

const conflict409 = (latest: number) => parseApiError(409, {
  detail: `the mask changed meanwhile: the latest version is ${latest}, your edit started from 1; reload it and apply your edit again`,
  parent: [`latest is ${latest}`],
});

/** A fake server: a chain of versions per lesion, refusing stale parents like mask_version_save. */
class FakeServer {
  versions: { version: MaskVersion; voxels: Uint8Array }[] = [];
  failures: unknown[] = [];
  calls: { parent: number | null; voxels: Uint8Array }[] = [];
  next = 10;

  latest(): MaskVersion | null {
    return this.versions.at(-1)?.version ?? null;
  }

  save = vi.fn(async (_lesion: number, parent: number | null, voxels: Uint8Array): Promise<MaskVersion> => {
    this.calls.push({ parent, voxels });
    const failure = this.failures.shift();
    if (failure) throw failure;
    const latest = this.latest();
    if ((latest?.id ?? null) !== parent) throw conflict409(latest?.id ?? 0);
    const v = version(this.next++, parent);
    this.versions.push({ version: v, voxels: voxels.slice() });
    return v;
  });

  /** Someone else saves. */
  theirs(voxels: Uint8Array): MaskVersion {
    const v = version(this.next++, this.latest()?.id ?? null);
    this.versions.push({ version: v, voxels });
    return v;
  }

  deps(map: Uint8Array, segment = 1) {
    return {
      getMask: () => extractMask(map, segment),
      save: this.save,
      latest: async () => this.latest(),
      fetchData: async (id: number): Promise<MaskData> => {
        const found = this.versions.find((v) => v.version.id === id);
        if (!found) throw new ApiError(404, 'not found');
        return { shape: [1, 1, map.length], voxels: found.voxels.slice() as Uint8Array<ArrayBuffer> };
      },
    };
  }
}

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

function statuses(autosave: Autosave): string[] {
  const seen: string[] = [];
  autosave.subscribe((s: LesionSaveState) => {
    if (seen.at(-1) !== s.status) seen.push(s.status);
  });
  return seen;
}

describe('Autosave', () => {
  it('debounces edits and saves the binary mask with the parent version', async () => {
    const server = new FakeServer();
    const map = Uint8Array.from([0, 1, 2, 1]);
    const autosave = new Autosave(server.deps(map), { debounceMs: 1000 });
    const seen = statuses(autosave);
    autosave.track(1, null);
    autosave.markDirty(1);
    await vi.advanceTimersByTimeAsync(500);
    autosave.markDirty(1);
    await vi.advanceTimersByTimeAsync(999);
    expect(server.save).not.toHaveBeenCalled();
    await vi.advanceTimersByTimeAsync(1);
    expect(server.calls).toEqual([{ parent: null, voxels: Uint8Array.from([0, 1, 0, 1]) }]);
    expect(autosave.state(1)).toMatchObject({ status: 'saved', parent: 10, message: '' });
    map[0] = 1;
    autosave.markDirty(1);
    await vi.advanceTimersByTimeAsync(1000);
    expect(server.calls[1]).toEqual({ parent: 10, voxels: Uint8Array.from([1, 1, 0, 1]) });
    expect(autosave.state(1)?.parent).toBe(11);
    expect(seen).toEqual(['dirty', 'saving', 'saved', 'dirty', 'saving', 'saved']);
  });

  it('saves within maxWaitMs under continuous editing', async () => {
    const server = new FakeServer();
    const autosave = new Autosave(server.deps(new Uint8Array(2)), { debounceMs: 1000, maxWaitMs: 3000 });
    autosave.track(1, null);
    for (let t = 0; t < 3000; t += 500) {
      autosave.markDirty(1);
      await vi.advanceTimersByTimeAsync(500);
    }
    expect(server.save).toHaveBeenCalledTimes(1);
  });

  it('edits during a save are saved next, on top of the new version', async () => {
    const server = new FakeServer();
    const map = Uint8Array.from([1, 0]);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => { release = resolve; });
    const save = server.save;
    server.save = vi.fn(async (lesion: number, parent: number | null, voxels: Uint8Array) => {
      await gate;
      return save(lesion, parent, voxels);
    });
    const autosave = new Autosave(server.deps(map), { debounceMs: 100 });
    autosave.track(1, null);
    autosave.markDirty(1);
    await vi.advanceTimersByTimeAsync(100);
    expect(autosave.state(1)?.status).toBe('saving');
    map[1] = 1; // the snapshot was taken before this edit
    autosave.markDirty(1);
    release();
    await vi.advanceTimersByTimeAsync(0);
    expect(autosave.state(1)).toMatchObject({ status: 'dirty', parent: 10 });
    await vi.advanceTimersByTimeAsync(100);
    expect(server.calls.map((c) => [c.parent, [...c.voxels]])).toEqual([[null, [1, 0]], [10, [1, 1]]]);
    expect(autosave.state(1)?.status).toBe('saved');
  });

  it('on a 409 keeps the local edits, stops saving and says so', async () => {
    const server = new FakeServer();
    const map = Uint8Array.from([1, 1, 0]);
    const autosave = new Autosave(server.deps(map), { debounceMs: 100 });
    autosave.track(1, null);
    server.theirs(Uint8Array.from([0, 0, 1])); // someone else saved version 10 meanwhile
    autosave.markDirty(1);
    await vi.advanceTimersByTimeAsync(100);
    expect(autosave.state(1)).toMatchObject({
      status: 'conflict', message: CONFLICT_MESSAGE, conflict: { latest: 10 }, parent: null,
    });
    expect(autosave.overall()).toBe('conflict');
    expect(autosave.hasUnsaved()).toBe(true);
    // further edits are kept locally, not sent
    map[2] = 1;
    autosave.markDirty(1);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(server.save).toHaveBeenCalledTimes(1);
    expect([...map]).toEqual([1, 1, 1]);
    expect(autosave.state(1)).toMatchObject({ status: 'conflict', editedSinceSnapshot: true });
  });

  it('overwrite saves the local mask on top of the latest version', async () => {
    const server = new FakeServer();
    const map = Uint8Array.from([1, 1, 0]);
    const autosave = new Autosave(server.deps(map), { debounceMs: 100 });
    autosave.track(1, null);
    server.theirs(Uint8Array.from([0, 0, 1]));
    autosave.markDirty(1);
    await vi.advanceTimersByTimeAsync(100);
    server.theirs(Uint8Array.from([0, 1, 1])); // and again: version 11
    const state = await autosave.overwrite(1);
    expect(state).toMatchObject({ status: 'saved', parent: 12, conflict: null });
    expect(server.calls.at(-1)).toEqual({ parent: 11, voxels: Uint8Array.from([1, 1, 0]) });
  });

  it('reload theirs puts their mask in the labelmap through the history: undo brings ours back', async () => {
    const server = new FakeServer();
    const map = Uint8Array.from([1, 1, 0, 2]);
    const history = new LabelmapHistory(map);
    const autosave = new Autosave(server.deps(map), { debounceMs: 100 });
    autosave.track(1, null);
    server.theirs(Uint8Array.from([0, 0, 1, 1]));
    autosave.markDirty(1);
    await vi.advanceTimersByTimeAsync(100);
    expect(autosave.state(1)?.status).toBe('conflict');

    const state = await autosave.reloadTheirs(1, (theirs) => {
      const changed = replaceSegment(map, 1, theirs.voxels, { keepOthers: true });
      const change = history.record(changed, map, 'Reload their version');
      for (const s of change?.segments ?? []) autosave.markDirty(s); // suppressed inside apply
    });
    expect([...map]).toEqual([0, 0, 1, 2]);
    expect(state).toMatchObject({ status: 'saved', parent: 10, conflict: null });
    expect(server.save).toHaveBeenCalledTimes(1);

    // nothing was lost: undo restores ours, which then saves on top of theirs
    history.undo(map);
    autosave.markDirty(1);
    expect([...map]).toEqual([1, 1, 0, 2]);
    await vi.advanceTimersByTimeAsync(100);
    expect(server.calls.at(-1)).toEqual({ parent: 10, voxels: Uint8Array.from([1, 1, 0, 0]) });
    expect(autosave.state(1)).toMatchObject({ status: 'saved', parent: 11 });
  });

  it('a failed reload keeps the conflict and the local voxels', async () => {
    const server = new FakeServer();
    const map = Uint8Array.from([1]);
    const deps = { ...server.deps(map), fetchData: vi.fn(async () => { throw new ApiError(0, 'offline'); }) };
    const autosave = new Autosave(deps, { debounceMs: 10 });
    autosave.track(1, null);
    server.theirs(Uint8Array.from([0]));
    autosave.markDirty(1);
    await vi.advanceTimersByTimeAsync(10);
    const apply = vi.fn();
    const state = await autosave.reloadTheirs(1, apply);
    expect(apply).not.toHaveBeenCalled();
    expect(state.status).toBe('conflict');
    expect(state.message).toMatch(/offline/);
    expect([...map]).toEqual([1]);
  });

  it('retries transient failures with exponential backoff, then saves', async () => {
    const server = new FakeServer();
    server.failures = [new ApiError(0, 'Could not reach the server.'), new ApiError(503, 'Service Unavailable'), new ApiError(502, 'Bad Gateway')];
    const autosave = new Autosave(server.deps(Uint8Array.from([1])), { debounceMs: 100, retryBaseMs: 1000, retryMaxMs: 3000 });
    autosave.track(1, null);
    autosave.markDirty(1);
    await vi.advanceTimersByTimeAsync(100);
    expect(autosave.state(1)).toMatchObject({ status: 'error', retry: { attempt: 1 } });
    expect(autosave.state(1)?.message).toMatch(/Retrying in 1 s/);
    await vi.advanceTimersByTimeAsync(999);
    expect(server.save).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(server.save).toHaveBeenCalledTimes(2);
    expect(autosave.state(1)?.retry?.attempt).toBe(2);
    await vi.advanceTimersByTimeAsync(2000);
    expect(server.save).toHaveBeenCalledTimes(3);
    expect(autosave.state(1)?.retry?.attempt).toBe(3);
    await vi.advanceTimersByTimeAsync(2999); // capped at retryMaxMs
    expect(server.save).toHaveBeenCalledTimes(3);
    await vi.advanceTimersByTimeAsync(1);
    expect(autosave.state(1)).toMatchObject({ status: 'saved', retry: null, parent: 10 });
  });

  it('does not retry a refused save by itself; retry() does, with the edits made since', async () => {
    const server = new FakeServer();
    const map = Uint8Array.from([1, 0]);
    server.failures = [parseApiError(409, { detail: 'the task is submitted: its lesions cannot be changed' })];
    const autosave = new Autosave(server.deps(map), { debounceMs: 10 });
    autosave.track(1, null);
    autosave.markDirty(1);
    await vi.advanceTimersByTimeAsync(10);
    expect(autosave.state(1)).toMatchObject({ status: 'error', retry: null, conflict: null });
    expect(autosave.state(1)?.message).toMatch(/task is submitted.*edits are kept/);
    map[1] = 1;
    autosave.markDirty(1);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(server.save).toHaveBeenCalledTimes(1);
    await autosave.retry(1);
    expect(server.calls.at(-1)?.voxels).toEqual(Uint8Array.from([1, 1]));
    expect(autosave.state(1)?.status).toBe('saved');
  });

  it('flush saves every dirty lesion now and reports success', async () => {
    const map = Uint8Array.from([1, 2, 0]);
    const servers = new Map([[1, new FakeServer()], [2, new FakeServer()]]);
    const autosave = new Autosave({
      getMask: (id) => extractMask(map, id),
      save: (id, parent, voxels) => servers.get(id)!.save(id, parent, voxels),
    }, { debounceMs: 10_000 });
    autosave.track(1, null);
    autosave.track(2, null);
    autosave.markDirty(1);
    autosave.markDirty(2);
    expect(autosave.overall()).toBe('dirty');
    await expect(autosave.flush()).resolves.toBe(true);
    expect(servers.get(1)!.calls[0]?.voxels).toEqual(Uint8Array.from([1, 0, 0]));
    expect(servers.get(2)!.calls[0]?.voxels).toEqual(Uint8Array.from([0, 1, 0]));
    expect(autosave.overall()).toBe('saved');
    servers.get(2)!.theirs(Uint8Array.from([0, 0, 1]));
    autosave.markDirty(2);
    await expect(autosave.flush()).resolves.toBe(false);
  });

  it('adopts a model version as the new parent and forgets deleted lesions', async () => {
    const server = new FakeServer();
    const autosave = new Autosave(server.deps(Uint8Array.from([1])), { debounceMs: 10 });
    autosave.track(1, version(5));
    autosave.markDirty(1);
    autosave.adopt(1, version(6, 5));
    expect(autosave.state(1)).toMatchObject({ status: 'saved', parent: 6 });
    await vi.advanceTimersByTimeAsync(100);
    expect(server.save).not.toHaveBeenCalled();
    autosave.markDirty(1);
    autosave.forget(1);
    await vi.advanceTimersByTimeAsync(100);
    expect(server.save).not.toHaveBeenCalled();
    expect(autosave.state(1)).toBeNull();
  });

  it('classifies transient errors', () => {
    expect(isTransient(new ApiError(0, 'x'))).toBe(true);
    expect(isTransient(new ApiError(500, 'x'))).toBe(true);
    expect(isTransient(new ApiError(429, 'x'))).toBe(true);
    expect(isTransient(new ApiError(400, 'x'))).toBe(false);
    expect(isTransient(new ApiError(409, 'x'))).toBe(false);
    expect(isTransient(new Error('x'))).toBe(false);
  });

  it('guards page unload while edits are unsaved', () => {
    const target = new EventTarget();
    const autosave = new Autosave({ getMask: () => new Uint8Array(1), save: vi.fn(async () => version(1)) });
    autosave.track(1, null);
    const uninstall = installUnloadGuard(autosave, target as unknown as Window);
    const clean = new Event('beforeunload', { cancelable: true });
    target.dispatchEvent(clean);
    expect(clean.defaultPrevented).toBe(false);
    autosave.markDirty(1);
    const dirty = new Event('beforeunload', { cancelable: true });
    target.dispatchEvent(dirty);
    expect(dirty.defaultPrevented).toBe(true);
    uninstall();
    autosave.dispose();
  });
});
