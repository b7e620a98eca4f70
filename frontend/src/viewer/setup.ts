// The viewer's set-up on screen: the one rendering engine, the key slice's stack view shown
// first, the volume views taking its place, and the page <-> voxel geometry of those views.
// The volume's pixels and the labelmap come from volume.ts; the tools from toolWiring.ts.

import {
  Enums, RenderingEngine, cache, getRenderingEngine, utilities, type Types,
} from '@cornerstonejs/core';
import type { SeriesImages } from './dicomweb';
import type { SeriesDownload } from './download';
import { worldToIndex } from './planes';
import { viewAxis } from './strokePaint';
import type { WindowPresetLike, WorkspaceHook } from './types';
import type { ViewerElements, ViewerOptions } from './viewer';

export const ENGINE_ID = 'workspace-engine';
export const KEY_VIEWPORT = 'key';

export function once(element: HTMLElement, name: string): Promise<void> {
  return new Promise((resolve) => element.addEventListener(name, () => resolve(), { once: true }));
}

export function voiFor(preset: WindowPresetLike): Types.VOIRange {
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

export interface Stage {
  engine: RenderingEngine;
  /** What dispose() undoes, run last first. */
  disposers: (() => void)[];
}

/**
 * One engine for the page's lifetime: each engine holds WebGL contexts that the browser frees
 * late, and a few workspace visits would run out of them ("Too many active WebGL contexts").
 */
export function openEngine(grid: HTMLElement): Stage {
  const engine = getRenderingEngine(ENGINE_ID) ?? new RenderingEngine(ENGINE_ID);
  for (const vp of engine.getViewports()) engine.disableElement(vp.id);
  const disposers: (() => void)[] = [
    () => {
      for (const vp of engine.getViewports()) engine.disableElement(vp.id);
      cache.purgeCache();
    },
  ];
  disposers.push(followSize(grid, () => engine.resize(true, true)));
  return { engine, disposers };
}

/** The key slice in its stack view: the whole viewer (`stackOnly`), or a still until the volume is up. */
export type KeySlice =
  | { stackOnly: true; stack: Types.IStackViewport; element: HTMLDivElement }
  | { stackOnly: false; still: HTMLElement };

export async function showKeySlice(
  engine: RenderingEngine,
  elements: ViewerElements,
  images: SeriesImages,
  keyIndex: number,
  preset: WindowPresetLike | null,
  download: SeriesDownload | null,
  hook: WorkspaceHook,
  onProgress: ViewerOptions['onProgress'],
  signal: AbortSignal,
): Promise<KeySlice> {
  const { imageIds } = images;
  const cine = images.multiFrame;
  const keyElement = elements.keyCell.querySelector<HTMLDivElement>('.vw-element');
  if (!keyElement) throw new Error('key cell has no element');
  elements.keyCell.hidden = false;
  engine.enableElement({ viewportId: KEY_VIEWPORT, type: Enums.ViewportType.STACK, element: keyElement });
  const stack = engine.getViewport(KEY_VIEWPORT) as Types.IStackViewport;
  onProgress(0, 1, 'Loading the key slice');
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
    return { stackOnly: true, stack, element: keyElement };
  }
  // its viewport goes first: the views of the shared WebGL context draw nothing when one of its
  // viewports is torn down after them
  const still = freeze(keyElement);
  engine.disableElement(KEY_VIEWPORT);
  return { stackOnly: false, still };
}

/**
 * The axial view on the key slice, sagittal and coronal through the middle voxel: by position,
 * not by the views' own slice numbering (which may run the other way), and on a voxel plane
 * (Cornerstone starts a view of an even number of voxels between two). Resolves once the shown
 * views have drawn.
 */
export async function showVolume(
  engine: RenderingEngine,
  volume: Types.IImageVolume,
  viewports: Types.IVolumeViewport[],
  keyIndex: number,
  startWindow: Types.VOIRange | null,
): Promise<void> {
  const [ni, nj] = volume.dimensions;
  const centre = [Math.floor(ni / 2), Math.floor(nj / 2), keyIndex] as Types.Point3;
  for (const vp of viewports) vp.jumpToWorld(utilities.transformIndexToWorld(volume.imageData as never, centre));
  if (startWindow) {
    for (const vp of viewports) vp.setProperties({ voiRange: startWindow }, volume.volumeId);
  }
  engine.resize(true, false);
  const rendered = viewports.filter((vp) => vp.element.offsetParent).map((vp) => once(vp.element, Enums.Events.IMAGE_RENDERED));
  engine.renderViewports(viewports.map((vp) => vp.id));
  await Promise.all(rendered);
}

export interface Geometry {
  /** The page point of a voxel [i, j, k] in a view. */
  toPage(viewportId: string, ijk: [number, number, number]): [number, number];
  /** The voxel [i, j, k] under a page point of a view (fractional; not clamped). */
  toVoxel(viewportId: string, page: [number, number]): [number, number, number];
  /** The volume index (along the axis the view looks down) of the slice a view shows. */
  slice(viewportId: string): number;
}

export function geometry(engine: RenderingEngine, volume: Types.IImageVolume): Geometry {
  const viewport = (viewportId: string): Types.IViewport => {
    const vp = engine.getViewport(viewportId);
    if (!vp) throw new Error(`no viewport ${viewportId}`);
    return vp;
  };
  return {
    toPage(viewportId, ijk) {
      const vp = viewport(viewportId);
      const world = utilities.transformIndexToWorld(volume.imageData as never, ijk as Types.Point3);
      const [cx, cy] = vp.worldToCanvas(world);
      const rect = vp.canvas.getBoundingClientRect();
      return [rect.left + window.scrollX + cx, rect.top + window.scrollY + cy];
    },
    toVoxel(viewportId, page) {
      const vp = viewport(viewportId);
      const rect = vp.canvas.getBoundingClientRect();
      const canvas: Types.Point2 = [page[0] - rect.left - window.scrollX, page[1] - rect.top - window.scrollY];
      const world = vp.canvasToWorld(canvas);
      const ijk = utilities.transformWorldToIndexContinuous(volume.imageData as never, world);
      return [ijk[0], ijk[1], ijk[2]];
    },
    slice(viewportId) {
      const { focalPoint, viewPlaneNormal } = viewport(viewportId).getCamera();
      if (!focalPoint || !viewPlaneNormal) throw new Error(`viewport ${viewportId} has no camera`);
      return Math.round(viewAxis(worldToIndex(volume), focalPoint, viewPlaneNormal).position);
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
