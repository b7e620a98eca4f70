// #/projects/<slug>  My queue

import { getProject, listTasks, nextTask, type Project, type Role, type Task } from '../api';
import { href, navigate } from '../router';
import { roleBadge, stateBadge, swatch } from '../ui/badges';
import { h, kbd } from '../ui/dom';
import { emptyState, errorBanner, isAbort, notice } from '../ui/feedback';
import { formatDate } from '../ui/format';
import { breadcrumbs, setTitle } from '../ui/layout';
import { managerTabs } from '../ui/managerNav';
import { dataTable, type Column } from '../ui/table';
import type { PageContext } from './page';

export function canTakeTasks(role: Role | null): boolean {
  return role === 'annotator' || role === 'manager';
}

export function projectMeta(project: Project): HTMLElement {
  return h('div', { class: 'meta' },
    h('span', null, project.modality),
    roleBadge(project.my_role),
    h('span', null, project.current_round === null ? 'No active round' : `Round ${project.current_round}`),
    project.active_model_version === null ? null : h('span', null, `Model v${project.active_model_version}`),
  );
}

function classLegend(project: Project): HTMLElement | null {
  if (project.lesion_classes.length === 0) return null;
  return h('ul', { class: 'legend', 'aria-label': 'Lesion classes' },
    project.lesion_classes.map((c) => h('li', null, swatch(c.color), c.name)));
}

const taskLink: Column<Task> = {
  header: 'Task',
  cell: (t) => h('a', { href: href.task(t.id), class: 'strong' }, `#${t.id}`),
};
/** My own tasks open where the work is; the task page stays on the '#id' link. */
const workspaceCol: Column<Task> = {
  header: 'Workspace',
  cell: (t) => h('a', { href: href.workspace(t.id), 'aria-label': `Open the workspace of task #${t.id}` }, 'Open'),
};
const seriesCol: Column<Task> = {
  header: 'Series',
  cell: (t) => [t.series.description || `Series ${t.series.id}`, h('span', { class: 'muted' }, ` · ${t.series.modality}`)],
};
const roundCol: Column<Task> = { header: 'Round', cell: (t) => t.round, className: 'num' };
const stateCol: Column<Task> = { header: 'State', cell: (t) => stateBadge(t.state) };
const lesionsCol: Column<Task> = { header: 'Lesions', cell: (t) => t.lesion_count, className: 'num' };
const updatedCol: Column<Task> = { header: 'Updated', cell: (t) => formatDate(t.updated), className: 'muted' };

function rejectionNote(task: Task): HTMLElement | null {
  const review = task.last_review;
  if (task.state !== 'rejected' || !review) return null;
  return h('div', { class: 'review-note' },
    h('strong', null, `Rejected by ${review.reviewer}: `),
    review.comment || 'No comment given.',
  );
}

/**
 * Claims the next task and opens its workspace, where the work is (the task page stays a link
 * away, in the workspace's breadcrumbs). False when the queue is empty.
 */
export async function openNextTask(
  slug: string,
  opts: { signal?: AbortSignal } = {},
  claim: typeof nextTask = nextTask,
  go: (hash: string) => void = navigate,
): Promise<boolean> {
  const task = await claim(slug, opts);
  if (task === null) return false;
  go(href.workspace(task.id));
  return true;
}

function nextTaskPanel(project: Project, ctx: PageContext): HTMLElement {
  const slot = h('div', { class: 'slot' });
  const button = h('button', { type: 'button', class: 'btn btn-primary btn-lg' },
    'Next task', kbd('N'));

  const take = async (): Promise<void> => {
    if (button.disabled) return;
    button.disabled = true;
    slot.replaceChildren();
    try {
      if (!(await openNextTask(project.slug, { signal: ctx.signal }))) {
        slot.replaceChildren(notice('No tasks waiting. Check back later.'));
      }
    } catch (err) {
      if (!isAbort(err)) slot.replaceChildren(errorBanner(err, 'Could not get the next task'));
    } finally {
      button.disabled = false;
    }
  };
  button.addEventListener('click', () => void take());
  ctx.addShortcut({ key: 'n', description: 'Take the next task', run: () => void take() });

  return h('section', { class: 'card next-card' },
    h('div', null,
      h('h2', null, 'Your queue'),
      h('p', { class: 'muted' }, 'Claim the next task waiting for you in this project.'),
    ),
    button,
    slot,
  );
}

export async function projectPage(root: HTMLElement, ctx: PageContext, slug: string): Promise<void> {
  const opts = { signal: ctx.signal };
  const [project, mine] = await Promise.all([
    getProject(slug, opts),
    listTasks(slug, { mine: true }, opts),
  ]);
  setTitle(project.name);
  const isReviewer = project.my_role === 'reviewer';
  const waiting = isReviewer ? await listTasks(slug, { state: 'submitted' }, opts) : null;

  const sections: HTMLElement[] = [];
  if (canTakeTasks(project.my_role)) sections.push(nextTaskPanel(project, ctx));

  if (waiting) {
    sections.push(h('section', { class: 'card' },
      h('h2', null, 'Waiting for review'),
      waiting.results.length === 0
        ? emptyState('Nothing is waiting for review.')
        : dataTable<Task>(waiting, {
          label: 'Waiting for review',
          signal: ctx.signal,
          columns: [taskLink, seriesCol, roundCol,
            { header: 'Annotator', cell: (t) => t.assignee ?? '—' }, lesionsCol, updatedCol],
        }),
    ));
  }

  if (!isReviewer || mine.results.length > 0) {
    sections.push(h('section', { class: 'card' },
      h('h2', null, 'My tasks'),
      mine.results.length === 0
        ? emptyState('No tasks assigned to you yet.')
        : dataTable<Task>(mine, {
          label: 'My tasks',
          signal: ctx.signal,
          columns: [taskLink, seriesCol, roundCol, stateCol, lesionsCol, updatedCol, workspaceCol],
          detail: rejectionNote,
        }),
    ));
  }

  root.replaceChildren(
    breadcrumbs([{ label: 'Projects', href: href.projects() }, { label: project.name }]),
    h('div', { class: 'page-head' }, h('h1', null, project.name), projectMeta(project), classLegend(project)),
    ...(project.my_role === 'manager' ? [managerTabs(project, 'queue')] : []),
    ...sections,
  );
}
