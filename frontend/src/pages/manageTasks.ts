// #/projects/<slug>/tasks  The manager's task list: filter, reassign, release, reopen, audit trail.

import {
  assignTask, getPage, getProject, listMembers, listRounds, listTaskAudit, listTasks, releaseTask, reopenTask,
  type AuditEvent, type Membership, type Paginated, type Project, type Round, type Task, type TaskState,
} from '../api';
import { hashQuery, href, navigate } from '../router';
import { stateBadge } from '../ui/badges';
import { h, type Child } from '../ui/dom';
import { emptyState, errorBanner, isAbort, notice } from '../ui/feedback';
import { clearFormErrors, field, select, setBusy, showClientErrors, showFormErrors, type ErrorTarget } from '../ui/forms';
import { formatDate } from '../ui/format';
import { isManager, managerHead, managersOnly } from '../ui/managerNav';
import { openSidePanel, type SidePanel } from '../ui/panel';
import { dataTable } from '../ui/table';
import type { PageContext } from './page';

export const TASK_STATES: TaskState[] = ['unassigned', 'assigned', 'submitted', 'accepted', 'rejected'];

export interface TaskListFilter {
  state?: TaskState;
  round?: number;
}

/** The filter in the hash (`?state=…&round=…`); unknown values are dropped. */
export function filterFromQuery(query: URLSearchParams): TaskListFilter {
  const filter: TaskListFilter = {};
  const state = query.get('state');
  if (state && (TASK_STATES as string[]).includes(state)) filter.state = state as TaskState;
  const round = query.get('round');
  if (round !== null && /^\d+$/.test(round)) filter.round = Number(round);
  return filter;
}

/** What a manager may do to a task in its state. */
export function taskActions(task: Pick<Task, 'state'>): { assign: boolean; release: boolean; reopen: boolean } {
  return {
    assign: task.state === 'unassigned' || task.state === 'assigned',
    release: task.state === 'assigned',
    reopen: task.state === 'accepted',
  };
}

const ACTION_LABELS: Record<string, string> = {
  'round.opened': 'Round opened',
  'task.claimed': 'Claimed',
  'task.assigned': 'Assigned',
  'task.released': 'Released to the pool',
  'task.submitted': 'Submitted for review',
  'task.accepted': 'Accepted',
  'task.rejected': 'Rejected',
  'task.reopened': 'Reopened',
  'review.created': 'Reviewed',
  'mask.saved': 'Mask saved',
};

/** One readable line per audit event ("Assigned to bob", "Reopened: wrong class"). */
export function auditText(event: Pick<AuditEvent, 'action' | 'data'>): string {
  const label = ACTION_LABELS[event.action] ?? event.action;
  const d = event.data;
  const str = (key: string): string | null => (typeof d[key] === 'string' && d[key] !== '' ? (d[key] as string) : null);
  if (event.action === 'task.assigned' && str('username')) return `${label} to ${str('username')}`;
  if (event.action === 'task.reopened' && str('reason')) return `${label}: ${str('reason')}`;
  if (event.action === 'task.released' && str('reason')) {
    return `${label} (${str('reason') === 'manager' ? 'by a manager' : str('reason')})`;
  }
  if (event.action === 'review.created' && str('decision')) {
    return `${label}: ${str('decision')}${str('comment') ? ` — ${str('comment')}` : ''}`;
  }
  return label;
}

function auditList(page: Paginated<AuditEvent>, ctx: PageContext): HTMLElement {
  const list = h('ol', { class: 'audit' });
  const add = (events: AuditEvent[]): void => {
    list.append(...events.map((e) => h('li', null,
      h('div', { class: 'audit-what' }, auditText(e)),
      h('div', { class: 'muted small' }, `${e.actor ?? 'system'} · ${formatDate(e.created)}`),
    )));
  };
  add(page.results);
  if (page.results.length === 0) return emptyState('Nothing recorded yet.');
  let next = page.next;
  const more = h('button', { type: 'button', class: 'btn btn-small', hidden: next === null }, 'Older events');
  const slot = h('div', { class: 'slot' });
  more.addEventListener('click', async () => {
    if (!next) return;
    setBusy(more, true, 'Loading…');
    try {
      const data = await getPage<AuditEvent>(next, { signal: ctx.signal });
      add(data.results);
      next = data.next;
      more.hidden = next === null;
    } catch (err) {
      if (!isAbort(err)) slot.replaceChildren(errorBanner(err, 'Could not load older events'));
    } finally {
      setBusy(more, false);
    }
  });
  return h('div', null, list, more, slot);
}

function detailList(task: Task): HTMLElement {
  const item = (term: string, value: Child | Child[]): HTMLElement[] => [h('dt', null, term), h('dd', null, value)];
  return h('dl', { class: 'details' },
    item('State', stateBadge(task.state)),
    item('Series', task.series.description || `Series ${task.series.id}`),
    item('Round', task.round),
    item('Annotator', task.assignee ?? '—'),
    item('Reviewer', task.reviewer ?? '—'),
    item('Priority', task.priority ?? 0),
    item('Model confidence', task.model_confidence == null ? '—' : task.model_confidence.toFixed(2)),
    item('Lesions', task.lesion_count),
    item('Updated', formatDate(task.updated)),
  );
}

interface PanelDeps {
  ctx: PageContext;
  members: Membership[];
  /** Called with the task after a change, so the list shows it. */
  changed: () => void;
}

function renderPanel(panel: SidePanel, task: Task, deps: PanelDeps, message: string | null): void {
  const { ctx } = deps;
  const can = taskActions(task);
  panel.setTitle([`Task #${task.id} `, stateBadge(task.state)]);
  const slot = h('div', { class: 'slot' });
  const sections: HTMLElement[] = [];
  const after = (updated: Task, text: string): void => {
    deps.changed();
    renderPanel(panel, updated, deps, text);
  };

  if (can.assign) {
    const annotators = deps.members.filter((m) =>
      (m.role === 'annotator' || m.role === 'manager') && m.username !== task.assignee);
    const choose = select([{ value: '', label: 'Choose a member…' },
      ...annotators.map((m) => ({ value: m.username, label: `${m.username} (${m.role})` }))], '');
    const user = field(task.assignee ? 'Reassign to' : 'Assign to', choose);
    const button = h('button', { type: 'submit', class: 'btn btn-primary' }, task.assignee ? 'Reassign' : 'Assign');
    const targets = new Map<string, ErrorTarget>([['user', user]]);
    const form = h('form', { class: 'panel-form', novalidate: true }, user.el, button);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      clearFormErrors(targets, slot);
      if (choose.value === '') {
        showClientErrors({ user: ['Choose who gets the task.'] }, 'Choose a member first.', targets, slot, 'Not assigned');
        return;
      }
      setBusy(button, true, 'Assigning…');
      try {
        const updated = await assignTask(task.id, choose.value, { signal: ctx.signal });
        after(updated, `Task #${task.id} assigned to ${choose.value}.`);
      } catch (err) {
        if (isAbort(err)) return;
        setBusy(button, false);
        showFormErrors(err, targets, slot, 'Not assigned');
      }
    });
    sections.push(h('section', null, h('h3', null, task.assignee ? 'Reassign' : 'Assign'),
      annotators.length === 0 ? emptyState('No other annotator is a member: add one in Settings.') : form));
  }

  if (can.release) {
    const button = h('button', { type: 'button', class: 'btn' }, 'Release to the pool');
    button.addEventListener('click', async () => {
      if (!window.confirm(`Take task #${task.id} away from ${task.assignee ?? 'its annotator'} and put it back in the pool? ` +
        'Saved masks stay with the task.')) return;
      setBusy(button, true, 'Releasing…');
      slot.replaceChildren();
      try {
        after(await releaseTask(task.id, { signal: ctx.signal }), `Task #${task.id} is back in the pool.`);
      } catch (err) {
        if (isAbort(err)) return;
        setBusy(button, false);
        slot.replaceChildren(errorBanner(err, 'Not released'));
      }
    });
    sections.push(h('section', null, h('h3', null, 'Release'),
      h('p', { class: 'hint' }, 'The task goes back to unassigned; anyone can claim it (or you assign it again).'), button));
  }

  if (can.reopen) {
    const reason = field('Reason', h('textarea', { rows: 3, placeholder: 'What must change (kept in the audit trail)' }));
    const button = h('button', { type: 'submit', class: 'btn btn-reject' }, 'Reopen');
    const targets = new Map<string, ErrorTarget>([['reason', reason]]);
    const form = h('form', { class: 'panel-form', novalidate: true }, reason.el, button);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      clearFormErrors(targets, slot);
      const text = reason.control.value.trim();
      if (text === '') {
        showClientErrors({ reason: ['Say why the task is reopened.'] }, 'A reason is required.', targets, slot, 'Not reopened');
        reason.control.focus();
        return;
      }
      setBusy(button, true, 'Reopening…');
      try {
        const updated = await reopenTask(task.id, text, { signal: ctx.signal });
        after(updated, `Task #${task.id} reopened${updated.assignee ? ` and sent back to ${updated.assignee}` : ''}.`);
      } catch (err) {
        if (isAbort(err)) return;
        setBusy(button, false);
        showFormErrors(err, targets, slot, 'Not reopened')?.focus();
      }
    });
    sections.push(h('section', null, h('h3', null, 'Reopen'),
      h('p', { class: 'hint' }, 'Unlocks the accepted task and sends it back to its annotator for edits.'), form));
  }

  const audit = h('div', null, h('p', { class: 'muted' }, 'Loading…'));
  void (async () => {
    try {
      audit.replaceChildren(auditList(await listTaskAudit(task.id, { signal: ctx.signal }), ctx));
    } catch (err) {
      if (!isAbort(err)) audit.replaceChildren(errorBanner(err, 'Could not load the audit trail'));
    }
  })();

  panel.body.replaceChildren(
    message ? notice(message, 'success') : '',
    detailList(task),
    h('p', null, h('a', { href: href.task(task.id) }, 'Open the task page')),
    ...sections,
    sections.length === 0 ? h('p', { class: 'hint' }, `A ${task.state} task cannot be assigned, released or reopened.`) : '',
    slot,
    h('section', null, h('h3', null, 'Audit trail'), audit),
  );
}

export async function manageTasksPage(root: HTMLElement, ctx: PageContext, slug: string): Promise<void> {
  const opts = { signal: ctx.signal };
  const project: Project = await getProject(slug, opts);
  if (!isManager(project)) {
    root.replaceChildren(...managersOnly(project));
    return;
  }
  const filter = filterFromQuery(hashQuery(location.hash));
  const [rounds, members] = await Promise.all([listRounds(slug, opts), listMembers(slug, opts)]);
  const listSlot = h('div');

  const stateSelect = select<string>([{ value: '', label: 'All states' },
    ...TASK_STATES.map((s) => ({ value: s, label: s[0]?.toUpperCase() + s.slice(1) }))], filter.state ?? '');
  const roundSelect = select<string>([{ value: '', label: 'All rounds' },
    ...[...rounds].reverse().map((r: Round) => ({ value: String(r.number), label: `Round ${r.number}${r.state === 'open' ? ' (open)' : ''}` }))],
  filter.round === undefined ? '' : String(filter.round));
  const applyFilter = (): void => {
    navigate(href.tasks(slug, {
      state: stateSelect.value || undefined,
      round: roundSelect.value === '' ? undefined : Number(roundSelect.value),
    }));
  };
  stateSelect.addEventListener('change', applyFilter);
  roundSelect.addEventListener('change', applyFilter);

  const load = async (): Promise<void> => {
    const page = await listTasks(slug, filter, opts);
    listSlot.replaceChildren(page.results.length === 0
      ? emptyState(filter.state || filter.round !== undefined ? 'No task matches these filters.' : 'No tasks yet: import studies to create them.')
      : dataTable<Task>(page, {
        label: 'Tasks',
        signal: ctx.signal,
        columns: [
          { header: 'Task', cell: (t) => h('a', { href: href.task(t.id), class: 'strong' }, `#${t.id}`) },
          { header: 'Series', cell: (t) => t.series.description || `Series ${t.series.id}` },
          { header: 'Round', cell: (t) => t.round, className: 'num' },
          { header: 'State', cell: (t) => stateBadge(t.state) },
          { header: 'Annotator', cell: (t) => t.assignee ?? h('span', { class: 'muted' }, '—') },
          { header: 'Reviewer', cell: (t) => t.reviewer ?? h('span', { class: 'muted' }, '—') },
          { header: 'Priority', cell: (t) => t.priority ?? 0, className: 'num' },
          { header: 'Confidence', cell: (t) => (t.model_confidence == null ? '—' : t.model_confidence.toFixed(2)), className: 'num' },
          { header: 'Updated', cell: (t) => formatDate(t.updated), className: 'muted' },
          {
            header: '',
            cell: (t) => {
              const button = h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Manage task #${t.id}` }, 'Manage');
              button.addEventListener('click', () => showPanel(t));
              return button;
            },
          },
        ],
      }));
  };

  const changed = (): void => {
    load().catch((err: unknown) => {
      if (!isAbort(err)) listSlot.prepend(errorBanner(err, 'Could not refresh the list'));
    });
  };
  const showPanel = (task: Task): void => {
    const panel = openSidePanel(`Task #${task.id}`, ctx.signal);
    renderPanel(panel, task, { ctx, members, changed }, null);
  };

  await load();
  root.replaceChildren(
    ...managerHead(project, 'tasks', 'Tasks',
      project.assignment === 'assigned'
        ? 'This project assigns tasks: give each unassigned task to an annotator.'
        : 'Annotators claim tasks from the pool; reassign or release them here when needed.'),
    h('section', { class: 'card' },
      h('div', { class: 'filters' },
        h('label', null, 'State ', stateSelect),
        h('label', null, 'Round ', roundSelect),
        filter.state || filter.round !== undefined ? h('a', { href: href.tasks(slug) }, 'Clear filters') : null),
      listSlot,
    ),
  );
}
