// #/  My projects

import { listProjects, type Project } from '../api';
import { href } from '../router';
import { roleBadge } from '../ui/badges';
import { h } from '../ui/dom';
import { emptyState } from '../ui/feedback';
import { formatDate } from '../ui/format';
import { setTitle } from '../ui/layout';
import { dataTable } from '../ui/table';
import type { PageContext } from './page';

export async function projectsPage(root: HTMLElement, ctx: PageContext): Promise<void> {
  setTitle('My projects');
  const page = await listProjects({ signal: ctx.signal });

  const body = page.results.length === 0
    ? emptyState(ctx.me.can_create_projects
      ? 'You are not a member of any project yet. Create one with “New project”.'
      : 'You are not a member of any project yet. Ask a project manager to add you.')
    : dataTable<Project>(page, {
      label: 'My projects',
      signal: ctx.signal,
      columns: [
        { header: 'Project', cell: (p) => h('a', { href: href.project(p.slug), class: 'strong' }, p.name) },
        { header: 'Modality', cell: (p) => p.modality },
        { header: 'My role', cell: (p) => roleBadge(p.my_role) },
        { header: 'Current round', cell: (p) => p.current_round ?? '—', className: 'num' },
        {
          header: 'Manage',
          cell: (p) => (p.my_role === 'manager'
            ? h('span', { class: 'link-list' },
              h('a', { href: href.dashboard(p.slug) }, 'Dashboard'),
              h('a', { href: href.tasks(p.slug) }, 'Tasks'),
              h('a', { href: href.rounds(p.slug) }, 'Rounds'),
              h('a', { href: href.import(p.slug) }, 'Import'),
              h('a', { href: href.settings(p.slug) }, 'Settings'))
            : '—'),
        },
        { header: 'Created', cell: (p) => formatDate(p.created), className: 'muted' },
      ],
    });

  root.replaceChildren(
    h('div', { class: 'page-head page-head-row' },
      h('div', null,
        h('h1', null, 'My projects'),
        h('p', { class: 'muted' }, `Signed in as ${ctx.me.username}`),
      ),
      ctx.me.can_create_projects
        ? h('a', { class: 'btn btn-primary', href: href.newProject() }, 'New project')
        : null,
    ),
    h('section', { class: 'card' }, body),
  );
}
