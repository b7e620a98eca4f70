// #/tasks/<id>  Task summary, with a link to the image workspace (#/tasks/<id>/workspace)

import {
  ApiError, getProject, getTask, listLesions, reviewTask, submitTask,
  type Lesion, type Me, type Project, type ReviewDecision, type Task,
} from '../api';
import { setFlash } from '../store';
import { href, navigate } from '../router';
import { decisionBadge, sourceBadge, stateBadge, swatch } from '../ui/badges';
import { h, type Child } from '../ui/dom';
import { emptyState, errorBanner, isAbort } from '../ui/feedback';
import { formatDate, formatNumber, plural } from '../ui/format';
import { breadcrumbs, setTitle } from '../ui/layout';
import { dataTable } from '../ui/table';
import type { PageContext } from './page';

export function canSubmit(task: Task, me: Me): boolean {
  return task.assignee === me.username && (task.state === 'assigned' || task.state === 'rejected');
}

export function canReview(task: Task, project: Project): boolean {
  return project.my_role === 'reviewer' && task.state === 'submitted';
}

function details(task: Task): HTMLElement {
  const item = (term: string, value: Child | Child[]): HTMLElement[] =>
    [h('dt', null, term), h('dd', null, value)];
  return h('dl', { class: 'details' },
    item('State', stateBadge(task.state)),
    item('Series', task.series.description || `Series ${task.series.id}`),
    item('Modality', task.series.modality),
    item('Round', task.round),
    item('Annotator', task.assignee ?? '—'),
    item('Reviewer', task.reviewer ?? '—'),
    item('Lesions', task.lesion_count),
    item('Updated', formatDate(task.updated)),
  );
}

function lastReview(task: Task): HTMLElement | null {
  const review = task.last_review;
  if (!review) return null;
  return h('section', { class: `card review review-${review.decision}` },
    h('h2', null, 'Last review ', decisionBadge(review.decision)),
    h('blockquote', null, review.comment || 'No comment given.'),
    h('p', { class: 'muted' }, `${review.reviewer} · ${formatDate(review.created)}`),
  );
}

function lesionTable(lesions: Lesion[], project: Project, signal: AbortSignal): HTMLElement {
  const colors = new Map(project.lesion_classes.map((c) => [c.name, c.color]));
  return dataTable<Lesion>(lesions, {
    label: 'Lesions',
    signal,
    columns: [
      { header: 'Lesion', cell: (l) => `#${l.id}` },
      { header: 'Class', cell: (l) => [swatch(colors.get(l.lesion_class)), l.lesion_class] },
      { header: 'Key slice', cell: (l) => l.key_slice ?? '—', className: 'num' },
      { header: 'Box', cell: (l) => (l.box ? h('code', null, `[${l.box.join(', ')}]`) : '—') },
      {
        header: 'Latest mask',
        cell: (l) => {
          const m = l.latest_mask;
          if (!m) return h('span', { class: 'muted' }, 'No mask yet');
          return [
            h('span', { class: 'strong' }, `#${m.id}`), ' ', sourceBadge(m.source), ' ',
            h('span', null, `${formatNumber(m.voxel_count)} voxels`),
            h('div', { class: 'muted small' }, `${m.author} · ${formatDate(m.created)}`),
          ];
        },
      },
    ],
  });
}

function submitPanel(task: Task, ctx: PageContext): HTMLElement {
  const slot = h('div', { class: 'slot' });
  const button = h('button', { type: 'button', class: 'btn btn-primary' }, 'Submit for review');
  button.addEventListener('click', async () => {
    button.disabled = true;
    slot.replaceChildren();
    try {
      await submitTask(task.id, { signal: ctx.signal });
      setFlash(`Task #${task.id} submitted for review.`);
      navigate(href.project(task.project));
    } catch (err) {
      if (!isAbort(err)) slot.replaceChildren(errorBanner(err, 'Could not submit the task'));
      button.disabled = false;
    }
  });
  return h('section', { class: 'card actions' },
    h('h2', null, 'Submit'),
    h('p', { class: 'muted' },
      task.state === 'rejected'
        ? 'Address the reviewer’s comment, then submit the task again.'
        : `Submit when all lesions are annotated (${plural(task.lesion_count, 'lesion')} now).`),
    h('div', { class: 'button-row' }, button),
    slot,
  );
}

function reviewPanel(task: Task, ctx: PageContext): HTMLElement {
  const slot = h('div', { class: 'slot' });
  const fieldError = h('p', { class: 'field-error', id: 'review-comment-error', hidden: true });
  const comment = h('textarea', {
    id: 'review-comment', rows: 3, placeholder: 'Required when rejecting',
    'aria-describedby': 'review-comment-error',
  });
  const accept = h('button', { type: 'button', class: 'btn btn-accept' }, 'Accept');
  const reject = h('button', { type: 'button', class: 'btn btn-reject' }, 'Reject');

  const showFieldError = (message: string | null): void => {
    fieldError.textContent = message ?? '';
    fieldError.hidden = message === null;
    comment.classList.toggle('invalid', message !== null);
  };

  const send = async (decision: ReviewDecision): Promise<void> => {
    const text = comment.value.trim();
    showFieldError(null);
    slot.replaceChildren();
    if (decision === 'reject' && text === '') {
      showFieldError('A comment is required to reject a task.');
      comment.focus();
      return;
    }
    accept.disabled = reject.disabled = true;
    try {
      await reviewTask(task.id, decision, text, { signal: ctx.signal });
      setFlash(`Task #${task.id} ${decision === 'accept' ? 'accepted' : 'rejected'}.`);
      navigate(href.project(task.project));
    } catch (err) {
      if (isAbort(err)) return;
      if (err instanceof ApiError && err.fields.comment) showFieldError(err.fields.comment.join(' '));
      slot.replaceChildren(errorBanner(err, 'Could not save the review'));
      accept.disabled = reject.disabled = false;
    }
  };
  accept.addEventListener('click', () => void send('accept'));
  reject.addEventListener('click', () => void send('reject'));

  return h('section', { class: 'card actions' },
    h('h2', null, 'Review'),
    h('label', { for: 'review-comment' }, 'Comment'),
    comment,
    fieldError,
    h('div', { class: 'button-row' }, accept, reject),
    slot,
  );
}

export async function taskPage(root: HTMLElement, ctx: PageContext, id: number): Promise<void> {
  const opts = { signal: ctx.signal };
  const [task, lesions] = await Promise.all([getTask(id, opts), listLesions(id, opts)]);
  const project = await getProject(task.project, opts);
  setTitle(`Task #${task.id}`, project.name);

  const actions: HTMLElement[] = [];
  if (canSubmit(task, ctx.me)) actions.push(submitPanel(task, ctx));
  if (canReview(task, project)) actions.push(reviewPanel(task, ctx));

  root.replaceChildren(
    breadcrumbs([
      { label: 'Projects', href: href.projects() },
      { label: project.name, href: href.project(project.slug) },
      { label: `Task #${task.id}` },
    ]),
    h('div', { class: 'page-head' },
      h('h1', null, `Task #${task.id} `, stateBadge(task.state)),
      h('p', { class: 'muted' }, `${task.series.description || `Series ${task.series.id}`} · ${task.series.modality}`),
      h('p', null, h('a', { class: 'btn btn-primary', href: href.workspace(task.id) }, 'Open workspace')),
    ),
    h('div', { class: 'task-grid' },
      h('div', { class: 'task-main' },
        lastReview(task),
        h('section', { class: 'card' },
          h('h2', null, 'Lesions'),
          lesions.length === 0 ? emptyState('No lesions yet.') : lesionTable(lesions, project, ctx.signal),
        ),
      ),
      h('aside', { class: 'task-side' },
        ...actions,
        h('section', { class: 'card' }, h('h2', null, 'Details'), details(task)),
      ),
    ),
  );
}
