// The labelmap segmentation (one segment per lesion) and the LabelmapAccess interface that the
// workspace state modules (undo/redo, autosave) plug into. Edits are found by diffing the slices
// Cornerstone reports as modified against a shadow copy, off the input path (idle time).

import { cache, eventTarget, volumeLoader, type Types } from '@cornerstonejs/core';
import { Enums as ToolEnums, segmentation } from '@cornerstonejs/tools';
import { readVolumePlane, sliceData } from './planes';
import type { LabelmapAccess, LabelmapEdit } from './types';

export class Labelmap implements LabelmapAccess {
  readonly dimensions: [number, number, number];
  private readonly volume: Types.IImageVolume;
  private shadow: Uint8Array;
  private listeners = new Set<(edit: LabelmapEdit) => void>();
  private dirty = new Set<number>();
  private dirtyAll = false;
  private scheduled = false;
  private readonly onModified: (evt: Event) => void;
  /** Edits are looked for once the viewer is set up (setting up reports changes of its own). */
  private tracking = false;
  /** Called synchronously on every data change (before the diff), e.g. for latency marks. */
  onAnyChange: (() => void) | null = null;

  readonly segmentationId: string;
  readonly volumeId: string;

  constructor(segmentationId: string, volumeId: string, referencedVolumeId: string) {
    this.segmentationId = segmentationId;
    this.volumeId = volumeId;
    this.volume = volumeLoader.createAndCacheDerivedLabelmapVolume(referencedVolumeId, { volumeId });
    const [x, y, z] = this.volume.dimensions;
    this.dimensions = [x, y, z];
    this.shadow = new Uint8Array(x * y * z);
    segmentation.addSegmentations([{
      segmentationId,
      representation: { type: ToolEnums.SegmentationRepresentations.Labelmap, data: { volumeId } },
    }]);
    this.onModified = (evt: Event) => {
      const detail = (evt as CustomEvent<{ segmentationId: string; modifiedSlicesToUse?: number[] }>).detail;
      if (detail.segmentationId !== this.segmentationId || !this.tracking) return;
      this.onAnyChange?.();
      if (detail.modifiedSlicesToUse?.length) for (const k of detail.modifiedSlicesToUse) this.dirty.add(k);
      else this.dirtyAll = true;
      this.schedule();
    };
    eventTarget.addEventListener(ToolEnums.Events.SEGMENTATION_DATA_MODIFIED, this.onModified);
  }

  get sliceSize(): number {
    return this.dimensions[0] * this.dimensions[1];
  }

  /** The live voxel data of slice k (image-backed volume) or null. */
  private sliceArray(k: number): ArrayLike<number> | null {
    return sliceData(this.volume, k);
  }

  private readSlice(k: number, out: Uint8Array, offset: number): void {
    readVolumePlane(this.volume, 2, k, out.subarray(offset, offset + this.sliceSize));
  }

  /** The labels of one voxel plane into `out` (planes.ts): live data, not the shadow. */
  readPlane(axis: 0 | 1 | 2, index: number, out: Uint8Array): void {
    readVolumePlane(this.volume, axis, index, out);
  }

  getLabelmap(): Uint8Array {
    const out = new Uint8Array(this.shadow.length);
    for (let k = 0; k < this.dimensions[2]; k++) this.readSlice(k, out, k * this.sliceSize);
    return out;
  }

  /** Replaces the labelmap; only the slices that change are written, uploaded and repainted.
   * Pending (not yet diffed) edits are dropped: the new data is the new reference. */
  setLabelmap(data: Uint8Array): void {
    if (data.length !== this.shadow.length) {
      throw new Error(`labelmap has ${this.shadow.length} voxels, got ${data.length}`);
    }
    const size = this.sliceSize;
    const vm = this.volume.voxelManager;
    const changed: number[] = [];
    const current = new Uint8Array(size);
    for (let k = 0; k < this.dimensions[2]; k++) {
      const part = data.subarray(k * size, (k + 1) * size);
      const live = this.sliceArray(k);
      let same: boolean;
      if (live instanceof Uint8Array) same = sameBytes(live, part);
      else {
        this.readSlice(k, current, 0);
        same = sameBytes(current, part);
      }
      if (!same) {
        changed.push(k);
        if (live instanceof Uint8Array) live.set(part);
        else if (vm) for (let i = 0; i < size; i++) vm.setAtIndex(k * size + i, part[i] ?? 0);
        else throw new Error('the labelmap volume has no voxel manager');
      }
      // the shadow follows: where the data changed, and where an edit was pending
      if (!same || this.dirtyAll || this.dirty.has(k)) this.shadow.set(part, k * size);
    }
    this.dirty.clear();
    this.dirtyAll = false;
    if (!changed.length) return;
    const listener = this.onModified;
    eventTarget.removeEventListener(ToolEnums.Events.SEGMENTATION_DATA_MODIFIED, listener);
    try {
      segmentation.triggerSegmentationEvents.triggerSegmentationDataModified(this.segmentationId, changed);
    } finally {
      eventTarget.addEventListener(ToolEnums.Events.SEGMENTATION_DATA_MODIFIED, listener);
    }
  }

  /** From now on, changes of the data are edits (diffed against the last setLabelmap()). */
  startTracking(): void {
    this.tracking = true;
  }

  onEdit(callback: (edit: LabelmapEdit) => void): () => void {
    this.listeners.add(callback);
    return () => this.listeners.delete(callback);
  }

  /** Voxels equal to `segment`, or non-zero when omitted (live data, not the shadow). */
  count(segment?: number): number {
    const size = this.sliceSize;
    const buffer = new Uint8Array(size);
    let total = 0;
    for (let k = 0; k < this.dimensions[2]; k++) {
      this.readSlice(k, buffer, 0);
      for (let i = 0; i < size; i++) {
        const v = buffer[i];
        if (segment === undefined ? v !== 0 : v === segment) total++;
      }
    }
    return total;
  }

  /** Diffs the pending slices now (normally done in idle time); returns the edit, if any. */
  flush(): LabelmapEdit | null {
    this.scheduled = false;
    const slices = this.dirtyAll
      ? Array.from({ length: this.dimensions[2] }, (_, k) => k)
      : [...this.dirty].filter((k) => k >= 0 && k < this.dimensions[2]).sort((a, b) => a - b);
    this.dirty.clear();
    this.dirtyAll = false;
    const size = this.sliceSize;
    const buffer = new Uint8Array(size);
    const indices: number[] = [];
    const before: number[] = [];
    const after: number[] = [];
    for (const k of slices) {
      const base = k * size;
      const live = this.sliceArray(k);
      if (live instanceof Uint8Array && sameBytes(live, this.shadow.subarray(base, base + size))) continue;
      this.readSlice(k, buffer, 0);
      for (let i = 0; i < size; i++) {
        const now = buffer[i] ?? 0;
        const was = this.shadow[base + i] ?? 0;
        if (now !== was) {
          indices.push(base + i);
          before.push(was);
          after.push(now);
          this.shadow[base + i] = now;
        }
      }
    }
    if (!indices.length) return null;
    const edit = {
      indices: Uint32Array.from(indices), before: Uint8Array.from(before), after: Uint8Array.from(after),
    };
    for (const listener of this.listeners) listener(edit);
    return edit;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    const run = (): void => void this.flush();
    if ('requestIdleCallback' in window) window.requestIdleCallback(run, { timeout: 500 });
    else setTimeout(run, 50);
  }

  dispose(): void {
    eventTarget.removeEventListener(ToolEnums.Events.SEGMENTATION_DATA_MODIFIED, this.onModified);
    this.listeners.clear();
    segmentation.removeSegmentation(this.segmentationId);
    cache.removeVolumeLoadObject(this.volumeId);
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  // compare 4 bytes at a time where both are aligned (slices are whole multiples of 4 voxels)
  if (a.length % 4 === 0 && a.byteOffset % 4 === 0 && b.byteOffset % 4 === 0) {
    const x = new Uint32Array(a.buffer, a.byteOffset, a.length / 4);
    const y = new Uint32Array(b.buffer, b.byteOffset, b.length / 4);
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
    return true;
  }
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
