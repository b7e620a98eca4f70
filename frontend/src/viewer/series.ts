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
