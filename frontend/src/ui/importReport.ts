// The import report (DICOM upload or PACS pull): what was imported, skipped, and why not.

import type { ImportFileOutcome, ImportReport, ImportSeriesSummary } from '../api';
import { href } from '../router';
import { h } from './dom';
import { emptyState } from './feedback';
import { formatNumber, plural } from './format';
import { dataTable } from './table';

/** Files shown in the full list before "and N more". */
const FILE_ROWS = 500;

function count(report: ImportReport, key: string): number {
  return report.counts[key] ?? 0;
}

export type ReportTone = 'success' | 'info' | 'error';

/** One line for the whole report, and whether it is good news. */
export function reportSummary(report: ImportReport): { text: string; tone: ReportTone } {
  const imported = count(report, 'series imported');
  const already = count(report, 'series already imported');
  const rejected = count(report, 'series rejected');
  const files = count(report, 'files');
  const badFiles = count(report, 'files rejected');
  const series: string[] = [];
  if (imported) series.push(`${plural(imported, 'series', 'series')} imported`);
  if (already) series.push(`${formatNumber(already)} already imported`);
  if (rejected) series.push(`${formatNumber(rejected)} rejected`);
  if (series.length === 0) series.push('no series found');
  const filePart = `${plural(files, 'file')} read${badFiles ? `, ${formatNumber(badFiles)} rejected` : ''}`;
  const tone: ReportTone = imported > 0 ? 'success' : (already > 0 && rejected === 0 && badFiles === 0 ? 'info' : 'error');
  return { text: `${series.join(', ')} · ${filePart}`, tone };
}

/** Files that were not imported (rejected first, then skipped ones such as duplicates). */
export function notableFiles(report: ImportReport): ImportFileOutcome[] {
  const rank = (f: ImportFileOutcome): number => (f.status === 'rejected' ? 0 : 1);
  return report.files.filter((f) => f.status !== 'imported').sort((a, b) => rank(a) - rank(b));
}

function statusBadge(status: string): HTMLElement {
  const kind = status === 'imported' ? 'ok'
    : status === 'rejected' ? 'bad'
      : 'neutral';
  return h('span', { class: `badge badge-import-${kind}` }, status);
}


function fileTable(files: ImportFileOutcome[], label: string): HTMLElement {
  return dataTable<ImportFileOutcome>(files, {
    label,
    columns: [
      { header: 'File', cell: (f) => h('span', { class: 'file-name' }, f.source) },
      { header: 'Outcome', cell: (f) => statusBadge(f.status) },
      { header: 'Reason', cell: (f) => f.reason || '—' },
    ],
  });
}

export function importReportView(report: ImportReport, title = 'Import report'): HTMLElement {
  const summary = reportSummary(report);
  const notable = notableFiles(report);
  const chips = Object.entries(report.counts).map(([key, n]) =>
    h('li', null, h('span', { class: 'count-n' }, formatNumber(n)), ` ${n === 1 ? key.replace(/^files\b/, 'file') : key}`));

  return h('section', { class: 'card import-report', 'aria-label': title },
    h('h2', null, title),
    h('div', { class: `banner banner-${summary.tone}`, role: 'status' }, h('p', null, summary.text)),
    h('ul', { class: 'count-chips' }, chips),
    h('h3', null, 'Series'),
    report.series.length === 0 ? emptyState('No image series were found in these files.') : dataTable<ImportSeriesSummary>(report.series, {
      label: 'Series',
      columns: [
        {
          header: 'Series',
          cell: (s) => [
            s.description ? h('div', { class: 'strong' }, s.description) : h('div', { class: 'muted' }, 'No description'),
            h('div', { class: 'muted small uid' }, s.series_instance_uid),
          ],
        },
        { header: 'Modality', cell: (s) => s.modality || '—' },
        { header: 'Outcome', cell: (s) => statusBadge(s.status) },
        { header: 'Files', cell: (s) => s.instances, className: 'num' },
        { header: 'Size', cell: (s) => (s.size ? s.size.join(' × ') : '—'), className: 'num nowrap' },
        { header: 'Task', cell: (s) => (s.task_id ? h('a', { href: href.task(s.task_id) }, `#${s.task_id}`) : '—') },
        {
          header: 'Notes',
          cell: (s) => [
            s.reason ? h('div', null, s.reason) : null,
            ...s.warnings.map((w) => h('div', { class: 'muted small' }, `⚠ ${w}`)),
            !s.reason && s.warnings.length === 0 ? '—' : null,
          ],
        },
      ],
    }),
    h('h3', null, notable.length === 0 ? 'Files' : `Files skipped or rejected (${formatNumber(notable.length)})`),
    notable.length === 0
      ? h('p', { class: 'muted' }, report.files.length === 1 ? 'The file was imported.' : `All ${plural(report.files.length, 'file')} were imported.`)
      : fileTable(notable.slice(0, FILE_ROWS), 'Files skipped or rejected'),
    notable.length > FILE_ROWS ? h('p', { class: 'muted small' }, `and ${formatNumber(notable.length - FILE_ROWS)} more`) : null,
    report.files.length > 0
      ? h('details', { class: 'all-files' },
        h('summary', null, `All ${plural(report.files.length, 'file')}`),
        fileTable(report.files.slice(0, FILE_ROWS), 'All files'),
        report.files.length > FILE_ROWS
          ? h('p', { class: 'muted small' }, `and ${formatNumber(report.files.length - FILE_ROWS)} more`)
          : null)
      : null,
  );
}
