// #/projects/<slug>/rounds  Rounds: open the next one, run and watch its batch pre-annotation.

import {
  getPreannotation, getProject, listModelVersions, listRounds, openRound, startPreannotation,
  type ModelVersion, type PreannotationFailure, type PreannotationNotice, type PreannotationProgress, type Project,
  type Round,
} from '../api';
import { href, navigate } from '../router';
import { setFlash } from '../store';
import { h } from '../ui/dom';
import { emptyState, errorBanner, isAbort, notice } from '../ui/feedback';
import { setBusy } from '../ui/forms';
import { formatDate, formatNumber, plural } from '../ui/format';
import { noticeLine } from '../ui/jobNotice';
import { isManager, managerHead, managersOnly } from '../ui/managerNav';
import { fraction, progressBar } from '../ui/progress';
import { dataTable } from '../ui/table';
import type { PageContext } from './page';
import { exportCard, modelsCard, trainingCard } from './training';

/** How often the page asks for the progress while jobs are queued or running. */
export const POLL_MS = 2000;

export interface PreannotationStatus {
  done: number;
  active: number;
  /** Share of the jobs finished (succeeded or failed); null with no job at all. */
  fraction: number | null;
  finished: boolean;
  text: string;
}

export function preannotationStatus(p: PreannotationProgress): PreannotationStatus {
  const done = p.succeeded + p.failed;
  const active = p.queued + p.running;
  const share = fraction(done, p.total);
  let text: string;
  if (p.total === 0) text = 'Not started: no pre-annotation job in this round yet.';
  else if (active > 0) {
    text = `${formatNumber(done)} of ${formatNumber(p.total)} lesions done · ${formatNumber(p.running)} running, ${formatNumber(p.queued)} queued`;
    const requeued = (p.notices ?? []).length;
    if (requeued > 0) text += ` · ${formatNumber(requeued)} re-queued after a lost worker`;
  }
  else if (p.failed > 0) text = `Finished with failures: ${formatNumber(p.succeeded)} succeeded, ${formatNumber(p.failed)} failed`;
  else text = `Finished: all ${plural(p.succeeded, 'lesion')} pre-annotated`;
  return { done, active, fraction: share, finished: active === 0, text };
}

/** What the answer to "Start" means for the manager. */
export function startMessage(p: PreannotationProgress): string {
  const started = p.started ?? 0;
  if (started > 0) return `${plural(started, 'job')} queued on the GPU batch queue.`;
  if (p.queued + p.running > 0) return 'Nothing new to queue: the jobs already queued are still running.';
  return 'Nothing to queue: every lesion with a box prompt already has a mask (or there are no prompted lesions yet). ' +
    'Pre-annotation segments lesions that have a key slice and a box but no mask.';
}

function modelName(round: Round, versions: Map<number, ModelVersion>): HTMLElement | string {
  if (round.model_version === null) return h('span', { class: 'muted' }, 'Untrained default');
  const v = versions.get(round.model_version);
  return v ? h('span', { title: v.backend }, v.name) : `Model #${round.model_version}`;
}

function stateBadge(round: Round): HTMLElement {
  return h('span', { class: `badge badge-round-${round.state}` }, round.state === 'open' ? 'Open' : 'Closed');
}

const COUNT_KEYS: { key: 'queued' | 'running' | 'succeeded' | 'failed'; label: string }[] = [
  { key: 'queued', label: 'Queued' },
  { key: 'running', label: 'Running' },
  { key: 'succeeded', label: 'Done' },
  { key: 'failed', label: 'Failed' },
];

/** `signal`: aborted when the page goes or another round is shown (stops the polling). */
function preannotationCard(project: Project, round: Round, signal: AbortSignal): HTMLElement {
  const bar = progressBar(`Pre-annotation of round ${round.number}`);
  const counts = h('dl', { class: 'counts' });
  const failures = h('div');
  const notices = h('div');
  const updated = h('p', { class: 'muted small' });
  const slot = h('div', { class: 'slot' });
  const startButton = h('button', { type: 'button', class: 'btn btn-primary' }, 'Start pre-annotation');
  let timer: number | undefined;

  const render = (p: PreannotationProgress): void => {
    const status = preannotationStatus(p);
    bar.set(status.fraction ?? 0, status.text);
    bar.setTone(status.finished && p.total > 0 ? (p.failed > 0 ? 'error' : 'success') : 'normal');
    counts.replaceChildren(
      h('div', null, h('dt', null, 'Lesions'), h('dd', null, formatNumber(p.total))),
      ...COUNT_KEYS.map((c) => h('div', { class: p[c.key] > 0 ? `count-${c.key}` : null },
        h('dt', null, c.label), h('dd', null, formatNumber(p[c.key])))),
    );
    failures.replaceChildren(p.failures.length === 0 ? '' : h('div', null,
      h('h3', null, `Failures (${formatNumber(p.failures.length)})`),
      dataTable<PreannotationFailure>(p.failures, {
        label: 'Failed pre-annotation jobs',
        columns: [
          { header: 'Job', cell: (f) => `#${f.job}`, className: 'num' },
          { header: 'Task', cell: (f) => h('a', { href: href.task(f.task) }, `#${f.task}`) },
          { header: 'Lesion', cell: (f) => `#${f.lesion}`, className: 'num' },
          { header: 'Reason', cell: (f) => h('span', { class: 'error-text' }, f.error || 'No reason recorded') },
        ],
      }),
    ));
    const requeued = p.notices ?? [];
    notices.replaceChildren(requeued.length === 0 ? '' : h('div', { class: 'requeued' },
      h('h3', null, `Re-queued (${formatNumber(requeued.length)})`),
      h('p', { class: 'hint' }, 'These jobs lost their worker (it stopped answering) and wait for another one.'),
      dataTable<PreannotationNotice>(requeued, {
        label: 'Re-queued pre-annotation jobs',
        columns: [
          { header: 'Job', cell: (n) => `#${n.job}`, className: 'num' },
          { header: 'Task', cell: (n) => h('a', { href: href.task(n.task) }, `#${n.task}`) },
          { header: 'Lesion', cell: (n) => `#${n.lesion}`, className: 'num' },
          { header: 'State', cell: (n) => (n.state === 'running' ? 'Running again' : 'Queued') },
          { header: 'What happened', cell: (n) => h('span', { class: 'warning-text', title: n.notice }, noticeLine(n.notice)) },
        ],
      }),
    ));
    startButton.textContent = p.failed > 0 && status.finished ? 'Retry failed and start missing' : 'Start pre-annotation';
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}${status.finished ? '' : ` · refreshing every ${POLL_MS / 1000} s`}`;
    window.clearTimeout(timer);
    if (!status.finished && !signal.aborted) timer = window.setTimeout(() => void poll(), POLL_MS);
  };

  const poll = async (): Promise<void> => {
    try {
      render(await getPreannotation(project.slug, round.number, { signal }));
    } catch (err) {
      if (isAbort(err)) return;
      slot.replaceChildren(errorBanner(err, 'Could not refresh the progress'));
      timer = window.setTimeout(() => void poll(), POLL_MS * 3);
    }
  };
  signal.addEventListener('abort', () => window.clearTimeout(timer), { once: true });

  startButton.addEventListener('click', async () => {
    setBusy(startButton, true, 'Starting…');
    slot.replaceChildren();
    try {
      const p = await startPreannotation(project.slug, round.number, { signal });
      slot.replaceChildren(notice(startMessage(p), (p.started ?? 0) > 0 ? 'success' : 'info'));
      setBusy(startButton, false);
      render(p);
    } catch (err) {
      if (isAbort(err)) return;
      setBusy(startButton, false);
      slot.replaceChildren(errorBanner(err, 'Could not start the pre-annotation'));
    }
  });

  const body = h('div', null, h('p', { class: 'muted' }, 'Loading the progress…'));
  void (async () => {
    try {
      const p = await getPreannotation(project.slug, round.number, { signal });
      body.replaceChildren(bar.el, counts, updated, notices, failures);
      render(p);
    } catch (err) {
      if (!isAbort(err)) body.replaceChildren(errorBanner(err, 'Could not load the pre-annotation progress'));
    }
  })();

  return h('section', { class: 'card', id: 'preannotation' },
    h('div', { class: 'card-head' },
      h('h2', null, `Pre-annotation of round ${round.number}`, stateBadge(round)),
      startButton,
    ),
    h('p', { class: 'hint' },
      'Segments, on the GPU batch queue, every lesion of the round that has a box prompt but no mask yet. ' +
      'Starting again only queues what is missing, so it also retries the failures.'),
    slot,
    body,
  );
}

export async function roundsPage(root: HTMLElement, ctx: PageContext, slug: string): Promise<void> {
  const opts = { signal: ctx.signal };
  const project = await getProject(slug, opts);
  if (!isManager(project)) {
    root.replaceChildren(...managersOnly(project));
    return;
  }
  const [rounds, versions] = await Promise.all([listRounds(slug, opts), listModelVersions(slug, opts)]);
  const byId = new Map(versions.map((v) => [v.id, v]));
  const open = rounds.find((r) => r.state === 'open') ?? null;
  const last = rounds.at(-1) ?? null;
  const nextNumber = last ? last.number + 1 : 0;

  const detail = h('div');
  let cardController: AbortController | null = null;
  ctx.signal.addEventListener('abort', () => cardController?.abort(), { once: true });
  const show = (round: Round): void => {
    cardController?.abort();
    cardController = new AbortController();
    const cardSignal = cardController.signal;
    detail.replaceChildren(
      preannotationCard(project, round, cardSignal), exportCard(project, round), trainingCard(project, round, cardSignal),
    );
    table.querySelectorAll('tr[data-round]').forEach((tr) => {
      tr.classList.toggle('selected', tr.getAttribute('data-round') === String(round.number));
    });
  };

  const openSlot = h('div', { class: 'slot' });
  const openButton = h('button', { type: 'button', class: 'btn btn-primary' }, `Open round ${nextNumber}`);
  openButton.addEventListener('click', async () => {
    const question = open
      ? `Close round ${open.number} and open round ${nextNumber}? New imports then become tasks of round ${nextNumber}, ` +
        'pre-annotated by the project’s newest model.'
      : `Open round ${nextNumber}?`;
    if (!window.confirm(question)) return;
    setBusy(openButton, true, 'Opening…');
    openSlot.replaceChildren();
    try {
      const round = await openRound(slug, opts);
      setFlash(`Round ${round.number} is open.`);
      navigate(href.rounds(slug));
    } catch (err) {
      if (isAbort(err)) return;
      setBusy(openButton, false);
      openSlot.replaceChildren(errorBanner(err, 'Could not open a new round'));
    }
  });

  const table = h('table', { class: 'data', 'aria-label': 'Rounds' },
    h('thead', null, h('tr', null,
      h('th', { class: 'num' }, 'Round'), h('th', null, 'State'), h('th', null, 'Model'),
      h('th', null, 'Opened'), h('th', null, 'Closed'), h('th', null, 'Tasks'), h('th', null, 'Pre-annotation'))),
    h('tbody', null, [...rounds].reverse().map((r) => {
      const view = h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Show the pre-annotation of round ${r.number}` }, 'Show');
      view.addEventListener('click', () => {
        show(r);
        detail.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
      });
      return h('tr', { 'data-round': r.number },
        h('td', { class: 'num strong' }, r.number),
        h('td', null, stateBadge(r)),
        h('td', null, modelName(r, byId)),
        h('td', { class: 'muted' }, formatDate(r.opened_at)),
        h('td', { class: 'muted' }, r.closed_at ? formatDate(r.closed_at) : '—'),
        h('td', null, h('a', { href: href.tasks(slug, { round: r.number }) }, `Tasks of round ${r.number}`)),
        h('td', null, view),
      );
    })),
  );

  root.replaceChildren(
    ...managerHead(project, 'rounds', 'Rounds',
      open ? `Round ${open.number} is open: imports become its tasks.` : 'No round is open: imports queue no task.'),
    h('section', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', null, 'All rounds'), openButton),
      h('p', { class: 'hint' }, 'Opening a round closes the current one. The new round is pre-annotated by the project’s active model, ' +
        'or else its newest trained model.'),
      openSlot,
      rounds.length === 0 ? emptyState('No rounds yet.') : h('div', { class: 'table-wrap' }, table),
    ),
    detail,
    modelsCard(project, versions, ctx.signal),
  );
  const initial = open ?? last;
  if (initial) show(initial);
}
