// The workspace viewer: key slice first in a stack view, then the volume in axial / sagittal /
// coronal orthographic views with a labelmap (one segment per lesion) and the editing tools.
// Loaded as its own chunk (dynamic import from pages/workspace.ts) so the page paints first.

import {
  Enums, RenderingEngine, cache, eventTarget, getRenderingEngine, setVolumesForViewports, utilities, volumeLoader,
  type Types,
} from '@cornerstonejs/core';
import { segmentation, ToolGroupManager, utilities as toolUtilities } from '@cornerstonejs/tools';
import { initCornerstone } from './cornerstone';
import { SeriesVolume } from './bulk';
import { registerSeries, type SeriesImages } from './dicomweb';
import type { PreparedSeries } from './prepare';
import { Labelmap } from './labelmap';
import { BrushLatency } from './latency';
import { applyLayout, ORIENTATIONS } from './layout';
import { fetchMask, paintSegment } from './masks';
import { createTools, paintImmediately, repaintOnlyPaintedView, type ViewerTools } from './tools';
import { labelmapLook, StrokeOverlay } from './strokeOverlay';
import { ViewOverlays } from './viewOverlay';
import { worldToIndex } from './planes';
import { viewAxis } from './strokePaint';
import type {
  LabelmapAccess, LabelmapEdit, Layout, Orientation, RangeMarks, ToolName, ViewerLesion,
  WindowPresetLike, WorkspaceHook,
} from './types';

const ENGINE_ID = 'workspace-engine';
const TOOL_GROUP_ID = 'workspace-tools';
const KEY_VIEWPORT = 'key';
const SEGMENTATION_ID = 'workspace-segmentation';
const LABELMAP_VOLUME_ID = 'workspace-labelmap'; // local volume ids must not contain ':'

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

const ORIENTATION_ENUM: Record<Orientation, Enums.OrientationAxis> = {
  axial: Enums.OrientationAxis.AXIAL,
  sagittal: Enums.OrientationAxis.SAGITTAL,
  coronal: Enums.OrientationAxis.CORONAL,
};

function once(element: HTMLElement, name: string): Promise<void> {
  return new Promise((resolve) => element.addEventListener(name, () => resolve(), { once: true }));
}

function voiFor(preset: WindowPresetLike): Types.VOIRange {
  return { lower: preset.center - preset.width / 2, upper: preset.center + preset.width / 2 };
}

/** A 2D copy of a viewport's canvas laid over its element (removed by the caller). */
function freeze(element: HTMLElement): HTMLElement {
  const source = element.querySelector('canvas');
  const copy = document.createElement('canvas');
  copy.className = 'vw-still';
  if (source) {
    copy.width = source.width;
    copy.height = source.height;
    copy.getContext('2d')?.drawImage(source, 0, 0);
  }
  element.parentElement?.append(copy);
  return copy;
}

/**
 * Loads every frame of a streaming volume. Progress comes from IMAGE_VOLUME_MODIFIED (the load
 * callback only runs at the end); a frame that fails for good rejects at once (the end's callback
 * would report success when the last frame loaded, leaving a grey slice unnoticed).
 */
async function loadVolume(
  volume: Types.IImageVolume,
  imageIds: string[],
  onProgress: ViewerOptions['onProgress'],
  signal: AbortSignal,
): Promise<void> {
  const ours = new Set(imageIds);
  const stops: (() => void)[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      const listen = (name: string, handler: (detail: Record<string, unknown>) => void): void => {
        const listener = (evt: Event): void => handler((evt as CustomEvent<Record<string, unknown>>).detail);
        eventTarget.addEventListener(name, listener);
        stops.push(() => eventTarget.removeEventListener(name, listener));
      };
      listen(Enums.Events.IMAGE_VOLUME_MODIFIED, (detail) => {
        if (detail.volumeId !== volume.volumeId) return;
        onProgress(Number(detail.framesProcessed ?? 0), imageIds.length, 'Loading the volume');
      });
      listen(Enums.Events.IMAGE_LOAD_ERROR, (detail) => {
        if (!ours.has(String(detail.imageId))) return;
        const error = detail.error as { message?: string } | undefined;
        const why = error?.message ? `: ${error.message}` : '';
        reject(new Error(`could not load slice ${Number(detail.imageIdIndex) + 1} of ${imageIds.length}${why}`));
      });
      const onAbort = (): void => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      stops.push(() => signal.removeEventListener('abort', onAbort));
      (volume as unknown as { load(cb: (e: Record<string, unknown>) => void): void }).load((evt) => {
        if (evt.success === false) reject(new Error(`could not load image ${String(evt.imageId)}`));
        else resolve();
      });
    });
  } finally {
    for (const stop of stops) stop();
  }
}

export async function createViewer(options: ViewerOptions): Promise<Viewer> {
  const { elements, hook, signal } = options;
  initCornerstone();
  cache.purgeCache();

  const { uids, metadata, download } = options.series;
  if (!metadata.length) throw new Error('the series has no instances');
  const images: SeriesImages = registerSeries(uids, metadata);
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

  // One engine for the page's lifetime: each engine holds WebGL contexts that the browser frees
  // late, and a few workspace visits would run out of them ("Too many active WebGL contexts").
  const engine = getRenderingEngine(ENGINE_ID) ?? new RenderingEngine(ENGINE_ID);
  for (const vp of engine.getViewports()) engine.disableElement(vp.id);
  const disposers: (() => void)[] = [
    () => {
      for (const vp of engine.getViewports()) engine.disableElement(vp.id);
      cache.purgeCache();
    },
  ];
  disposers.push(followSize(elements.grid, () => engine.resize(true, true)));
  let preset: WindowPresetLike | null = options.presets[0] ?? null;

  const keyIndex = Math.min(
    Math.max(0, images.multiFrame ? 0 : (options.keySlice ?? Math.floor(imageIds.length / 2))),
    imageIds.length - 1,
  );
  const cine = images.multiFrame;
  const fps = images.frameTimeMs ? Math.max(1, Math.round(1000 / images.frameTimeMs)) : 15;
  // 1. The key slice first: drawn already (preview.ts, before this chunk loaded), or in a stack
  // view. It stays on screen as a still picture while the volume's views are set up under it.
  let still: HTMLElement | null = options.preview;
  if (!still) {
    const keyElement = elements.keyCell.querySelector<HTMLDivElement>('.vw-element');
    if (!keyElement) throw new Error('key cell has no element');
    elements.keyCell.hidden = false;
    engine.enableElement({ viewportId: KEY_VIEWPORT, type: Enums.ViewportType.STACK, element: keyElement });
    const stack = engine.getViewport(KEY_VIEWPORT) as Types.IStackViewport;
    options.onProgress(0, 1, 'Loading the key slice');
    const firstRender = once(keyElement, Enums.Events.IMAGE_RENDERED);
    // a cine's frames become a volume when their pixels come in one download; else the stack plays them
    await stack.setStack(images.multiFrame && !download ? imageIds : [imageIds[keyIndex] as string], 0);
    if (preset) stack.setProperties({ voiRange: voiFor(preset) });
    stack.render();
    await firstRender;
    hook.timings.firstSliceMs = performance.now();
    performance.mark('viewer:first-slice');
    hook.viewports = [KEY_VIEWPORT];
    signal.throwIfAborted();

    if (imageIds.length < 2 || (cine && !(download && (await download.accepted)))) {
      if (cine && download) await stack.setStack(imageIds, 0); // the server would not send them in one
      const label = elements.keyCell.querySelector('.vw-label');
      if (label) label.textContent = images.multiFrame ? `Cine · ${imageIds.length} frames` : 'Image';
      return stackOnlyViewer(engine, stack, keyElement, images, fps, hook, disposers);
    }
    // its viewport goes first: the views of the shared WebGL context draw nothing when one of its
    // viewports is torn down after them
    still = freeze(keyElement);
    engine.disableElement(KEY_VIEWPORT);
  }

  // 2. The volume and its views.
  // a cine (frames in time, no positions) is one view of its frames; a volume three
  const shownOrientations: readonly Orientation[] = cine ? ['axial'] : ORIENTATIONS;
  const ids: string[] = [...shownOrientations];
  if (cine) {
    applyLayout(elements, 'axial');
    const label = elements.cells.axial.querySelector('.vw-label');
    if (label) label.textContent = `Frames · ${imageIds.length}`;
  }
  const setUpViews = async (volumeId: string): Promise<Types.IVolumeViewport[]> => {
    for (const orientation of shownOrientations) {
      const element = elements.cells[orientation].querySelector<HTMLDivElement>('.vw-element');
      if (!element) throw new Error(`no element for ${orientation}`);
      engine.enableElement({
        viewportId: orientation,
        type: Enums.ViewportType.ORTHOGRAPHIC,
        element,
        defaultOptions: { orientation: ORIENTATION_ENUM[orientation], background: [0, 0, 0] },
      });
    }
    await setVolumesForViewports(engine, [{ volumeId }], ids);
    performance.mark('viewer:views-set');
    return ids.map((id) => engine.getViewport(id) as Types.IVolumeViewport);
  };
  const addLabelmap = async (volumeId: string): Promise<Labelmap> => {
    const made = new Labelmap(SEGMENTATION_ID, LABELMAP_VOLUME_ID, volumeId);
    disposers.push(() => made.dispose());
    const representation = Object.fromEntries(ids.map((id) => [id, [{ segmentationId: SEGMENTATION_ID }]]));
    await segmentation.addLabelmapRepresentationToViewportMap(representation);
    performance.mark('viewer:labelmap-shown');
    return made;
  };

  let volume: Types.IImageVolume;
  // without a project preset: a window from the data (the views were set up before it arrived)
  let defaultWindow: Types.VOIRange | null = null;
  let volumeViewports: Types.IVolumeViewport[];
  let labelmap: Labelmap;
  if (download && (await download.accepted)) {
    // The series' pixels in one request, written into the volume slice by slice as they arrive.
    // The views are set up meanwhile and draw once, unseen, which creates the volume's texture;
    // the slices here by then go up to it while this thread builds the labelmap (the GPU process
    // copies them), the rest every 250 ms as they come, so little is left to do at the end.
    const target = new SeriesVolume(`workspace-volume-${uids.series}`, imageIds, cine, (fill) => download.drainTo(fill));
    volume = target.volume;
    volumeViewports = await setUpViews(volume.volumeId);
    // let in the frames the download worker sent meanwhile: the set-up kept them waiting
    await new Promise((resolve) => setTimeout(resolve, 0));
    await target.createTexture(async () => {
      const drawn = once(volumeViewports[0]!.element, Enums.Events.IMAGE_RENDERED);
      engine.renderViewport(ids[0] as string);
      await drawn;
    });
    target.upload();
    labelmap = await addLabelmap(volume.volumeId);
    showVolumeProgress = true;
    let uploadError: unknown = null;
    const uploads = setInterval(() => {
      try {
        target.upload();
      } catch (err) {
        uploadError ??= err;
      }
    }, 250);
    try {
      await download.finished;
    } finally {
      clearInterval(uploads);
    }
    if (uploadError) throw uploadError;
    target.checkComplete();
    target.upload();
    defaultWindow = target.robustRange();
  } else {
    // Frame by frame, decoded in the browser (compressed, colour, other bit depths).
    showVolumeProgress = true;
    volume = await volumeLoader.createAndCacheVolume(`cornerstoneStreamingImageVolume:workspace-${uids.series}`, {
      imageIds,
    });
    await loadVolume(volume, imageIds, options.onProgress, signal);
    volumeViewports = await setUpViews(volume.volumeId);
    labelmap = await addLabelmap(volume.volumeId);
  }
  const { volumeId } = volume;
  if (cine) disposers.push(() => toolUtilities.cine.stopClip((volumeViewports[0] as Types.IVolumeViewport).element));
  performance.mark('viewer:volume-loaded');

  // 3. The saved masks, the tools, and the views take the key slice's place.
  const saved = options.lesions.filter((lesion) => lesion.maskId !== null);
  if (saved.length) {
    const initial = new Uint8Array(labelmap.dimensions[0] * labelmap.dimensions[1] * labelmap.dimensions[2]);
    const [nx, ny, nz] = labelmap.dimensions;
    for (const lesion of saved) {
      const mask = await fetchMask(lesion.maskId as number, signal);
      if (mask.shape[0] !== nz || mask.shape[1] !== ny || mask.shape[2] !== nx) {
        throw new Error(`mask ${lesion.maskId} is ${mask.shape.join('x')}, the volume ${nz}x${ny}x${nx}`);
      }
      paintSegment(initial, mask.data, lesion.segment);
    }
    labelmap.setLabelmap(initial);
  }
  labelmap.startTracking();
  const firstSegment = options.lesions[0]?.segment ?? 1;
  segmentation.segmentIndex.setActiveSegmentIndex(SEGMENTATION_ID, firstSegment);
  performance.mark('viewer:labelmap-made');

  const tools: ViewerTools = createTools(TOOL_GROUP_ID, ENGINE_ID, ids);
  disposers.push(() => ToolGroupManager.destroyToolGroup(TOOL_GROUP_ID));
  const latency = new BrushLatency(engine);
  disposers.push(() => latency.dispose());
  labelmap.onAnyChange = () => latency.edited();
  for (const vp of volumeViewports) {
    disposers.push(paintImmediately(vp.element, tools.isBrush));
    latency.watch(vp.id, vp.element, (evt) => tools.isBrush() && (evt.buttons & 1) === 1);
  }
  // the engine's own draw of the viewports asked for so far (what its animation frame would run)
  const implementation = (engine as unknown as { _implementation?: { _renderFlaggedViewports?: () => void } })
    ._implementation;
  const renderNow = (): void => implementation?._renderFlaggedViewports?.();
  const look = labelmapLook(SEGMENTATION_ID);
  const strokeViews = new Map(volumeViewports.map((vp) => [vp.id, new StrokeOverlay(vp, labelmap, volume, look)]));
  disposers.push(repaintOnlyPaintedView(volumeViewports, tools.isBrush, renderNow, strokeViews, (id) => {
    hook.strokeOverlayDraws += 1;
    latency.overlaid(id);
  }));
  hook.brushLatenciesMs = latency.samples;

  // The axial view on the key slice, sagittal and coronal through the middle voxel: by position,
  // not by the views' own slice numbering (which may run the other way), and on a voxel plane
  // (Cornerstone starts a view of an even number of voxels between two)
  const [ni, nj] = volume.dimensions;
  const centre = [Math.floor(ni / 2), Math.floor(nj / 2), keyIndex] as Types.Point3;
  for (const vp of volumeViewports) vp.jumpToWorld(utilities.transformIndexToWorld(volume.imageData as never, centre));
  const startWindow = preset ? voiFor(preset) : defaultWindow;
  if (startWindow) {
    for (const vp of volumeViewports) vp.setProperties({ voiRange: startWindow }, volumeId);
    // the threshold brush paints the voxels inside the chosen window
    tools.setThresholdRange(startWindow.lower, startWindow.upper);
  }

  engine.resize(true, false);
  const rendered = volumeViewports.filter((vp) => vp.element.offsetParent).map((vp) => once(vp.element, Enums.Events.IMAGE_RENDERED));
  engine.renderViewports(ids);
  await Promise.all(rendered);
  elements.keyCell.hidden = true;
  still.remove();
  const overlays = new ViewOverlays(volumeViewports, elements.cells, volume, { cine });
  disposers.push(() => overlays.dispose());
  hook.overlay = (id) => overlays.state(id);
  hook.viewports = ids;
  performance.mark('viewer:views-ready');

  const toPage = (viewportId: string, ijk: [number, number, number]): [number, number] => {
    const vp = engine.getViewport(viewportId);
    if (!vp) throw new Error(`no viewport ${viewportId}`);
    const world = utilities.transformIndexToWorld(volume.imageData as never, ijk as Types.Point3);
    const [cx, cy] = vp.worldToCanvas(world);
    const rect = vp.canvas.getBoundingClientRect();
    return [rect.left + window.scrollX + cx, rect.top + window.scrollY + cy];
  };
  hook.voxelToPage = toPage;
  hook.labelmapVoxels = (segment?: number) => labelmap.count(segment);
  hook.setTool = (name) => tools.set(name);
  hook.setBrushSize = (mm) => tools.setBrushSize(mm);
  /** The volume index (along the axis the view looks down) of the slice a view shows. */
  const volumeSlice = (viewportId: string): number => {
    const vp = engine.getViewport(viewportId);
    if (!vp) throw new Error(`no viewport ${viewportId}`);
    const { focalPoint, viewPlaneNormal } = vp.getCamera();
    if (!focalPoint || !viewPlaneNormal) throw new Error(`viewport ${viewportId} has no camera`);
    return Math.round(viewAxis(worldToIndex(volume), focalPoint, viewPlaneNormal).position);
  };
  hook.sliceIndex = volumeSlice;

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
      const slices = volumeViewports.map((vp) => vp.getSliceIndex());
      applyLayout(elements, layout);
      engine.resize(true, false);
      volumeViewports.forEach((vp, i) => {
        if (!vp.element.offsetParent) return; // hidden in this layout
        void utilities.jumpToSlice(vp.element, { imageIndex: slices[i] ?? 0 });
      });
      engine.renderViewports(ids);
    },
    setTool: (name) => tools.set(name),
    setBrushSize: (mm) => tools.setBrushSize(mm),
    setActiveSegment: (segment) => segmentation.segmentIndex.setActiveSegmentIndex(SEGMENTATION_ID, segment),
    applyPreset(next: WindowPresetLike) {
      preset = next;
      for (const vp of volumeViewports) vp.setProperties({ voiRange: voiFor(next) }, volumeId);
      tools.setThresholdRange(voiFor(next).lower, voiFor(next).upper);
      engine.renderViewports(ids);
    },
    playCine(play: boolean) {
      if (!cine) return;
      const { element } = volumeViewports[0] as Types.IVolumeViewport;
      if (play) toolUtilities.cine.playClip(element, { framesPerSecond: fps, loop: true });
      else toolUtilities.cine.stopClip(element);
    },
    pageToVoxel(viewportId: string, page: [number, number]): [number, number, number] {
      const vp = engine.getViewport(viewportId);
      if (!vp) throw new Error(`no viewport ${viewportId}`);
      const rect = vp.canvas.getBoundingClientRect();
      const canvas: Types.Point2 = [page[0] - rect.left - window.scrollX, page[1] - rect.top - window.scrollY];
      const world = vp.canvasToWorld(canvas);
      const ijk = utilities.transformWorldToIndexContinuous(volume.imageData as never, world);
      return [ijk[0], ijk[1], ijk[2]];
    },
    sliceIndex: volumeSlice,
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

/**
 * Ultrasound / video (multi-frame) or a single image: one stack view, cine playback for
 * multi-frame; no labelmap editing yet (Cornerstone builds no volume without slice positions).
 */
function stackOnlyViewer(
  engine: RenderingEngine,
  stack: Types.IStackViewport,
  element: HTMLDivElement,
  images: SeriesImages,
  fps: number,
  hook: WorkspaceHook,
  disposers: (() => void)[],
): Viewer {
  const tools = createTools(TOOL_GROUP_ID, ENGINE_ID, [KEY_VIEWPORT]);
  hook.setTool = (name) => tools.set(name);
  hook.labelmapVoxels = () => 0;
  hook.viewports = [stack.id];
  disposers.push(() => ToolGroupManager.destroyToolGroup(TOOL_GROUP_ID));
  const unsupported = (): never => {
    throw new Error('labelmap editing of multi-frame (cine) series is not supported yet');
  };
  return {
    stackOnly: true,
    cine: images.multiFrame,
    dimensions: [0, 0, 0],
    getLabelmap: unsupported,
    setLabelmap: unsupported,
    onEdit: () => () => undefined,
    setLayout: () => engine.resize(true, true),
    setTool: (name) => tools.set(name),
    setBrushSize: () => undefined,
    setActiveSegment: () => undefined,
    applyPreset: () => undefined,
    pageToVoxel: unsupported,
    sliceIndex: () => 0,
    setRangeMarks: () => undefined,
    setSegmentStyle: () => undefined,
    flushEdits: () => undefined,
    playCine(play: boolean) {
      if (play) toolUtilities.cine.playClip(element, { framesPerSecond: fps, loop: true });
      else toolUtilities.cine.stopClip(element);
    },
    dispose() {
      toolUtilities.cine.stopClip(element);
      for (const dispose of disposers.reverse()) dispose();
    },
  };
}

/**
 * Calls `resize` (at most once a frame) whenever `element` changes size after now: a window
 * resized, a toolbar that wraps. The views' canvases keep their pixel size until the engine
 * is told, and show a stretched picture meanwhile. Returns the function that stops it.
 */
function followSize(element: HTMLElement, resize: () => void): () => void {
  const size = (): string => `${element.clientWidth}x${element.clientHeight}`;
  let last = size();
  let frame = 0;
  const observer = new ResizeObserver(() => {
    if (frame || size() === last) return;
    frame = requestAnimationFrame(() => {
      frame = 0;
      last = size();
      resize();
    });
  });
  observer.observe(element);
  return () => {
    observer.disconnect();
    cancelAnimationFrame(frame);
  };
}
