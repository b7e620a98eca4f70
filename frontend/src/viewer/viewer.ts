// The workspace viewer: key slice first in a stack view, then the volume in axial / sagittal /
// coronal orthographic views with a labelmap (one segment per lesion) and the editing tools.
// Loaded as its own chunk (dynamic import from pages/workspace.ts) so the page paints first.
//
// createViewer() composes the set-up (setup.ts: engine, key slice, views; volume.ts: the volume
// and its labelmap) and the tools (toolWiring.ts) into the `Viewer` the page drives.

import { cache, type Types, utilities } from '@cornerstonejs/core';
import { segmentation, utilities as toolUtilities } from '@cornerstonejs/tools';
import { initCornerstone } from './cornerstone';
import { registerSeries, type SeriesImages } from './dicomweb';
import { applyLayout } from './layout';
import type { PreparedSeries } from './prepare';
import { geometry, openEngine, showKeySlice, showVolume, voiFor, type Stage } from './setup';
import { stackOnlyViewer } from './stackViewer';
import { attachVolumeTools } from './toolWiring';
import type { ViewerTools } from './tools';
import type {
  LabelmapAccess, LabelmapEdit, Layout, Orientation, RangeMarks, ToolName, ViewerLesion,
  WindowPresetLike, WorkspaceHook,
} from './types';
import { ViewOverlays } from './viewOverlay';
import { loadVolumeViews, paintSavedMasks, SEGMENTATION_ID, type VolumeViews } from './volume';

export interface ViewerElements {
  /** The grid holding one cell per orientation (layout classes go on it). */
  grid: HTMLElement;
  cells: Record<Orientation, HTMLElement>;
  /** The key-slice stack view shown until the volume is loaded. */
  keyCell: HTMLElement;
}

export interface ViewerOptions {
  elements: ViewerElements;
  /** The series' metadata and pixel download, started by prepareSeries() (before this chunk). */
  series: PreparedSeries;
  lesions: ViewerLesion[];
  /** The key slice, already on screen (preview.ts), or null: the viewer shows it itself. */
  preview: HTMLCanvasElement | null;
  /** Slice index (z, volume grid) to show first; default the middle slice. */
  keySlice: number | null;
  presets: WindowPresetLike[];
  hook: WorkspaceHook;
  onProgress(done: number, total: number, phase: string): void;
  signal: AbortSignal;
}

export interface Viewer extends LabelmapAccess {
  /** A cine (multi-frame) or single image: one stack view, no volume views or labelmap yet. */
  readonly stackOnly: boolean;
  /** Multi-frame (cine): playCine() plays it. */
  readonly cine: boolean;
  setLayout(layout: Layout): void;
  setTool(name: ToolName): void;
  setBrushSize(mm: number): void;
  setActiveSegment(segment: number): void;
  applyPreset(preset: WindowPresetLike): void;
  playCine(play: boolean): void;
  /** The voxel [i, j, k] under a page point of a view (fractional; not clamped). */
  pageToVoxel(viewportId: string, page: [number, number]): [number, number, number];
  /** The volume index of the slice a view shows (k for the axial view). */
  sliceIndex(viewportId: string): number;
  /** The selected lesion's marked slice range, shown in every view's overlay (null: none). */
  setRangeMarks(marks: RangeMarks | null): void;
  /** Colour ([r, g, b] 0..255) and visibility of one segment in every view (best effort). */
  setSegmentStyle(segment: number, color: [number, number, number] | null, visible: boolean): void;
  /** Reports pending edits now (normally found in idle time). */
  flushEdits(): void;
  dispose(): void;
}

export async function createViewer(options: ViewerOptions): Promise<Viewer> {
  const { elements, hook, signal } = options;
  initCornerstone();
  cache.purgeCache();

  const { metadata, download } = options.series;
  if (!metadata.length) throw new Error('the series has no instances');
  const images: SeriesImages = registerSeries(options.series.uids, metadata);
  const { imageIds } = images;
  signal.throwIfAborted();
  let showVolumeProgress = false;
  if (download) {
    download.onBytes = (received) => {
      if (!showVolumeProgress) return;
      const done = Math.min(imageIds.length, Math.floor((received / download.expectedBytes) * imageIds.length));
      options.onProgress(done, imageIds.length, 'Loading the volume');
    };
  }

  const stage = openEngine(elements.grid);
  const preset: WindowPresetLike | null = options.presets[0] ?? null;
  const keyIndex = Math.min(
    Math.max(0, images.multiFrame ? 0 : (options.keySlice ?? Math.floor(imageIds.length / 2))),
    imageIds.length - 1,
  );
  const fps = images.frameTimeMs ? Math.max(1, Math.round(1000 / images.frameTimeMs)) : 15;
  // 1. The key slice first: drawn already (preview.ts, before this chunk loaded), or in a stack
  // view. It stays on screen as a still picture while the volume's views are set up under it.
  let still: HTMLElement | null = options.preview;
  if (!still) {
    const key = await showKeySlice(
      stage.engine, elements, images, keyIndex, preset, download, hook, options.onProgress, signal,
    );
    if (key.stackOnly) return stackOnlyViewer(stage.engine, key.stack, key.element, images, fps, hook, stage.disposers);
    still = key.still;
  }

  // 2. The volume and its views.
  const views = await loadVolumeViews(stage, elements, images, options.series, () => {
    showVolumeProgress = true;
  }, options.onProgress, signal);

  // 3. The saved masks, the tools, and the views take the key slice's place.
  await paintSavedMasks(views.labelmap, options.lesions, signal);
  const tools = attachVolumeTools(stage, views, hook);
  const startWindow = preset ? voiFor(preset) : views.defaultWindow;
  // the threshold brush paints the voxels inside the chosen window
  if (startWindow) tools.setThresholdRange(startWindow.lower, startWindow.upper);
  await showVolume(stage.engine, views.volume, views.viewports, keyIndex, startWindow);
  elements.keyCell.hidden = true;
  still.remove();
  const overlays = new ViewOverlays(views.viewports, elements.cells, views.volume, { cine: images.multiFrame });
  stage.disposers.push(() => overlays.dispose());
  hook.overlay = (id) => overlays.state(id);
  hook.viewports = views.ids;
  performance.mark('viewer:views-ready');

  const geo = geometry(stage.engine, views.volume);
  hook.voxelToPage = geo.toPage;
  hook.labelmapVoxels = (segment?: number) => views.labelmap.count(segment);
  hook.setTool = (name) => tools.set(name);
  hook.setBrushSize = (mm) => tools.setBrushSize(mm);
  hook.sliceIndex = geo.slice;
  return volumeViewer(stage, views, tools, overlays, geo.toVoxel, geo.slice, {
    elements, cine: images.multiFrame, fps,
  });
}

/** The Viewer of a volume: what the page asks of the views, the labelmap and the tools. */
function volumeViewer(
  stage: Stage,
  views: VolumeViews,
  tools: ViewerTools,
  overlays: ViewOverlays,
  pageToVoxel: Viewer['pageToVoxel'],
  sliceIndex: Viewer['sliceIndex'],
  settings: { elements: ViewerElements; cine: boolean; fps: number },
): Viewer {
  const { engine, disposers } = stage;
  const { labelmap, viewports, ids } = views;
  const { volumeId } = views.volume;
  const { cine } = settings;
  return {
    stackOnly: false,
    cine,
    dimensions: labelmap.dimensions,
    getLabelmap: () => labelmap.getLabelmap(),
    setLabelmap: (data: Uint8Array) => labelmap.setLabelmap(data),
    onEdit: (cb: (edit: LabelmapEdit) => void) => labelmap.onEdit(cb),
    setLayout(layout: Layout) {
      if (cine) return; // one view of the frames
      // fit each view to its new size (camera reset), but stay on the slice each one showed
      const slices = viewports.map((vp) => vp.getSliceIndex());
      applyLayout(settings.elements, layout);
      engine.resize(true, false);
      viewports.forEach((vp, i) => {
        if (!vp.element.offsetParent) return; // hidden in this layout
        void utilities.jumpToSlice(vp.element, { imageIndex: slices[i] ?? 0 });
      });
      engine.renderViewports(ids);
    },
    setTool: (name) => tools.set(name),
    setBrushSize: (mm) => tools.setBrushSize(mm),
    setActiveSegment: (segment) => segmentation.segmentIndex.setActiveSegmentIndex(SEGMENTATION_ID, segment),
    applyPreset(next: WindowPresetLike) {
      for (const vp of viewports) vp.setProperties({ voiRange: voiFor(next) }, volumeId);
      tools.setThresholdRange(voiFor(next).lower, voiFor(next).upper);
      engine.renderViewports(ids);
    },
    playCine(play: boolean) {
      if (!cine) return;
      const { element } = viewports[0] as Types.IVolumeViewport;
      if (play) toolUtilities.cine.playClip(element, { framesPerSecond: settings.fps, loop: true });
      else toolUtilities.cine.stopClip(element);
    },
    pageToVoxel,
    sliceIndex,
    setRangeMarks: (marks) => overlays.setMarks(marks),
    setSegmentStyle(segment: number, color: [number, number, number] | null, visible: boolean) {
      for (const id of ids) {
        try {
          if (color) segmentation.config.color.setSegmentIndexColor(id, SEGMENTATION_ID, segment, [...color, 255]);
          segmentation.config.visibility.setSegmentIndexVisibility(id, { segmentationId: SEGMENTATION_ID }, segment, visible);
        } catch {
          // the representation is not on this view (yet): styling is cosmetic
        }
      }
      engine.renderViewports(ids);
    },
    flushEdits: () => void labelmap.flush(),
    dispose() {
      for (const dispose of disposers.reverse()) dispose();
    },
  };
}
