// The Rounds page's cards for a round's results: export its accepted cases, train a model on the
// accepted tasks of rounds 0..N (a job on the workers' train queue, polled), and the project's
// model versions with the one to pre-annotate the next round with ("Make active").

import {
  getTrainingJob, promoteModelVersion, trainRound,
  type ModelVersion, type Project, type Round, type TrainingJob,
} from '../api';
import { href, navigate } from '../router';
import { setFlash } from '../store';
import { h } from '../ui/dom';
import { emptyState, errorBanner, isAbort } from '../ui/feedback';
import { setBusy } from '../ui/forms';
import { formatDate } from '../ui/format';
import { attemptSuffix, noticeLine } from '../ui/jobNotice';
import { progressBar } from '../ui/progress';
import { dataTable } from '../ui/table';

/** How often a running training job is asked for its progress. */
export const TRAIN_POLL_MS = 3000;

const BACKENDS: [RegExp, string][] = [
  [/medsam2/i, 'MedSAM2'],
  [/learned/i, 'Learned (default)'],
  [/classical|default/i, 'Default'],
];

/** A readable name for a backend's import path. */
export function backendLabel(backend: string): string {
  return BACKENDS.find(([pattern]) => pattern.test(backend))?.[1] ?? backend.split('.').at(-1) ?? backend;
}

/** A Dice (or other 0..1 figure) as shown in the models table. */
const figure = (v: number): string => (Number.isInteger(v) ? String(v) : v.toFixed(3));

function diceMean(value: unknown): number | null {
  const mean = (value as { dice_mean?: unknown } | null | undefined)?.dice_mean;
  return typeof mean === 'number' ? mean : null;
}

/**
 * The model's headline figures: its Dice on the held-out validation cases against the model it
 * replaces (what a manager needs before making it active), then the numeric metrics whose names
 * say Dice, loss or cases.
 */
export function metricSummary(metrics: Record<string, unknown>): string {
  const shown: string[] = [];
  const after = diceMean(metrics.validation);
  if (after !== null) {
    const before = diceMean(metrics.validation_before);
    shown.push(`validation Dice ${figure(after)}${before === null ? '' : ` (before ${figure(before)})`}`);
  }
  for (const [key, value] of Object.entries(metrics)) {
    if (shown.length >= 4) break;
    if (typeof value === 'number' && /dice|loss|cases|steps|lesions/i.test(key)) {
      shown.push(`${key.replace(/_/g, ' ')} ${figure(value)}`);
    }
  }
  return shown.join(' · ');
}

/** What a training job's state means for the manager. */
export function trainingText(job: TrainingJob): string {
  switch (job.state) {
    case 'queued': {
      const line = noticeLine(job.notice ?? '');
      return `${line ? `${line}: ` : 'Queued on the train queue: '}a training worker will pick it up.`;
    }
    case 'running':
      return `Training${attemptSuffix(job.attempts ?? 0)}: ${job.progress_done} of ${job.progress_total} steps`;
    case 'succeeded':
      return `Trained ${job.result ? `“${job.result.name}”` : 'a new model'}. Make it active to pre-annotate the next round with it.`;
    default:
      return `Training failed: ${job.error || 'no reason recorded'}`;
  }
}

export const EXPORT_FORMATS: { id: string; label: string }[] = [
  { id: 'nifti', label: 'NIfTI images and instance label maps' },
  { id: 'medsam2-npz', label: 'MedSAM2 training npz' },
  { id: 'nnunet', label: 'nnU-Net v2 raw dataset' },
  { id: 'dicom-seg', label: 'DICOM SEG, referencing the source series' },
];

/** The zip download of a round's export in `formats` (with its manifest). */
export function exportUrl(slug: string, round: number, formats: string[]): string {
  const base = `/api/projects/${encodeURIComponent(slug)}/rounds/${round}/export/files/`;
  return `${base}?formats=${formats.map(encodeURIComponent).join(',')}`;
}

/** Download the round's accepted cases in the chosen formats. */
export function exportCard(project: Project, round: Round): HTMLElement {
  const link = h('a', { class: 'btn', download: '' }, 'Download the export');
  const boxes = EXPORT_FORMATS.map((f) => h('input', { type: 'checkbox', value: f.id, checked: true }));
  const update = (): void => {
    const chosen = boxes.filter((b) => b.checked).map((b) => b.value);
    link.setAttribute('href', exportUrl(project.slug, round.number, chosen));
    link.classList.toggle('disabled', chosen.length === 0);
    link.setAttribute('aria-disabled', String(chosen.length === 0));
  };
  boxes.forEach((b) => b.addEventListener('change', update));
  link.addEventListener('click', (evt) => {
    if (link.getAttribute('aria-disabled') === 'true') evt.preventDefault();
  });
  update();
  return h('section', { class: 'card', id: 'export' },
    h('div', { class: 'card-head' }, h('h2', null, `Export round ${round.number}`), link),
    h('p', { class: 'hint' },
      'The accepted cases of this round, with a manifest of who annotated and reviewed each, with which model, ' +
      'their effort, and a fixed train / validation split. The same round gives the same files.'),
    h('fieldset', { class: 'formats' }, h('legend', null, 'Formats'),
      EXPORT_FORMATS.map((f, i) => h('label', { class: 'check' }, boxes[i], ` ${f.label}`))),
  );
}

/** "rounds 0–2", or "round 0". */
export function roundsSpan(last: number): string {
  return last === 0 ? 'round 0' : `rounds 0–${last}`;
}

/** Train on rounds 0..round; polls the job until it ends, then offers to reload the page. */
export function trainingCard(project: Project, round: Round, signal: AbortSignal): HTMLElement {
  const bar = progressBar(`Training on ${roundsSpan(round.number)}`);
  const slot = h('div', { class: 'slot' });
  const body = h('div');
  const button = h('button', { type: 'button', class: 'btn' }, `Train on ${roundsSpan(round.number)}`);
  let timer: number | undefined;
  signal.addEventListener('abort', () => window.clearTimeout(timer), { once: true });

  const render = (job: TrainingJob): void => {
    const done = job.state === 'succeeded' || job.state === 'failed';
    bar.set(done ? 1 : job.state === 'queued' ? null : job.progress, trainingText(job));
    bar.setTone(job.state === 'failed' ? 'error' : job.state === 'succeeded' ? 'success' : 'normal');
    body.replaceChildren(bar.el);
    if (job.state === 'succeeded') {
      const reload = h('button', { type: 'button', class: 'btn btn-small' }, 'Show it in the models');
      reload.addEventListener('click', () => navigate(href.rounds(project.slug)));
      body.append(reload);
    }
    setBusy(button, !done, 'Training…');
    if (!done && !signal.aborted) timer = window.setTimeout(() => void poll(job.id), TRAIN_POLL_MS);
  };
  const poll = async (id: number): Promise<void> => {
    try {
      render(await getTrainingJob(id, { signal }));
    } catch (err) {
      if (isAbort(err)) return;
      slot.replaceChildren(errorBanner(err, 'Could not refresh the training job'));
      timer = window.setTimeout(() => void poll(id), TRAIN_POLL_MS * 3);
    }
  };
  button.addEventListener('click', async () => {
    setBusy(button, true, 'Queuing…');
    slot.replaceChildren();
    try {
      render(await trainRound(project.slug, round.number, { signal }));
    } catch (err) {
      if (isAbort(err)) return;
      setBusy(button, false);
      slot.replaceChildren(errorBanner(err, 'Could not start the training'));
    }
  });

  return h('section', { class: 'card', id: 'training' },
    h('div', { class: 'card-head' }, h('h2', null, 'Train the next model'), button),
    h('p', { class: 'hint' },
      `Trains on the masks the reviewers accepted in ${roundsSpan(round.number)}: a MedSAM2 model is fine-tuned from its ` +
      'checkpoint, the default backend trains its learned model. The new model pre-annotates the next round once it is active.'),
    slot,
    body,
  );
}

/** The project's model versions, newest first, with the active one marked. */
export function modelsCard(project: Project, versions: ModelVersion[], signal: AbortSignal): HTMLElement {
  const slot = h('div', { class: 'slot' });
  const activate = async (version: ModelVersion, button: HTMLButtonElement): Promise<void> => {
    if (!window.confirm(`Make “${version.name}” the active model? The next round opened is pre-annotated with it.`)) return;
    setBusy(button, true, 'Activating…');
    try {
      await promoteModelVersion(project.slug, version.id, { signal });
      setFlash(`“${version.name}” is the active model: the next round opened is pre-annotated with it.`);
      navigate(href.rounds(project.slug));
    } catch (err) {
      if (isAbort(err)) return;
      setBusy(button, false);
      slot.replaceChildren(errorBanner(err, 'Could not make the model active'));
    }
  };
  const table = dataTable<ModelVersion>(versions, {
    label: 'Model versions',
    columns: [
      { header: 'Model', cell: (v) => h('span', { class: 'strong', title: v.checkpoint || 'no weights file' }, v.name) },
      { header: 'Backend', cell: (v) => h('span', { title: v.backend }, backendLabel(v.backend)) },
      { header: 'Trained on', cell: (v) => (v.trained_from_rounds.length ? `rounds ${v.trained_from_rounds.join(', ')}` : '—') },
      { header: 'Metrics', cell: (v) => h('span', { class: 'muted small' }, metricSummary(v.metrics) || '—') },
      { header: 'Created', cell: (v) => h('span', { class: 'muted' }, formatDate(v.created)) },
      {
        header: 'Active',
        cell: (v) => {
          if (project.active_model_version === v.id) return h('span', { class: 'badge badge-round-open' }, 'Active');
          const button = h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Make ${v.name} active` }, 'Make active');
          button.addEventListener('click', () => void activate(v, button));
          return button;
        },
      },
    ],
  });
  return h('section', { class: 'card', id: 'models' },
    h('h2', null, 'Models'),
    h('p', { class: 'hint' },
      project.active_model_version === null
        ? 'No model is active: a new round is pre-annotated by the newest model trained here, or the untrained default.'
        : 'A new round is pre-annotated by the active model.',
      ' Before making a model active, compare its Dice on the held-out validation cases with the model it replaces.'),
    slot,
    versions.length === 0 ? emptyState('No model versions yet: train one after a round’s tasks are accepted.') : table,
    h('p', { class: 'muted small' }, 'Whether a model saves work: the active time per lesion and the cost reduction per round are on the ',
      h('a', { href: href.dashboard(project.slug) }, 'dashboard'), '.'),
  );
}
