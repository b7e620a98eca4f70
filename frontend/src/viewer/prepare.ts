// What the workspace starts as soon as it knows the task, before the viewer's chunk (Cornerstone)
// has loaded: the series' metadata, then the download of its pixels in one request.

import type { Task } from '../api';
import { SeriesDownload } from './download';
import { framePlans } from './pixels';
import { fetchSeriesMetadata, findSeriesUids, seriesPixelBytes } from './series';
import type { DicomJson, SeriesUids } from './types';

export interface PreparedSeries {
  uids: SeriesUids;
  metadata: DicomJson[];
  /** Null where the series is loaded frame by frame (see seriesPixelBytes()). */
  download: SeriesDownload | null;
}

export async function prepareSeries(task: Task, signal: AbortSignal): Promise<PreparedSeries> {
  const uids = await findSeriesUids(task, signal);
  const metadata = await fetchSeriesMetadata(uids, signal);
  performance.mark('viewer:metadata');
  const bytes = seriesPixelBytes(metadata);
  return { uids, metadata, download: bytes ? new SeriesDownload(uids, signal, bytes, framePlans(metadata)) : null };
}
