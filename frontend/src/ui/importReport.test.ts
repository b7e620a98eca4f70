import { describe, expect, it } from 'vitest';
import type { ImportFileOutcome, ImportReport } from '../api';
import { notableFiles, reportSummary } from './importReport';

function file(source: string, status: string, reason = ''): ImportFileOutcome {
  return { source, status, reason, series_instance_uid: '', sop_instance_uid: '' };
}

function report(counts: Record<string, number>, files: ImportFileOutcome[] = []): ImportReport {
  return { counts, series: [], files };
}

describe('import report', () => {
  it('sums up a partly successful import', () => {
    expect(reportSummary(report({ files: 12, 'files imported': 10, 'files rejected': 2, series: 3, 'series imported': 2, 'series rejected': 1 })))
      .toEqual({ text: '2 series imported, 1 rejected · 12 files read, 2 rejected', tone: 'success' });
  });

  it('is informational when everything was already there', () => {
    expect(reportSummary(report({ files: 1, 'files already imported': 1, series: 1, 'series already imported': 1 })))
      .toEqual({ text: '1 already imported · 1 file read', tone: 'info' });
  });

  it('is an error when nothing could be imported', () => {
    expect(reportSummary(report({ files: 2, 'files rejected': 2, series: 0 })))
      .toEqual({ text: 'no series found · 2 files read, 2 rejected', tone: 'error' });
  });

  it('lists the files not imported, rejected first', () => {
    const files = [file('a', 'imported'), file('b', 'duplicate', 'same SOP'), file('c', 'rejected', 'not DICOM'), file('d', 'already imported')];
    expect(notableFiles(report({}, files)).map((f) => f.source)).toEqual(['c', 'b', 'd']);
  });
});
