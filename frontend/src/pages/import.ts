// #/projects/<slug>/import  Import studies: upload files, or pull them from the configured PACS.

import {
  ApiError, getProject, importFromPacs, importStudies, searchPacs, uploadVolume,
  type ImportReport, type PacsFilter, type PacsStudy, type Project, type VolumeUploadResult,
} from '../api';
import { href } from '../router';
import { h } from '../ui/dom';
import { emptyState, errorBanner, errorMessage, isAbort, notice } from '../ui/feedback';
import { droppedFiles } from '../ui/dropFiles';
import { field, input, setBusy } from '../ui/forms';
import { formatNumber, plural } from '../ui/format';
import { importReportView, reportSummary } from '../ui/importReport';
import { isManager, managerHead, managersOnly } from '../ui/managerNav';
import { elapsed, formatBytes, fraction, progressBar, uploadText, type ProgressBar } from '../ui/progress';
import { dataTable } from '../ui/table';
import type { PageContext } from './page';

/** Files the volume endpoint takes, one request each (annotator.volumes / annotator.video). */
export const VOLUME_SUFFIXES = ['.nii.gz', '.nii', '.nrrd', '.mha', '.png', '.jpg', '.jpeg', '.mp4', '.avi', '.mov'];

type Named = Pick<File, 'name' | 'size'>;

export interface ImportPlan<F extends Named = File> {
  /** DICOM files and zip archives: one import request. */
  dicom: F[];
  /** Image volumes and videos: one upload each. */
  volumes: F[];
  dicomBytes: number;
  volumeBytes: number;
}

export function isVolumeFile(name: string): boolean {
  const lower = name.toLowerCase();
  return VOLUME_SUFFIXES.some((s) => lower.endsWith(s));
}

/** Splits the chosen files between the DICOM import and the volume upload. */
export function planImport<F extends Named>(files: F[]): ImportPlan<F> {
  const plan: ImportPlan<F> = { dicom: [], volumes: [], dicomBytes: 0, volumeBytes: 0 };
  for (const file of files) {
    if (isVolumeFile(file.name)) {
      plan.volumes.push(file);
      plan.volumeBytes += file.size;
    } else {
      plan.dicom.push(file);
      plan.dicomBytes += file.size;
    }
  }
  return plan;
}

/** "YYYYMMDD" -> "YYYY-MM-DD" (anything else as is). */
export function dicomDate(value: string | undefined): string {
  if (!value) return '—';
  return /^\d{8}$/.test(value) ? `${value.slice(0, 4)}-${value.slice(4, 6)}-${value.slice(6)}` : value;
}

function listText(value: string | string[] | number | null): string {
  if (value === null || value === '' || (Array.isArray(value) && value.length === 0)) return '—';
  return Array.isArray(value) ? value.join(', ') : String(value);
}

// ---------------------------------------------------------------------------------------------
// One upload request with its progress row.

interface JobRow {
  el: HTMLElement;
  bar: ProgressBar;
  uploading(loaded: number, total: number): void;
  processing(): void;
  finish(text: string, tone: 'success' | 'error' | 'normal'): void;
  /** Marks a row that had not finished when the import was cancelled. */
  cancel(): void;
}

function jobRow(label: string, detail: string): JobRow {
  const bar = progressBar(`Upload of ${label}`);
  const state = h('span', { class: 'job-state muted' }, 'Waiting');
  let timer: number | undefined;
  let finished = false;
  const stop = (): void => window.clearInterval(timer);
  const row: JobRow = {
    el: h('li', { class: 'job' },
      h('div', { class: 'job-head' }, h('span', { class: 'strong' }, label), h('span', { class: 'muted small' }, detail), state),
      bar.el),
    bar,
    uploading(loaded, total) {
      state.textContent = 'Uploading';
      bar.set(fraction(loaded, total) ?? 0, uploadText(loaded, total));
    },
    processing() {
      const start = Date.now();
      state.textContent = 'Processing on the server';
      const tick = (): void => bar.set(null, `Upload complete · reading and converting the images… ${elapsed(start, Date.now())}`);
      tick();
      stop();
      timer = window.setInterval(tick, 1000);
    },
    finish(text, tone) {
      stop();
      finished = true;
      state.textContent = tone === 'error' ? 'Failed' : 'Done';
      bar.set(1, text);
      bar.setTone(tone);
    },
    cancel() {
      if (finished) return;
      const wasProcessing = timer !== undefined;
      stop();
      finished = true;
      state.textContent = 'Cancelled';
      bar.set(0, wasProcessing
        ? 'Cancelled after the upload: the server still imports these files.'
        : 'Cancelled: not sent.');
      bar.setTone('error');
    },
  };
  return row;
}

// ---------------------------------------------------------------------------------------------
// Upload card.

interface VolumeOutcome {
  file: string;
  result: VolumeUploadResult | null;
  error: string | null;
}

function volumeResults(outcomes: VolumeOutcome[]): HTMLElement {
  const ok = outcomes.filter((o) => o.result).length;
  return h('section', { class: 'card import-report', 'aria-label': 'Volume upload report' },
    h('h2', null, 'Image volumes'),
    h('div', { class: `banner banner-${ok === outcomes.length ? 'success' : ok > 0 ? 'info' : 'error'}`, role: 'status' },
      h('p', null, `${formatNumber(ok)} of ${plural(outcomes.length, 'file')} imported`)),
    dataTable<VolumeOutcome>(outcomes, {
      label: 'Volume uploads',
      columns: [
        { header: 'File', cell: (o) => h('span', { class: 'file-name' }, o.file) },
        { header: 'Outcome', cell: (o) => h('span', { class: `badge badge-import-${o.result ? 'ok' : 'bad'}` }, o.result ? 'imported' : 'rejected') },
        { header: 'Task', cell: (o) => (o.result?.task ? h('a', { href: href.task(o.result.task) }, `#${o.result.task}`) : '—') },
        { header: 'Size (voxels)', cell: (o) => (o.result ? o.result.size.join(' × ') : '—'), className: 'num nowrap' },
        { header: 'Spacing (mm)', cell: (o) => (o.result ? o.result.spacing.map((s) => Number(s.toFixed(3))).join(' × ') : '—'), className: 'num nowrap' },
        { header: 'Notes', cell: (o) => o.error ?? (o.result?.task === null ? 'No round is open: no task was queued.' : '—') },
      ],
    }),
  );
}

function uploadCard(project: Project, ctx: PageContext, reports: HTMLElement): HTMLElement {
  let chosen: File[] = [];
  const fileInput = h('input', {
    type: 'file', multiple: true, id: 'import-files', class: 'visually-hidden',
    accept: ['.dcm', '.zip', ...VOLUME_SUFFIXES, '.gz', 'application/dicom'].join(','),
  });
  const folderInput = h('input', { type: 'file', multiple: true, class: 'visually-hidden', id: 'import-folder' });
  folderInput.setAttribute('webkitdirectory', '');
  const drop = h('div', { class: 'dropzone' },
    h('p', { class: 'strong' }, 'Drop files here'),
    h('p', { class: 'muted small' }, 'DICOM files, folders or zip archives; NIfTI (.nii, .nii.gz), NRRD, MHA; pictures (.png, .jpg); videos (.mp4, .avi, .mov)'),
    h('div', { class: 'button-row' },
      h('label', { for: 'import-files', class: 'btn' }, 'Choose files…'),
      h('label', { for: 'import-folder', class: 'btn' }, 'Choose a DICOM folder…')),
    fileInput, folderInput,
  );
  const planSlot = h('div', { class: 'plan' });
  const description = field('Description of the image volumes', input({ maxlength: 64, placeholder: 'Leave empty to use the file name' }),
    'Series description for NIfTI / NRRD / MHA / video files. DICOM keeps its own.');
  const start = h('button', { type: 'button', class: 'btn btn-primary', disabled: true }, 'Upload and import');
  const cancel = h('button', { type: 'button', class: 'btn', hidden: true }, 'Cancel');
  const clear = h('button', { type: 'button', class: 'btn btn-ghost', disabled: true }, 'Clear');
  const jobs = h('ol', { class: 'jobs' });
  const slot = h('div', { class: 'slot' });
  let running: AbortController | null = null;

  const showPlan = (): void => {
    const plan = planImport(chosen);
    start.disabled = clear.disabled = chosen.length === 0 || running !== null;
    description.el.hidden = plan.volumes.length === 0;
    if (chosen.length === 0) {
      planSlot.replaceChildren(h('p', { class: 'muted' }, 'No files chosen.'));
      return;
    }
    planSlot.replaceChildren(h('ul', { class: 'plan-list' },
      plan.dicom.length > 0 ? h('li', null, h('span', { class: 'strong' }, plural(plan.dicom.length, 'DICOM file or archive', 'DICOM files or archives')),
        ` (${formatBytes(plan.dicomBytes)}): one import, sorted into series on the server`) : null,
      plan.volumes.length > 0 ? h('li', null, h('span', { class: 'strong' }, plural(plan.volumes.length, 'image volume or video', 'image volumes or videos')),
        ` (${formatBytes(plan.volumeBytes)}): one series and task each — `, plan.volumes.map((f) => f.name).join(', ')) : null,
    ));
  };
  const choose = (files: FileList | File[] | null): void => {
    if (!files || files.length === 0 || running) return;
    chosen = [...chosen, ...Array.from(files)];
    slot.replaceChildren();
    showPlan();
  };
  fileInput.addEventListener('change', () => { choose(fileInput.files); fileInput.value = ''; });
  folderInput.addEventListener('change', () => { choose(folderInput.files); folderInput.value = ''; });
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    droppedFiles(e.dataTransfer).then(choose, (err: unknown) => {
      slot.replaceChildren(errorBanner(err, 'Could not read the dropped files'));
    });
  });
  clear.addEventListener('click', () => { chosen = []; jobs.replaceChildren(); slot.replaceChildren(); showPlan(); });

  const beforeUnload = (e: BeforeUnloadEvent): void => { e.preventDefault(); };

  start.addEventListener('click', async () => {
    if (running || chosen.length === 0) return;
    const plan = planImport(chosen);
    const controller = new AbortController();
    running = controller;
    const onLeave = (): void => controller.abort();
    ctx.signal.addEventListener('abort', onLeave, { once: true });
    window.addEventListener('beforeunload', beforeUnload);
    setBusy(start, true, 'Importing…');
    clear.disabled = true;
    cancel.hidden = false;
    slot.replaceChildren();
    reports.replaceChildren();

    const dicomRow = plan.dicom.length > 0
      ? jobRow('DICOM import', `${plural(plan.dicom.length, 'file')} · ${formatBytes(plan.dicomBytes)}`) : null;
    const volumeRows = plan.volumes.map((f) => jobRow(f.name, formatBytes(f.size)));
    const rows = [dicomRow, ...volumeRows].filter((r): r is JobRow => r !== null);
    jobs.replaceChildren(...rows.map((r) => r.el));
    // Files the server has received in full: it imports them even if the page stops waiting.
    const processed = new Set<File>();
    const opts = (row: JobRow, files: File[]): { signal: AbortSignal; onProgress: (l: number, t: number) => void; onUploaded: () => void } => ({
      signal: controller.signal,
      onProgress: (loaded, total) => row.uploading(loaded, total),
      onUploaded: () => {
        files.forEach((f) => processed.add(f));
        row.processing();
      },
    });

    let cancelled = false;
    try {
      if (dicomRow) {
        try {
          const report: ImportReport = await importStudies(project.slug, plan.dicom, opts(dicomRow, plan.dicom));
          const summary = reportSummary(report);
          dicomRow.finish(summary.text, summary.tone === 'error' ? 'error' : 'success');
          reports.append(importReportView(report, 'DICOM import report'));
        } catch (err) {
          if (isAbort(err)) throw err;
          dicomRow.finish(errorMessage(err), 'error');
          reports.append(errorBanner(err, 'The DICOM import failed'));
        }
        plan.dicom.forEach((f) => processed.add(f));
      }
      const outcomes: VolumeOutcome[] = [];
      for (const [i, file] of plan.volumes.entries()) {
        const row = volumeRows[i] as JobRow;
        try {
          const result = await uploadVolume(project.slug, file, description.control.value.trim(), opts(row, [file]));
          outcomes.push({ file: file.name, result, error: null });
          row.finish(result.task ? `Imported: task #${result.task}` : 'Imported', 'success');
        } catch (err) {
          if (isAbort(err)) throw err;
          const message = err instanceof ApiError && err.fields.file ? `${err.message} (${err.fields.file.join(' ')})` : errorMessage(err);
          outcomes.push({ file: file.name, result: null, error: message });
          row.finish(message, 'error');
        }
        processed.add(file);
      }
      if (outcomes.length > 0) reports.append(volumeResults(outcomes));
    } catch (err) {
      if (!isAbort(err)) throw err;
      cancelled = true;
    } finally {
      // What was sent is done (or on the server); a cancelled import keeps the rest chosen.
      chosen = chosen.filter((f) => !processed.has(f));
      running = null;
      ctx.signal.removeEventListener('abort', onLeave);
      window.removeEventListener('beforeunload', beforeUnload);
      if (!ctx.signal.aborted) {
        setBusy(start, false);
        cancel.hidden = true;
        if (cancelled) {
          rows.forEach((r) => r.cancel());
          slot.replaceChildren(notice('Import cancelled. What the server had already received is imported (see the report); ' +
            'the files not sent yet are still chosen.'));
        }
        showPlan();
        if (!cancelled && reports.childElementCount > 0) reports.scrollIntoView({ block: 'start', behavior: 'smooth' });
      }
    }
  });
  cancel.addEventListener('click', () => running?.abort());

  showPlan();
  return h('section', { class: 'card' },
    h('h2', null, 'Upload files'),
    h('p', { class: 'hint' }, `New series become tasks of the open round${project.current_round === null ? '' : ` (round ${project.current_round})`}. ` +
      'Series already in the project are recognised and skipped.'),
    project.current_round === null ? notice('No round is open: images are stored but no task is queued until you open a round.') : null,
    drop,
    planSlot,
    description.el,
    h('div', { class: 'button-row' }, start, cancel, clear),
    jobs,
    slot,
  );
}

// ---------------------------------------------------------------------------------------------
// PACS card.

const PACS_FIELDS: { name: keyof PacsFilter; label: string; placeholder: string }[] = [
  { name: 'PatientID', label: 'Patient ID', placeholder: 'e.g. 12345*' },
  { name: 'PatientName', label: 'Patient name', placeholder: 'e.g. DOE^J*' },
  { name: 'StudyDate', label: 'Study date', placeholder: '20240131 or a range' },
  { name: 'AccessionNumber', label: 'Accession number', placeholder: '' },
  { name: 'ModalitiesInStudy', label: 'Modality', placeholder: 'e.g. CT' },
];

function pacsCard(project: Project, ctx: PageContext, reports: HTMLElement): HTMLElement {
  const inputs = PACS_FIELDS.map((f) => ({ f, row: field(f.label, input({ placeholder: f.placeholder, autocomplete: 'off' })) }));
  const search = h('button', { type: 'submit', class: 'btn' }, 'Search the PACS');
  const results = h('div', { class: 'pacs-results' });
  const form = h('form', { class: 'pacs-filters', novalidate: true },
    inputs.map((i) => i.row.el), h('div', { class: 'field field-button' }, search));

  const runSearch = async (): Promise<void> => {
    const filter: PacsFilter = {};
    for (const { f, row } of inputs) if (row.control.value.trim()) filter[f.name] = row.control.value.trim();
    setBusy(search, true, 'Searching…');
    results.replaceChildren(h('p', { class: 'muted' }, 'Asking the PACS…'));
    try {
      const studies = await searchPacs(project.slug, filter, { signal: ctx.signal });
      results.replaceChildren(studyTable(studies));
    } catch (err) {
      if (isAbort(err)) return;
      const unconfigured = err instanceof ApiError && /no PACS is configured/i.test(err.message);
      results.replaceChildren(unconfigured
        ? notice('No PACS is configured on this server. An administrator sets PACS_DICOMWEB_URL (a DICOMweb endpoint) to enable it.')
        : errorBanner(err, 'The PACS search failed'));
    } finally {
      if (!ctx.signal.aborted) setBusy(search, false);
    }
  };
  form.addEventListener('submit', (e) => { e.preventDefault(); void runSearch(); });

  const studyTable = (studies: PacsStudy[]): HTMLElement => {
    if (studies.length === 0) return emptyState('No study matches these filters.');
    const selected = new Set<string>();
    const importButton = h('button', { type: 'button', class: 'btn btn-primary', disabled: true }, 'Import selected');
    const status = h('div', { class: 'slot' });
    const all = h('input', { type: 'checkbox', 'aria-label': 'Select all studies' });
    const boxes: HTMLInputElement[] = [];
    const refresh = (): void => {
      importButton.textContent = selected.size === 0 ? 'Import selected' : `Import ${plural(selected.size, 'study', 'studies')}`;
      importButton.disabled = selected.size === 0;
      all.checked = selected.size === studies.length;
      all.indeterminate = selected.size > 0 && selected.size < studies.length;
    };
    const rows = studies.map((s) => {
      const box = h('input', { type: 'checkbox', 'aria-label': `Select study ${s.study_instance_uid}` });
      boxes.push(box);
      box.addEventListener('change', () => {
        if (box.checked) selected.add(s.study_instance_uid); else selected.delete(s.study_instance_uid);
        refresh();
      });
      return h('tr', null,
        h('td', null, box),
        h('td', null, s.patient_id || '—'),
        h('td', null, s.patient_name || '—'),
        h('td', { class: 'nowrap' }, dicomDate(s.study_date)),
        h('td', null, s.accession_number || '—'),
        h('td', null, s.description || '—', h('div', { class: 'muted small uid' }, s.study_instance_uid)),
        h('td', null, listText(s.modalities)),
        h('td', { class: 'num' }, listText(s.instances)),
      );
    });
    all.addEventListener('change', () => {
      selected.clear();
      boxes.forEach((b, i) => {
        b.checked = all.checked;
        const uidValue = studies[i]?.study_instance_uid;
        if (all.checked && uidValue) selected.add(uidValue);
      });
      refresh();
    });

    importButton.addEventListener('click', async () => {
      const uids = [...selected];
      if (uids.length === 0) return;
      setBusy(importButton, true, 'Importing…');
      boxes.forEach((b) => { b.disabled = true; });
      all.disabled = search.disabled = true;
      const bar = progressBar('PACS import');
      const started = Date.now();
      const tick = (): void => bar.set(null, `Pulling ${plural(uids.length, 'study', 'studies')} from the PACS and importing… ${elapsed(started, Date.now())}`);
      tick();
      const timer = window.setInterval(tick, 1000);
      status.replaceChildren(bar.el);
      reports.replaceChildren();
      try {
        const report = await importFromPacs(project.slug, uids, { signal: ctx.signal });
        const summary = reportSummary(report);
        bar.set(1, `Finished in ${elapsed(started, Date.now())}: ${summary.text}`);
        bar.setTone(summary.tone === 'error' ? 'error' : 'success');
        reports.append(importReportView(report, 'PACS import report'));
        reports.scrollIntoView({ block: 'start', behavior: 'smooth' });
      } catch (err) {
        if (isAbort(err)) return;
        bar.set(1, 'Failed');
        bar.setTone('error');
        status.append(errorBanner(err, 'The PACS import failed'));
      } finally {
        window.clearInterval(timer);
        if (!ctx.signal.aborted) {
          setBusy(importButton, false);
          boxes.forEach((b) => { b.disabled = false; });
          all.disabled = search.disabled = false;
          refresh();
        }
      }
    });

    refresh();
    return h('div', null,
      h('p', { class: 'muted small' }, `${plural(studies.length, 'study', 'studies')} found${studies.length >= 100 ? ' (the first 100: narrow the filters)' : ''}.`),
      h('div', { class: 'table-wrap' }, h('table', { class: 'data', 'aria-label': 'Studies on the PACS' },
        h('thead', null, h('tr', null,
          h('th', null, all), h('th', null, 'Patient ID'), h('th', null, 'Name'), h('th', null, 'Date'),
          h('th', null, 'Accession'), h('th', null, 'Description'), h('th', null, 'Modalities'), h('th', { class: 'num' }, 'Instances'))),
        h('tbody', null, rows))),
      h('div', { class: 'button-row' }, importButton),
      status,
    );
  };

  void runSearch();
  return h('section', { class: 'card' },
    h('h2', null, 'Import from the PACS'),
    h('p', { class: 'hint' }, 'Search the configured PACS (DICOMweb), tick studies and import them. Wildcards (*) are allowed.'),
    form,
    results,
  );
}

export async function importPage(root: HTMLElement, ctx: PageContext, slug: string): Promise<void> {
  const project = await getProject(slug, { signal: ctx.signal });
  if (!isManager(project)) {
    root.replaceChildren(...managersOnly(project));
    return;
  }
  const uploadReports = h('div', { class: 'reports', 'aria-live': 'polite' });
  const pacsReports = h('div', { class: 'reports', 'aria-live': 'polite' });
  root.replaceChildren(
    ...managerHead(project, 'import', 'Import studies'),
    uploadCard(project, ctx, uploadReports),
    uploadReports,
    pacsCard(project, ctx, pacsReports),
    pacsReports,
  );
}
