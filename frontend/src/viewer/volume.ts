// The series as a volume in its views, with the labelmap over it: in one download written into
// the volume as it arrives (bulk.ts), or frame by frame through Cornerstone's loader; then the
// saved masks painted into the labelmap.

import {
  Enums, eventTarget, setVolumesForViewports, volumeLoader, type Types,
} from '@cornerstonejs/core';
import { segmentation, utilities as toolUtilities } from '@cornerstonejs/tools';
import { SeriesVolume } from './bulk';
import type { SeriesImages } from './dicomweb';
import { Labelmap } from './labelmap';
import { ORIENTATIONS, applyLayout } from './layout';
import { fetchMask, paintSegment } from './masks';
import type { PreparedSeries } from './prepare';
import { once, type Stage } from './setup';
import type { Orientation, ViewerLesion } from './types';
import type { ViewerElements, ViewerOptions } from './viewer';

export const SEGMENTATION_ID = 'workspace-segmentation';
const LABELMAP_VOLUME_ID = 'workspace-labelmap'; // local volume ids must not contain ':'

/** Pixels that upload to the GPU while the download runs, so little is left for the end. */
const UPLOAD_EVERY_MS = 250;

const ORIENTATION_ENUM: Record<Orientation, Enums.OrientationAxis> = {
  axial: Enums.OrientationAxis.AXIAL,
  sagittal: Enums.OrientationAxis.SAGITTAL,
  coronal: Enums.OrientationAxis.CORONAL,
};

export interface VolumeViews {
  volume: Types.IImageVolume;
  viewports: Types.IVolumeViewport[];
  /** The viewports' ids (their orientations). */
  ids: string[];
  labelmap: Labelmap;
  /** Without a project preset: a window from the data (the views were set up before it arrived). */
  defaultWindow: Types.VOIRange | null;
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

/** `showProgress` is called once the volume's own progress is what the page should show. */
export async function loadVolumeViews(
  stage: Stage,
  elements: ViewerElements,
  images: SeriesImages,
  series: PreparedSeries,
  showProgress: () => void,
  onProgress: ViewerOptions['onProgress'],
  signal: AbortSignal,
): Promise<VolumeViews> {
  const { engine, disposers } = stage;
  const { imageIds } = images;
  const { uids, download } = series;
  const cine = images.multiFrame;
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
  let defaultWindow: Types.VOIRange | null = null;
  let viewports: Types.IVolumeViewport[];
  let labelmap: Labelmap;
  if (download && (await download.accepted)) {
    // The series' pixels in one request, written into the volume slice by slice as they arrive.
    // The views are set up meanwhile and draw once, unseen, which creates the volume's texture;
    // the slices here by then go up to it while this thread builds the labelmap (the GPU process
    // copies them), the rest every 250 ms as they come, so little is left to do at the end.
    const target = new SeriesVolume(`workspace-volume-${uids.series}`, imageIds, cine, (fill) => download.drainTo(fill));
    volume = target.volume;
    viewports = await setUpViews(volume.volumeId);
    // let in the frames the download worker sent meanwhile: the set-up kept them waiting
    await new Promise((resolve) => setTimeout(resolve, 0));
    await target.createTexture(async () => {
      const drawn = once(viewports[0]!.element, Enums.Events.IMAGE_RENDERED);
      engine.renderViewport(ids[0] as string);
      await drawn;
    });
    target.upload();
    labelmap = await addLabelmap(volume.volumeId);
    showProgress();
    let uploadError: unknown = null;
    const uploads = setInterval(() => {
      try {
        target.upload();
      } catch (err) {
        uploadError ??= err;
      }
    }, UPLOAD_EVERY_MS);
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
    showProgress();
    volume = await volumeLoader.createAndCacheVolume(`cornerstoneStreamingImageVolume:workspace-${uids.series}`, {
      imageIds,
    });
    await loadVolume(volume, imageIds, onProgress, signal);
    viewports = await setUpViews(volume.volumeId);
    labelmap = await addLabelmap(volume.volumeId);
  }
  if (cine) disposers.push(() => toolUtilities.cine.stopClip((viewports[0] as Types.IVolumeViewport).element));
  performance.mark('viewer:volume-loaded');
  return { volume, viewports, ids, labelmap, defaultWindow };
}

/** Paints the lesions' saved masks into the labelmap, then starts reporting edits. */
export async function paintSavedMasks(labelmap: Labelmap, lesions: ViewerLesion[], signal: AbortSignal): Promise<void> {
  const saved = lesions.filter((lesion) => lesion.maskId !== null);
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
  const firstSegment = lesions[0]?.segment ?? 1;
  segmentation.segmentIndex.setActiveSegmentIndex(SEGMENTATION_ID, firstSegment);
  performance.mark('viewer:labelmap-made');
}
