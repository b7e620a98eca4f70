// Series metadata from the server's DICOMweb (WADO-RS .../metadata) turned into wadors imageIds,
// registered with the DICOM image loader and sorted along the slice normal (index 0 = lowest
// position along row x column, the same order as the server's volume grid and masks).

import { wadors } from '@cornerstonejs/dicom-image-loader';
import { frameUrl, seriesFrames } from './series';
import type { DicomJson, SeriesUids } from './types';

export interface SeriesImages {
  /** wadors imageIds, sorted along the slice normal (multi-frame: frame order). */
  imageIds: string[];
  /** More than one frame in one instance without per-frame positions (cine / video). */
  multiFrame: boolean;
  frameTimeMs: number | null;
}

/** Registers every instance (every frame) with the wadors loader and returns sorted imageIds. */
export function registerSeries(uids: SeriesUids, instances: DicomJson[]): SeriesImages {
  const { frames, multiFrame, frameTimeMs } = seriesFrames(instances);
  const imageIds = frames.map((frame) => {
    const imageId = `wadors:${frameUrl(uids, frame)}`;
    wadors.metaDataManager.add(imageId, frame.instance as never);
    return imageId;
  });
  return { imageIds, multiFrame, frameTimeMs };
}
