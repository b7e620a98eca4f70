// Which DICOM series a task shows: the task's series UIDs (GET /api/tasks/{id}/), or, from an
// older server without them, the only QIDO-RS match for its description and modality; and the
// series' metadata (WADO-RS). No Cornerstone here: the page starts these before the viewer's
// chunk has loaded.

import type { Task } from '../api';
import type { DicomJson, SeriesUids } from './types';

interface SeriesWithUids {
  series_instance_uid?: string;
  study_instance_uid?: string;
}

function first(dataset: DicomJson, tag: string): string {
  return String(dataset[tag]?.Value?.[0] ?? '');
}

export async function findSeriesUids(task: Task, signal?: AbortSignal): Promise<SeriesUids> {
  const series = task.series as Task['series'] & SeriesWithUids;
  if (series.series_instance_uid && series.study_instance_uid) {
    return { study: series.study_instance_uid, series: series.series_instance_uid };
  }
  const query = new URLSearchParams({ Modality: task.series.modality, limit: '2' });
  if (task.series.description) query.set('SeriesDescription', task.series.description);
  const response = await fetch(`/dicomweb/series?${query}`, {
    credentials: 'same-origin', signal, headers: { Accept: 'application/dicom+json' },
  });
  if (!response.ok) throw new Error(`series search: HTTP ${response.status}`);
  const found = response.status === 204 ? [] : ((await response.json()) as DicomJson[]);
  if (found.length !== 1) {
    throw new Error(`could not identify the task's DICOM series (${found.length} matches)`);
  }
  const match = found[0] as DicomJson;
  return { study: first(match, '0020000D'), series: first(match, '0020000E') };
}

/** The app's own DICOMweb, absolute (the image loader's imageIds are URLs). */
export function dicomwebRoot(): string {
  return `${location.origin}/dicomweb`;
}

export async function fetchSeriesMetadata(uids: SeriesUids, signal?: AbortSignal): Promise<DicomJson[]> {
  const url = `${dicomwebRoot()}/studies/${uids.study}/series/${uids.series}/metadata`;
  const response = await fetch(url, {
    credentials: 'same-origin', signal, headers: { Accept: 'application/dicom+json' },
  });
  if (!response.ok) throw new Error(`series metadata: HTTP ${response.status}`);
  return (await response.json()) as DicomJson[];
}

/**
 * The bytes of the series' pixels as its bulk data carries them (explicit VR little endian), or
 * null where the viewer loads it frame by frame instead: a single image, samples other than one
 * (grey) or three (colour, 8 bits), or other than 8 or 16 bits allocated. A multi-frame instance
 * (ultrasound cine) counts all its frames.
 */
export function seriesPixelBytes(instances: DicomJson[]): number | null {
  let total = 0;
  let frames = 0;
  for (const instance of instances) {
    const number = (tag: string): number => Number(instance[tag]?.Value?.[0] ?? NaN);
    const count = Number(instance['00280008']?.Value?.[0] ?? 1) || 1;
    const samples = Number(instance['00280002']?.Value?.[0] ?? 1);
    const bits = number('00280100');
    const rows = number('00280010');
    const columns = number('00280011');
    if (!(rows > 0 && columns > 0) || (bits !== 8 && bits !== 16)) return null;
    if (samples !== 1 && !(samples === 3 && bits === 8)) return null;
    total += count * rows * columns * samples * (bits / 8);
    frames += count;
  }
  return frames >= 2 ? total : null;
}

/** One frame of the series: its instance, SOP instance UID and 1-based frame number. */
export interface SeriesFrame {
  instance: DicomJson;
  sop: string;
  frame: number;
}

export interface SeriesFrames {
  /** Sorted along the slice normal (index 0 = lowest position along row x column, the order of
   * the server's volume grid and masks); a multi-frame instance in frame order. */
  frames: SeriesFrame[];
  /** More than one frame in one instance without per-frame positions (cine / video). */
  multiFrame: boolean;
  frameTimeMs: number | null;
}

/** Every frame of every instance, in the volume's slice order. */
export function seriesFrames(instances: DicomJson[]): SeriesFrames {
  const numbers = (instance: DicomJson, tag: string): number[] => (instance[tag]?.Value ?? []).map(Number);
  const entries: (SeriesFrame & { distance: number; order: number })[] = [];
  let multiFrame = false;
  let frameTimeMs: number | null = null;
  instances.forEach((instance, order) => {
    const sop = first(instance, '00080018');
    const frames = Number(instance['00280008']?.Value?.[0] ?? 1) || 1;
    const position = numbers(instance, '00200032');
    const orientation = numbers(instance, '00200037');
    let distance = Number(instance['00200013']?.Value?.[0] ?? order);
    if (position.length === 3 && orientation.length === 6) {
      const [r0, r1, r2, c0, c1, c2] = orientation as [number, number, number, number, number, number];
      const normal = [r1 * c2 - r2 * c1, r2 * c0 - r0 * c2, r0 * c1 - r1 * c0];
      distance = position.reduce((sum, p, i) => sum + p * (normal[i] ?? 0), 0);
    }
    if (frames > 1) {
      multiFrame = true;
      const frameTime = Number(instance['00181063']?.Value?.[0]);
      if (Number.isFinite(frameTime) && frameTime > 0) frameTimeMs = frameTime;
    }
    for (let frame = 1; frame <= frames; frame++) {
      entries.push({ instance, sop, frame, distance: frames > 1 ? frame : distance, order });
    }
  });
  entries.sort((a, b) => a.distance - b.distance || a.order - b.order);
  return { frames: entries.map(({ instance, sop, frame }) => ({ instance, sop, frame })), multiFrame, frameTimeMs };
}

/** The URL of one frame resource (WADO-RS). */
export function frameUrl(uids: SeriesUids, frame: SeriesFrame): string {
  return `${dicomwebRoot()}/studies/${uids.study}/series/${uids.series}/instances/${frame.sop}/frames/${frame.frame}`;
}
