// Series metadata from the server's DICOMweb (WADO-RS .../metadata) turned into wadors imageIds,
// registered with the DICOM image loader and sorted along the slice normal (index 0 = lowest
// position along row x column, the same order as the server's volume grid and masks).

import { wadors } from '@cornerstonejs/dicom-image-loader';
import { dicomwebRoot } from './series';
import type { DicomJson, SeriesUids } from './types';

function value(instance: DicomJson, tag: string): unknown[] {
  return instance[tag]?.Value ?? [];
}

function numbers(instance: DicomJson, tag: string): number[] {
  return value(instance, tag).map((v) => Number(v));
}

export interface SeriesImages {
  /** wadors imageIds, sorted along the slice normal (multi-frame: frame order). */
  imageIds: string[];
  /** More than one frame in one instance without per-frame positions (cine / video). */
  multiFrame: boolean;
  frameTimeMs: number | null;
}

/** Registers every instance (every frame) with the wadors loader and returns sorted imageIds. */
export function registerSeries(uids: SeriesUids, instances: DicomJson[]): SeriesImages {
  const base = `wadors:${dicomwebRoot()}/studies/${uids.study}/series/${uids.series}/instances`;
  const entries: { imageId: string; distance: number; order: number }[] = [];
  let multiFrame = false;
  let frameTimeMs: number | null = null;
  instances.forEach((instance, order) => {
    const sop = String(value(instance, '00080018')[0] ?? '');
    const frames = Number(value(instance, '00280008')[0] ?? 1) || 1;
    const position = numbers(instance, '00200032');
    const orientation = numbers(instance, '00200037');
    let distance = Number(value(instance, '00200013')[0] ?? order);
    if (position.length === 3 && orientation.length === 6) {
      const [r0, r1, r2, c0, c1, c2] = orientation as [number, number, number, number, number, number];
      const normal = [r1 * c2 - r2 * c1, r2 * c0 - r0 * c2, r0 * c1 - r1 * c0];
      distance = position.reduce((sum, p, i) => sum + p * (normal[i] ?? 0), 0);
    }
    if (frames > 1) {
      multiFrame = true;
      const frameTime = Number(value(instance, '00181063')[0]);
      if (Number.isFinite(frameTime) && frameTime > 0) frameTimeMs = frameTime;
    }
    for (let f = 1; f <= frames; f++) {
      const imageId = `${base}/${sop}/frames/${f}`;
      wadors.metaDataManager.add(imageId, instance as never);
      entries.push({ imageId, distance: frames > 1 ? f : distance, order });
    }
  });
  entries.sort((a, b) => a.distance - b.distance || a.order - b.order);
  return { imageIds: entries.map((e) => e.imageId), multiFrame, frameTimeMs };
}
