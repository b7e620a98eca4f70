// Which DICOM series a task shows: the task's series UIDs (GET /api/tasks/{id}/), or, from an
// older server without them, the only QIDO-RS match for its description and modality.

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
