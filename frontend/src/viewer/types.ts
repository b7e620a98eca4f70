// Shared viewer types (no Cornerstone imports: safe for the page module and for tests).

export type DicomJson = Record<string, { vr?: string; Value?: unknown[]; BulkDataURI?: string }>;

export interface SeriesUids {
  study: string;
  series: string;
}

export type ToolName = 'brush' | 'eraser' | 'threshold' | 'windowLevel' | 'pan' | 'zoom' | 'crosshairs';

export type Orientation = 'axial' | 'sagittal' | 'coronal';

export type Layout = 'axial' | 'sagittal' | 'coronal' | '1+2' | '3x1';

export interface WindowPresetLike {
  name: string;
  center: number;
  width: number;
}

/**
 * The first and last slice marked for a lesion (volume index k, the server's z), as marked:
 * `first` may be the higher index. Either is null until marked.
 */
export interface RangeMarks {
  first: number | null;
  last: number | null;
}

/** One lesion in the viewer: segment index (1-based) and its latest saved mask, if any. */
export interface ViewerLesion {
  id: number;
  segment: number;
  color: string | null;
  keySlice: number | null;
  maskId: number | null;
}

/** A change of the labelmap: flat z*y*x indices and their values before and after. */
export interface LabelmapEdit {
  indices: Uint32Array;
  before: Uint8Array;
  after: Uint8Array;
}

/** What the workspace state modules (undo/redo, autosave) see of the viewer. */
export interface LabelmapAccess {
  /** [x, y, z] voxel counts of the labelmap grid. */
  readonly dimensions: [number, number, number];
  /** A copy of the labelmap, z*y*x uint8 in C order (x fastest), segment index per voxel. */
  getLabelmap(): Uint8Array;
  /** Replaces the labelmap (same size); does not report an edit. */
  setLabelmap(data: Uint8Array): void;
  /** Called after each user edit with the voxels that changed; returns an unsubscribe function. */
  onEdit(callback: (edit: LabelmapEdit) => void): () => void;
}

export interface WorkspaceHook {
  ready: boolean;
  error: string | null;
  timings: { firstSliceMs: number | null; interactiveMs: number | null };
  viewports: string[];
  labelmapVoxels(segment?: number): number;
  voxelToPage(viewportId: string, ijk: [number, number, number]): [number, number];
  brushLatenciesMs: number[];
  /** Brush edits drawn straight onto the painted view's canvas (the stroke overlay). */
  strokeOverlayDraws: number;
  setTool(name: 'brush' | 'eraser' | 'windowLevel' | 'pan' | 'zoom' | 'crosshairs'): void;
  setBrushSize(mm: number): void;
  /** The workspace's lesions with their segment and labelmap voxel count (live data). */
  lesions(): { id: number; segment: number; voxels: number; lesionClass: string; visible: boolean }[];
  /** The autosave's overall state: saved / dirty / saving / conflict / error ('' before the session). */
  saveState(): string;
  /** The selected lesion's id, or null. */
  selectedLesion(): number | null;
  /** The slice (a cine: the frame) a view shows, 0-based. */
  sliceIndex(viewportId: string): number;
  /** What a view's overlay shows now, or null (no such view, or no volume views). */
  overlay(viewportId: string): {
    slice: string;
    range: string;
    mark: string;
    windowLevel: string;
    edges: { top: string; bottom: string; left: string; right: string };
  } | null;
  /** The selected lesion's marked slices ({first, last}: volume index k, as marked). */
  sliceRange(): RangeMarks;
}

declare global {
  interface Window {
    __workspace?: WorkspaceHook;
  }
}
