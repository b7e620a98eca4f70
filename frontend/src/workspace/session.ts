// One open task in the workspace: wires the viewer's labelmap to the lesion list, the
// undo history, the per-lesion autosave, the effort tracker and segmentation jobs.
//
// The viewer provides a `LabelmapHost` (its segmentation labelmap: z*y*x uint8, value =
// segment index); everything here is plain TypeScript and never touches Cornerstone.

import { fetchMaskData, listLesions, submitTask } from '../api/endpoints';
import type { Box, LesionClass, Lesion, MaskData, MaskVersion, SegmentRequest, Task, EffortTool } from '../api/types';
import { Autosave, type AutosaveDeps, type AutosaveOptions } from './autosave';
import { EffortTracker, type EffortOptions, type EffortPoster } from './effort';
import { LabelmapHistory, type HistoryChange } from './history';
import { clearSegment, composeLabelmap, extractMask, replaceSegment } from './labelmap';
import { LesionStore, type LesionEntry, type LesionsApi } from './lesions';
import { runSegmentation, type SegmentApi, type SegmentProgress, type SegmentResult } from './segmentJob';

/** One user edit of the labelmap as the viewer reports it (viewer/types.ts LabelmapEdit). */
export interface LabelmapEditLike {
  /** Flat z*y*x indices of the voxels that changed. */
  indices: ArrayLike<number>;
  /** Their values before (optional: the history knows them). */
  before?: ArrayLike<number>;
  /** Their values now. */
  after: ArrayLike<number>;
}

/**
 * What the session needs of the viewer's segmentation (viewer/types.ts LabelmapAccess fits).
 * The session keeps its own copy of the labelmap: edits arrive as diffs, and the viewer is
 * only told to show the whole labelmap after undo / redo / a segmentation / a reload.
 */
export interface LabelmapHost {
  /** [x, y, z] voxel counts (gives interactions their slice index). */
  readonly dimensions?: readonly [number, number, number];
  /** Shows `labelmap` (z*y*x, C order); must not report it as an edit. */
  setLabelmap(labelmap: Uint8Array): void;
  /** Calls back after each user edit; returns the unsubscriber. */
  onEdit(callback: (edit: LabelmapEditLike) => void): () => void;
}

export interface SessionApi {
  listLesions(taskId: number): Promise<Lesion[]>;
  fetchMaskData(versionId: number): Promise<MaskData>;
  submitTask(taskId: number): Promise<Task>;
  lesions?: LesionsApi;
  saveMask?: AutosaveDeps['save'];
  latestVersion?: AutosaveDeps['latest'];
  segment?: SegmentApi;
  postEffort?: EffortPoster;
}

export interface SessionOptions {
  task: Task;
  lesionClasses: LesionClass[];
  /** z*y*x of the task's volume (default: the product of host.dimensions). */
  voxelCount?: number;
  host: LabelmapHost;
  /** The signed-in user is the task's annotator and the task is assigned or rejected. */
  editable: boolean;
  api?: Partial<SessionApi>;
  autosave?: AutosaveOptions;
  effort?: EffortOptions | false;
  historyBytes?: number;
}

/** A task's lesions (by id) and the latest mask of each that has one, by segment (1, 2, ...). */
export interface SavedLesions {
  lesions: Lesion[];
  masks: { segment: number; voxels: Uint8Array }[];
}

const defaultApi: SessionApi = {
  listLesions: (id) => listLesions(id),
  fetchMaskData: (id) => fetchMaskData(id),
  submitTask: (id) => submitTask(id),
};

export class WorkspaceSession {
  readonly task: Task;
  readonly editable: boolean;
  readonly lesions: LesionStore;
  readonly history: LabelmapHistory;
  readonly autosave: Autosave;
  readonly effort: EffortTracker | null;
  private readonly host: LabelmapHost;
  private readonly api: SessionApi;
  private labelmap: Uint8Array;
  private strokeTool: EffortTool | null = null;
  private tool: EffortTool | null = null;
  private unsubscribe: (() => void) | null = null;
  private stopEffort: (() => Promise<void>) | null = null;

  private constructor(options: SessionOptions, api: SessionApi, labelmap: Uint8Array, lesions: Lesion[]) {
    this.task = options.task;
    this.editable = options.editable;
    this.host = options.host;
    this.api = api;
    this.labelmap = labelmap;
    this.lesions = new LesionStore(options.task.id, options.lesionClasses, api.lesions);
    this.lesions.load(lesions);
    this.history = new LabelmapHistory(labelmap, { maxBytes: options.historyBytes });
    this.autosave = new Autosave({
      getMask: (lesionId) => {
        const segment = this.lesions.segmentOf(lesionId);
        if (segment === null) throw new Error(`lesion ${lesionId} is not in this workspace`);
        return extractMask(this.labelmap, segment);
      },
      save: api.saveMask,
      latest: api.latestVersion,
      fetchData: (id) => this.api.fetchMaskData(id),
    }, options.autosave);
    for (const entry of this.lesions.entries) this.autosave.track(entry.lesion.id, entry.lesion.latest_mask);
    this.effort = options.editable && options.effort !== false
      ? new EffortTracker(options.task.id, api.postEffort, options.effort || {})
      : null;
    this.effort?.setLesion(this.lesions.selected?.lesion.id ?? null);
  }

  /**
   * The task's lesions and their latest masks, as open() needs them: start it while the viewer
   * loads (open's `saved`) so that the requests overlap the volume's download.
   */
  static loadSaved(taskId: number, api: Partial<SessionApi> = {}): Promise<SavedLesions> {
    const { listLesions: list, fetchMaskData: fetchData } = { ...defaultApi, ...api };
    return list(taskId).then(async (listed) => {
      const lesions = [...listed].sort((a, b) => a.id - b.id);
      const masks = await Promise.all(lesions.map(async (lesion, i) => {
        if (!lesion.latest_mask) return null;
        const data = await fetchData(lesion.latest_mask.id);
        return { segment: i + 1, voxels: data.voxels };
      }));
      return { lesions, masks: masks.filter((m) => m !== null) };
    });
  }

  /**
   * Loads the task's lesions and their latest masks (or takes `saved`, from loadSaved()), shows
   * the composed labelmap in the viewer and starts listening to its edits (and, when editable,
   * tracking effort).
   */
  static async open(
    options: SessionOptions,
    { trackEffort = true, saved }: { trackEffort?: boolean; saved?: Promise<SavedLesions> } = {},
  ): Promise<WorkspaceSession> {
    const api: SessionApi = { ...defaultApi, ...options.api };
    const { lesions, masks } = await (saved ?? WorkspaceSession.loadSaved(options.task.id, api));
    const dims = options.host.dimensions;
    const voxelCount = options.voxelCount ?? (dims ? dims[0] * dims[1] * dims[2] : undefined);
    if (voxelCount === undefined) throw new Error('the session needs voxelCount or host.dimensions');
    const labelmap = composeLabelmap(voxelCount, masks);
    const session = new WorkspaceSession(options, api, labelmap, lesions);
    options.host.setLabelmap(labelmap);
    session.unsubscribe = options.host.onEdit((edit) => session.handleEdit(edit));
    if (trackEffort && session.effort && typeof window !== 'undefined') session.stopEffort = session.effort.start();
    return session;
  }

  private refresh(): void {
    this.host.setLabelmap(this.labelmap);
  }

  private dirty(change: HistoryChange | null): void {
    if (!change) return;
    for (const segment of change.segments) {
      const entry = this.lesions.bySegment(segment);
      if (entry) this.autosave.markDirty(entry.lesion.id);
    }
  }

  // ---- edits ----------------------------------------------------------------------------------

  /** The labelmap as the session holds it (what autosave sends): do not modify. */
  get labelmapData(): Uint8Array {
    return this.labelmap;
  }

  /**
   * The editing tool in use: each user edit outside an explicit stroke counts as one
   * interaction of it (null: a tool that is not recorded, e.g. a programmatic change).
   */
  setTool(tool: EffortTool | null): void {
    this.tool = tool;
  }

  private sliceOf(indices: ArrayLike<number>): number | null {
    const dims = this.host.dimensions;
    if (!dims || indices.length === 0) return null;
    return Math.floor(indices[0]! / (dims[0] * dims[1]));
  }

  /**
   * Groups several viewer edits into one undo step and one interaction (the viewer's edit is
   * normally a whole stroke already; this is for tools that report in pieces).
   */
  beginStroke(tool: EffortTool | null = this.tool, label = tool === 'eraser' ? 'Eraser' : 'Brush'): void {
    this.history.beginStroke(label);
    this.strokeTool = tool;
  }

  endStroke(): HistoryChange | null {
    const change = this.history.endStroke();
    if (change && this.strokeTool) this.effort?.interaction(this.strokeTool, { slice: this.sliceOf(change.indices) });
    this.strokeTool = null;
    this.dirty(change);
    return change;
  }

  /** The viewer's onEdit: voxels a tool changed, with their new values. */
  handleEdit(edit: LabelmapEditLike): void {
    if (!this.editable) return;
    const { indices, after } = edit;
    for (let i = 0; i < indices.length; i++) this.labelmap[indices[i]!] = after[i]!;
    const change = this.history.record(indices, this.labelmap, this.tool === 'eraser' ? 'Eraser' : 'Brush');
    if (change && this.tool && !this.history.inStroke) {
      this.effort?.interaction(this.tool, { slice: this.sliceOf(change.indices) });
    } else {
      this.effort?.activity();
    }
    this.dirty(change);
  }

  undo(): HistoryChange | null {
    const change = this.history.undo(this.labelmap);
    if (change) {
      this.refresh();
      this.dirty(change);
      this.effort?.interaction('undo');
    }
    return change;
  }

  redo(): HistoryChange | null {
    const change = this.history.redo(this.labelmap);
    if (change) {
      this.refresh();
      this.dirty(change);
      this.effort?.interaction('redo');
    }
    return change;
  }

  /**
   * Puts `mask` as the lesion's voxels (an undoable step, labelled `label`); it wins over
   * other lesions where they overlap (one label per voxel).
   */
  private putMask(lesionId: number, mask: Uint8Array, label: string): HistoryChange | null {
    const segment = this.lesions.segmentOf(lesionId);
    if (segment === null) throw new Error(`lesion ${lesionId} is not in this workspace`);
    const changed = replaceSegment(this.labelmap, segment, mask);
    const change = this.history.record(changed, this.labelmap, label);
    this.refresh();
    // Voxels taken from other lesions change their masks: those save as usual.
    for (const other of change?.segments ?? []) {
      const entry = other === segment ? null : this.lesions.bySegment(other);
      if (entry) this.autosave.markDirty(entry.lesion.id);
    }
    return change;
  }

  // ---- lesions --------------------------------------------------------------------------------

  select(lesionId: number | null): void {
    this.lesions.select(lesionId);
    this.effort?.setLesion(lesionId);
  }

  async addLesion(lesionClass?: string, prompt: { key_slice?: number; box?: Box } = {}): Promise<LesionEntry> {
    const entry = await this.lesions.add(lesionClass, prompt);
    this.autosave.track(entry.lesion.id, null);
    this.effort?.setLesion(entry.lesion.id);
    return entry;
  }

  /** Deletes on the server, then clears its voxels (not undoable: the server forgot them). */
  async deleteLesion(lesionId: number): Promise<void> {
    const segment = await this.lesions.remove(lesionId);
    this.autosave.forget(lesionId);
    this.effort?.forgetLesion(lesionId);
    const changed = clearSegment(this.labelmap, segment);
    this.history.sync(changed, this.labelmap);
    this.history.forgetSegment(segment);
    this.refresh();
    this.effort?.setLesion(this.lesions.selected?.lesion.id ?? null);
  }

  // ---- segmentation ---------------------------------------------------------------------------

  /**
   * Segments the lesion from a prompt (saving it first); the result replaces its voxels as an
   * undoable step and becomes the parent of the next save.
   */
  async segment(
    lesionId: number,
    prompt: SegmentRequest,
    { onProgress, signal }: { onProgress?: (p: SegmentProgress) => void; signal?: AbortSignal } = {},
  ): Promise<SegmentResult> {
    if (prompt.mask_slice !== undefined) this.effort?.interaction('propagate', { lesion: lesionId, slice: prompt.mask_slice });
    else if (!prompt.positive_points?.length && !prompt.negative_points?.length) {
      // a point refinement resends the lesion's box: it counts as the points only
      this.effort?.interaction('box', { lesion: lesionId, slice: prompt.key_slice ?? null });
    }
    for (const p of prompt.positive_points ?? []) this.effort?.interaction('point+', { lesion: lesionId, slice: p[2] });
    for (const p of prompt.negative_points ?? []) this.effort?.interaction('point-', { lesion: lesionId, slice: p[2] });
    const result = await runSegmentation(lesionId, prompt, {
      api: this.api.segment,
      autosave: this.autosave,
      onProgress,
      signal,
      apply: ({ mask }) => {
        this.putMask(lesionId, mask.voxels, 'Segmentation');
      },
    });
    const entry = this.lesions.get(lesionId);
    if (entry) {
      const box = (prompt.box ?? entry.lesion.box) as Box | null;
      this.lesions.update({ ...entry.lesion, latest_mask: result.version, key_slice: prompt.key_slice ?? entry.lesion.key_slice, box });
    }
    return result;
  }

  // ---- conflicts ------------------------------------------------------------------------------

  /** Takes the other editor's version; undo brings the local edit back (and saves it on theirs). */
  reloadTheirs(lesionId: number): ReturnType<Autosave['reloadTheirs']> {
    return this.autosave.reloadTheirs(lesionId, (theirs: MaskData, _version: MaskVersion | null) => {
      this.putMask(lesionId, theirs.voxels, 'Reload their version');
    });
  }

  overwrite(lesionId: number): ReturnType<Autosave['overwrite']> {
    return this.autosave.overwrite(lesionId);
  }

  // ---- task -----------------------------------------------------------------------------------

  /** Saves everything, sends the effort, submits. Refuses while a lesion is unsaved. */
  async submit(): Promise<Task> {
    const saved = await this.autosave.flush();
    if (!saved) {
      const bad = this.autosave.states().filter((s) => s.status !== 'saved');
      const names = bad.map((s) => this.lesions.get(s.lesionId)?.name ?? `lesion ${s.lesionId}`);
      throw new Error(`Not submitted: ${names.join(', ')} could not be saved. ${bad[0]?.message ?? ''}`.trim());
    }
    // Effort ends with the submission: a submitted task takes no more (the server refuses it).
    const tracking = this.stopEffort !== null;
    if (this.stopEffort) await this.stopEffort();
    else await this.effort?.flush();
    this.stopEffort = null;
    try {
      return await this.api.submitTask(this.task.id);
    } catch (err) {
      if (tracking && this.effort) this.stopEffort = this.effort.start();
      throw err;
    }
  }

  /** Stops listening and tracking; saves what is pending (best effort). */
  async close(): Promise<void> {
    this.unsubscribe?.();
    this.unsubscribe = null;
    await this.autosave.flush().catch(() => false);
    if (this.stopEffort) await this.stopEffort();
    else await this.effort?.stop();
    this.autosave.dispose();
  }
}
