// Versioned autosave of each lesion's mask.
//
// Per lesion:  saved --edit--> dirty --debounce--> saving --201--> saved (or dirty: edited meanwhile)
//                                                  saving --409 stale parent--> conflict
//                                                  saving --network / 5xx / 429--> error (retrying with backoff)
//                                                  saving --other 4xx--> error (retry() by hand)
//
// Every save sends the version the edit started from (`parent`); the server refuses a stale
// parent with 409 and the lesion goes to `conflict`: nothing is sent automatically any more,
// the local voxels stay in the labelmap, and the UI offers `reloadTheirs` (the caller applies
// their mask through the history, so undo brings the local edit back) or `overwrite` (save the
// local mask on top of the latest version). No state drops the local edits.

import { ApiError } from '../api/client';
import { fetchMaskData, listMaskVersions, maskConflict, saveMask, type MaskConflict } from '../api/endpoints';
import type { MaskData, MaskVersion } from '../api/types';

export type SaveStatus = 'saved' | 'dirty' | 'saving' | 'conflict' | 'error';

export interface LesionSaveState {
  lesionId: number;
  status: SaveStatus;
  /** The version the next save builds on (null: the lesion has no saved mask yet). */
  parent: number | null;
  /** The last version saved or adopted here. */
  version: MaskVersion | null;
  /** What to tell the annotator ('' when everything is saved). */
  message: string;
  conflict: MaskConflict | null;
  /** A transient failure being retried: the attempt number and when the next one runs (ms epoch). */
  retry: { attempt: number; at: number } | null;
  /** Edits made since the snapshot that is being saved (or that conflicted). */
  editedSinceSnapshot: boolean;
}

export interface AutosaveDeps {
  /** The lesion's current binary mask: z*y*x bytes, non-zero = foreground. */
  getMask(lesionId: number): Uint8Array;
  /** Saves the mask on top of `parent` (default: gzip + POST /lesions/<id>/masks/). */
  save?(lesionId: number, parent: number | null, voxels: Uint8Array): Promise<MaskVersion>;
  /** The lesion's latest version (default: the last of GET /lesions/<id>/masks/). */
  latest?(lesionId: number): Promise<MaskVersion | null>;
  /** A version's voxels (default: GET /masks/<id>/data/). */
  fetchData?(versionId: number): Promise<MaskData>;
}

export interface AutosaveOptions {
  /** Quiet time after the last edit before saving (ms). */
  debounceMs?: number;
  /** Longest a dirty lesion waits under continuous editing (ms). */
  maxWaitMs?: number;
  /** First retry delay after a transient failure; doubles each attempt up to retryMaxMs. */
  retryBaseMs?: number;
  retryMaxMs?: number;
}

export const CONFLICT_MESSAGE =
  'Someone saved a newer version of this mask: reload theirs or overwrite with yours. Your edits are kept until you choose.';

/** Network failures, timeouts, rate limits and server errors are worth retrying; 4xx are not. */
export function isTransient(err: unknown): boolean {
  if (!(err instanceof ApiError)) return false;
  return err.status === 0 || err.status === 408 || err.status === 429 || err.status >= 500;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

interface Entry extends LesionSaveState {
  timer: ReturnType<typeof setTimeout> | null;
  dirtySince: number | null;
  inFlight: Promise<void> | null;
  suppress: number;
}

const PRIORITY: SaveStatus[] = ['saved', 'dirty', 'saving', 'error', 'conflict'];

export class Autosave {
  private readonly entries = new Map<number, Entry>();
  private readonly listeners = new Set<(state: LesionSaveState) => void>();
  private readonly deps: Required<AutosaveDeps>;
  private readonly debounceMs: number;
  private readonly maxWaitMs: number;
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;
  private disposed = false;

  constructor(deps: AutosaveDeps, options: AutosaveOptions = {}) {
    this.deps = {
      getMask: deps.getMask,
      save: deps.save ?? ((id, parent, voxels) => saveMask(id, parent, voxels)),
      latest: deps.latest ?? (async (id) => (await listMaskVersions(id)).at(-1) ?? null),
      fetchData: deps.fetchData ?? ((id) => fetchMaskData(id)),
    };
    this.debounceMs = options.debounceMs ?? 1500;
    this.maxWaitMs = options.maxWaitMs ?? 10_000;
    this.retryBaseMs = options.retryBaseMs ?? 1000;
    this.retryMaxMs = options.retryMaxMs ?? 30_000;
  }

  // ---- observing ----------------------------------------------------------------------------

  subscribe(listener: (state: LesionSaveState) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private snapshot(entry: Entry): LesionSaveState {
    const { lesionId, status, parent, version, message, conflict, retry, editedSinceSnapshot } = entry;
    return { lesionId, status, parent, version, message, conflict, retry, editedSinceSnapshot };
  }

  private emit(entry: Entry): void {
    const state = this.snapshot(entry);
    for (const listener of [...this.listeners]) listener(state);
  }

  state(lesionId: number): LesionSaveState | null {
    const entry = this.entries.get(lesionId);
    return entry ? this.snapshot(entry) : null;
  }

  states(): LesionSaveState[] {
    return [...this.entries.values()].map((e) => this.snapshot(e));
  }

  /** The workspace's status: the worst of its lesions (conflict > error > saving > dirty > saved). */
  overall(): SaveStatus {
    let worst: SaveStatus = 'saved';
    for (const e of this.entries.values()) {
      if (PRIORITY.indexOf(e.status) > PRIORITY.indexOf(worst)) worst = e.status;
    }
    return worst;
  }

  /** True while any lesion has edits the server does not have (for a beforeunload guard). */
  hasUnsaved(): boolean {
    for (const e of this.entries.values()) if (e.status !== 'saved') return true;
    return false;
  }

  // ---- lifecycle ----------------------------------------------------------------------------

  /** Starts tracking a lesion whose saved state is `version` (its latest_mask; null: none yet). */
  track(lesionId: number, version: MaskVersion | null): void {
    this.forget(lesionId);
    this.entries.set(lesionId, {
      lesionId,
      status: 'saved',
      parent: version?.id ?? null,
      version,
      message: '',
      conflict: null,
      retry: null,
      editedSinceSnapshot: false,
      timer: null,
      dirtySince: null,
      inFlight: null,
      suppress: 0,
    });
  }

  /** Stops tracking (the lesion was deleted): its pending save is cancelled. */
  forget(lesionId: number): void {
    const entry = this.entries.get(lesionId);
    if (!entry) return;
    this.clearTimer(entry);
    this.entries.delete(lesionId);
  }

  dispose(): void {
    this.disposed = true;
    for (const entry of this.entries.values()) this.clearTimer(entry);
    this.listeners.clear();
  }

  private require(lesionId: number): Entry {
    const entry = this.entries.get(lesionId);
    if (!entry) throw new Error(`lesion ${lesionId} is not tracked by autosave`);
    return entry;
  }

  private clearTimer(entry: Entry): void {
    if (entry.timer !== null) clearTimeout(entry.timer);
    entry.timer = null;
  }

  private schedule(entry: Entry, delay: number): void {
    this.clearTimer(entry);
    entry.timer = setTimeout(() => {
      entry.timer = null;
      void this.run(entry);
    }, delay);
  }

  // ---- edits ------------------------------------------------------------------------------

  /** The lesion's voxels changed (a stroke ended, undo, redo, a reload): save it soon. */
  markDirty(lesionId: number): void {
    const entry = this.entries.get(lesionId);
    if (!entry || this.disposed || entry.suppress > 0) return;
    const now = Date.now();
    switch (entry.status) {
      case 'saving':
        entry.editedSinceSnapshot = true;
        break;
      case 'conflict':
        // Kept locally; nothing is sent until the annotator resolves the conflict.
        entry.editedSinceSnapshot = true;
        break;
      case 'error':
        entry.editedSinceSnapshot = true;
        // A transient failure retries on its own timer; a refused save waits for retry().
        break;
      default: {
        entry.status = 'dirty';
        entry.message = 'Unsaved changes';
        entry.dirtySince ??= now;
        const waited = now - entry.dirtySince;
        this.schedule(entry, Math.max(0, Math.min(this.debounceMs, this.maxWaitMs - waited)));
      }
    }
    this.emit(entry);
  }

  /**
   * The workspace now shows exactly `version` for this lesion (a segmentation result the
   * server saved on top of the latest, put in the labelmap by the caller): it becomes the
   * parent of the next save and the lesion is saved. Edits the caller keeps on top of it are
   * reported with markDirty afterwards.
   */
  adopt(lesionId: number, version: MaskVersion): void {
    const entry = this.require(lesionId);
    this.clearTimer(entry);
    entry.parent = version.id;
    entry.version = version;
    entry.status = 'saved';
    entry.conflict = null;
    entry.retry = null;
    entry.message = '';
    entry.dirtySince = null;
    entry.editedSinceSnapshot = false;
    this.emit(entry);
  }

  /** Runs `apply` (which edits the labelmap) without those edits marking the lesion dirty. */
  withoutAutosave<T>(lesionId: number, apply: () => T): T {
    const entry = this.entries.get(lesionId);
    if (!entry) return apply();
    entry.suppress++;
    try {
      return apply();
    } finally {
      entry.suppress--;
    }
  }

  // ---- saving -----------------------------------------------------------------------------

  /** Saves the lesion now if it has unsaved edits (waits for a save in flight). */
  async saveNow(lesionId: number): Promise<LesionSaveState> {
    const entry = this.require(lesionId);
    if (entry.inFlight) await entry.inFlight;
    if (entry.status === 'dirty' || entry.status === 'error') {
      await this.run(entry);
    }
    return this.snapshot(entry);
  }

  /**
   * Saves every dirty lesion now (before submitting, before a "propagate my correction"
   * request). Resolves true when every lesion ends saved.
   */
  async flush(): Promise<boolean> {
    await Promise.all([...this.entries.keys()].map((id) => this.saveNow(id)));
    // A lesion edited during its save is dirty again: one more round.
    const again = [...this.entries.values()].filter((e) => e.status === 'dirty');
    await Promise.all(again.map((e) => this.saveNow(e.lesionId)));
    return [...this.entries.values()].every((e) => e.status === 'saved');
  }

  /** Tries a failed save again now (the "Retry" button). */
  async retry(lesionId: number): Promise<LesionSaveState> {
    const entry = this.require(lesionId);
    if (entry.status !== 'error') return this.snapshot(entry);
    this.clearTimer(entry);
    await this.run(entry);
    return this.snapshot(entry);
  }

  private run(entry: Entry): Promise<void> {
    if (entry.inFlight) return entry.inFlight;
    if (this.disposed || this.entries.get(entry.lesionId) !== entry) return Promise.resolve();
    if (entry.status === 'conflict' || entry.status === 'saved') return Promise.resolve();
    const promise = this.attempt(entry).finally(() => {
      entry.inFlight = null;
    });
    entry.inFlight = promise;
    return promise;
  }

  private async attempt(entry: Entry, parentOverride?: number | null): Promise<void> {
    this.clearTimer(entry);
    const previousRetry = entry.retry;
    entry.status = 'saving';
    entry.message = 'Saving…';
    entry.editedSinceSnapshot = false;
    entry.dirtySince = null;
    this.emit(entry);
    const parent = parentOverride === undefined ? entry.parent : parentOverride;
    let voxels: Uint8Array;
    try {
      voxels = this.deps.getMask(entry.lesionId).slice();
    } catch (err) {
      this.fail(entry, err, null);
      return;
    }
    try {
      const version = await this.deps.save(entry.lesionId, parent, voxels);
      if (this.entries.get(entry.lesionId) !== entry) return; // forgotten meanwhile
      entry.parent = version.id;
      entry.version = version;
      entry.conflict = null;
      entry.retry = null;
      if (entry.editedSinceSnapshot) {
        entry.status = 'dirty';
        entry.message = 'Unsaved changes';
        entry.dirtySince = Date.now();
        this.schedule(entry, this.debounceMs);
      } else {
        entry.status = 'saved';
        entry.message = '';
      }
      this.emit(entry);
    } catch (err) {
      if (this.entries.get(entry.lesionId) !== entry) return;
      const conflict = maskConflict(err);
      if (conflict) {
        entry.status = 'conflict';
        entry.conflict = conflict;
        entry.retry = null;
        entry.message = CONFLICT_MESSAGE;
        this.emit(entry);
        return;
      }
      this.fail(entry, err, previousRetry);
    }
  }

  private fail(entry: Entry, err: unknown, previousRetry: { attempt: number } | null): void {
    entry.status = 'error';
    if (isTransient(err)) {
      const attempt = (previousRetry?.attempt ?? 0) + 1;
      const delay = Math.min(this.retryMaxMs, this.retryBaseMs * 2 ** (attempt - 1));
      entry.retry = { attempt, at: Date.now() + delay };
      entry.message = `Could not save: ${errorText(err)} Retrying in ${Math.ceil(delay / 1000)} s; your edits are kept.`;
      this.schedule(entry, delay);
    } else {
      entry.retry = null;
      entry.message = `Could not save: ${errorText(err)} Your edits are kept.`;
    }
    this.emit(entry);
  }

  // ---- conflicts --------------------------------------------------------------------------

  private async latestId(entry: Entry): Promise<number | null> {
    if (entry.conflict?.latest !== undefined) return entry.conflict.latest;
    return (await this.deps.latest(entry.lesionId))?.id ?? null;
  }

  /**
   * Keeps the local mask: saves it on top of the latest version (asked fresh from the server,
   * so a third save in between ends in another conflict rather than a lost edit).
   */
  async overwrite(lesionId: number): Promise<LesionSaveState> {
    const entry = this.require(lesionId);
    if (entry.inFlight) await entry.inFlight;
    if (entry.status !== 'conflict') return this.snapshot(entry);
    let latest: MaskVersion | null;
    try {
      latest = await this.deps.latest(lesionId);
    } catch (err) {
      entry.message = `${CONFLICT_MESSAGE} (Could not fetch the latest version: ${errorText(err)})`;
      this.emit(entry);
      return this.snapshot(entry);
    }
    entry.parent = latest?.id ?? null;
    entry.status = 'dirty';
    const promise = this.attempt(entry).finally(() => {
      entry.inFlight = null;
    });
    entry.inFlight = promise;
    await promise;
    return this.snapshot(entry);
  }

  /**
   * Takes their version: downloads the latest mask and hands it to `apply`, which puts it in
   * the labelmap (record it in the history: undo then restores the local edit, and marks the
   * lesion dirty, which saves it on top of theirs). The lesion is saved afterwards, its parent
   * the latest version. On failure the conflict stays and nothing local changes.
   */
  async reloadTheirs(lesionId: number, apply: (theirs: MaskData, version: MaskVersion | null) => void): Promise<LesionSaveState> {
    const entry = this.require(lesionId);
    if (entry.inFlight) await entry.inFlight;
    if (entry.status !== 'conflict') return this.snapshot(entry);
    try {
      const latest = await this.deps.latest(lesionId);
      if (latest === null) {
        // The server has no version to reload (versions are append-only: a stale "first"
        // save cannot meet an empty history); keep ours and save it.
        return await this.overwrite(lesionId);
      }
      const theirs = await this.deps.fetchData(latest.id);
      if (this.entries.get(lesionId) !== entry || entry.status !== 'conflict') return this.snapshot(entry);
      this.withoutAutosave(lesionId, () => apply(theirs, latest));
      entry.parent = latest.id;
      entry.version = latest;
      entry.status = 'saved';
      entry.conflict = null;
      entry.editedSinceSnapshot = false;
      entry.message = '';
      this.emit(entry);
    } catch (err) {
      entry.message = `${CONFLICT_MESSAGE} (Could not load their version: ${errorText(err)})`;
      this.emit(entry);
    }
    return this.snapshot(entry);
  }

  /** The id of the version that conflicted with the local edit, asking the server if unsaid. */
  async conflictingVersion(lesionId: number): Promise<number | null> {
    return this.latestId(this.require(lesionId));
  }
}

/** Asks the browser to confirm leaving while edits are unsaved; returns the uninstaller. */
export function installUnloadGuard(autosave: Autosave, target: Pick<Window, 'addEventListener' | 'removeEventListener'> = window): () => void {
  const onBeforeUnload = (event: BeforeUnloadEvent): void => {
    if (!autosave.hasUnsaved()) return;
    event.preventDefault();
    try {
      event.returnValue = ''; // older browsers ask only when returnValue is set
    } catch {
      // read-only outside browsers
    }
    void autosave.flush();
  };
  target.addEventListener('beforeunload', onBeforeUnload);
  return () => target.removeEventListener('beforeunload', onBeforeUnload);
}
