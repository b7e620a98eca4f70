// Undo / redo over the labelmap (z*y*x uint8, value = segment index) as sparse diffs.
//
// The viewer reports which voxels an edit changed (`onEdit(indices)`), not their old values,
// so the history keeps a shadow copy of the labelmap as of the last recorded change: the old
// value of a voxel is the shadow's, the new one the labelmap's. Edits between `beginStroke()`
// and `endStroke()` make one undo step (a brush stroke); outside a stroke every `record` is a
// step of its own. Each step stores the changed voxels once (index, old, new: 6 bytes a voxel),
// and the oldest steps are dropped when the undo + redo stacks would exceed `maxBytes`.

export interface Diff {
  /** Voxel indices into the labelmap, ascending, unique. */
  indices: Uint32Array;
  before: Uint8Array;
  after: Uint8Array;
  /** Free text for the UI ("Brush", "Segmentation of lesion 4"). */
  label: string;
}

export interface HistoryChange {
  /** The voxels whose values changed (ascending). */
  indices: Uint32Array;
  /** Segment indices whose voxels changed (old or new value, 0 excluded): their lesions are dirty. */
  segments: number[];
  label: string;
}

export interface HistoryOptions {
  /** Memory cap over both stacks (default 64 MiB). A single step over the cap is still kept. */
  maxBytes?: number;
}

const BYTES_PER_VOXEL = 6; // Uint32 index + old + new
const STEP_OVERHEAD = 64;

export function diffBytes(diff: Diff): number {
  return diff.indices.length * BYTES_PER_VOXEL + STEP_OVERHEAD;
}

function segmentsOf(diff: Diff): number[] {
  const seen = new Set<number>();
  for (let i = 0; i < diff.indices.length; i++) {
    if (diff.before[i] !== 0) seen.add(diff.before[i]!);
    if (diff.after[i] !== 0) seen.add(diff.after[i]!);
  }
  return [...seen].sort((a, b) => a - b);
}

export class LabelmapHistory {
  private shadow: Uint8Array;
  private undoStack: Diff[] = [];
  private redoStack: Diff[] = [];
  private bytes = 0;
  private readonly maxBytes: number;
  /** Old values of the voxels touched by the open stroke (first value seen wins). */
  private stroke: { label: string; before: Map<number, number> } | null = null;
  private listeners = new Set<() => void>();

  constructor(labelmap: Uint8Array, { maxBytes = 64 * 1024 * 1024 }: HistoryOptions = {}) {
    this.shadow = labelmap.slice();
    this.maxBytes = maxBytes;
  }

  get canUndo(): boolean {
    return this.undoStack.length > 0;
  }

  get canRedo(): boolean {
    return this.redoStack.length > 0;
  }

  get undoDepth(): number {
    return this.undoStack.length;
  }

  get redoDepth(): number {
    return this.redoStack.length;
  }

  /** Bytes held by both stacks (what maxBytes bounds). */
  get memoryBytes(): number {
    return this.bytes;
  }

  get inStroke(): boolean {
    return this.stroke !== null;
  }

  /** The label of the step `undo()` would revert. */
  get nextUndoLabel(): string | null {
    return this.undoStack.at(-1)?.label ?? null;
  }

  get nextRedoLabel(): string | null {
    return this.redoStack.at(-1)?.label ?? null;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(): void {
    for (const listener of [...this.listeners]) listener();
  }

  /** Forget every step and take `labelmap` as the new starting point (a task loaded). */
  reset(labelmap: Uint8Array): void {
    this.shadow = labelmap.slice();
    this.undoStack = [];
    this.redoStack = [];
    this.bytes = 0;
    this.stroke = null;
    this.emit();
  }

  /**
   * A lesion was deleted and its voxels cleared (reported with `sync`): no step
   * may bring its segment back, so every stored value of `segment` becomes 0 (the index can
   * then go to a new lesion without ghosts).
   */
  forgetSegment(segment: number): void {
    if (segment === 0) return;
    for (const diff of [...this.undoStack, ...this.redoStack]) {
      for (let i = 0; i < diff.indices.length; i++) {
        if (diff.before[i] === segment) diff.before[i] = 0;
        if (diff.after[i] === segment) diff.after[i] = 0;
      }
    }
    for (const [index, old] of this.stroke?.before ?? []) {
      if (old === segment) this.stroke!.before.set(index, 0);
    }
    for (let i = 0; i < this.shadow.length; i++) if (this.shadow[i] === segment) this.shadow[i] = 0;
    this.emit();
  }

  /** Takes the labelmap's values at `indices` as they are, recording no step (not undoable). */
  sync(indices: ArrayLike<number>, labelmap: Uint8Array): void {
    for (let i = 0; i < indices.length; i++) this.shadow[indices[i]!] = labelmap[indices[i]!]!;
  }

  beginStroke(label = 'Edit'): void {
    if (this.stroke) this.endStroke();
    this.stroke = { label, before: new Map() };
  }

  /**
   * The viewer changed these voxels of `labelmap` (duplicates and unchanged voxels are fine).
   * Inside a stroke they join it; otherwise they make a step at once. Returns that step's
   * change (null inside a stroke or when nothing changed).
   */
  record(indices: ArrayLike<number>, labelmap: Uint8Array, label = 'Edit'): HistoryChange | null {
    if (labelmap.length !== this.shadow.length) {
      throw new Error(`the labelmap has ${labelmap.length} voxels; the history tracks ${this.shadow.length}`);
    }
    if (this.stroke) {
      const before = this.stroke.before;
      for (let i = 0; i < indices.length; i++) {
        const index = indices[i]!;
        if (!before.has(index)) before.set(index, this.shadow[index]!);
        this.shadow[index] = labelmap[index]!;
      }
      return null;
    }
    const before = new Map<number, number>();
    for (let i = 0; i < indices.length; i++) {
      const index = indices[i]!;
      if (!before.has(index)) before.set(index, this.shadow[index]!);
      this.shadow[index] = labelmap[index]!;
    }
    return this.push(before, label);
  }

  /** Closes the stroke: its voxels become one undo step. Returns it (null when nothing changed). */
  endStroke(): HistoryChange | null {
    const stroke = this.stroke;
    if (!stroke) return null;
    this.stroke = null;
    return this.push(stroke.before, stroke.label);
  }

  /** Drops the open stroke from the history, leaving its voxels as drawn (recorded as no step). */
  cancelStroke(): void {
    this.stroke = null;
  }

  private push(before: Map<number, number>, label: string): HistoryChange | null {
    const changed: number[] = [];
    for (const [index, old] of before) if (this.shadow[index] !== old) changed.push(index);
    if (changed.length === 0) return null;
    changed.sort((a, b) => a - b);
    const diff: Diff = {
      indices: Uint32Array.from(changed),
      before: new Uint8Array(changed.length),
      after: new Uint8Array(changed.length),
      label,
    };
    changed.forEach((index, i) => {
      diff.before[i] = before.get(index)!;
      diff.after[i] = this.shadow[index]!;
    });
    for (const dropped of this.redoStack) this.bytes -= diffBytes(dropped);
    this.redoStack = [];
    this.undoStack.push(diff);
    this.bytes += diffBytes(diff);
    this.trim();
    this.emit();
    return { indices: diff.indices, segments: segmentsOf(diff), label };
  }

  private trim(): void {
    // Oldest undo steps go first, then the farthest redo steps; the newest step always stays.
    while (this.bytes > this.maxBytes && this.undoStack.length + this.redoStack.length > 1) {
      const dropped = this.undoStack.length > 1 || this.redoStack.length === 0
        ? this.undoStack.shift()!
        : this.redoStack.shift()!;
      this.bytes -= diffBytes(dropped);
    }
  }

  private apply(diff: Diff, values: Uint8Array, labelmap: Uint8Array): HistoryChange {
    for (let i = 0; i < diff.indices.length; i++) {
      const index = diff.indices[i]!;
      labelmap[index] = values[i]!;
      this.shadow[index] = values[i]!;
    }
    return { indices: diff.indices, segments: segmentsOf(diff), label: diff.label };
  }

  /** Reverts the last step in `labelmap` (in place). An open stroke is closed first. */
  undo(labelmap: Uint8Array): HistoryChange | null {
    if (this.stroke) this.endStroke();
    const diff = this.undoStack.pop();
    if (!diff) return null;
    const change = this.apply(diff, diff.before, labelmap);
    this.redoStack.push(diff);
    this.emit();
    return change;
  }

  redo(labelmap: Uint8Array): HistoryChange | null {
    if (this.stroke) this.endStroke();
    const diff = this.redoStack.pop();
    if (!diff) return null;
    const change = this.apply(diff, diff.after, labelmap);
    this.undoStack.push(diff);
    this.emit();
    return change;
  }
}
