// The tabs of a project for its managers: queue, dashboard, tasks, rounds, import, settings.

import type { Project } from '../api';
import { href } from '../router';
import { h } from './dom';
import { breadcrumbs, setTitle } from './layout';

export type ManagerTab = 'queue' | 'dashboard' | 'tasks' | 'rounds' | 'import' | 'settings';

const TABS: { tab: ManagerTab; label: string; link: (slug: string) => string }[] = [
  { tab: 'queue', label: 'My queue', link: href.project },
  { tab: 'dashboard', label: 'Dashboard', link: href.dashboard },
  { tab: 'tasks', label: 'Tasks', link: (slug) => href.tasks(slug) },
  { tab: 'rounds', label: 'Rounds', link: href.rounds },
  { tab: 'import', label: 'Import', link: href.import },
  { tab: 'settings', label: 'Settings', link: href.settings },
];

export function isManager(project: Project): boolean {
  return project.my_role === 'manager';
}

export function managerTabs(project: Project, active: ManagerTab): HTMLElement {
  return h('nav', { class: 'tabs', 'aria-label': 'Project pages' },
    TABS.map((t) => h('a', {
      href: t.link(project.slug),
      class: t.tab === active ? 'tab active' : 'tab',
      'aria-current': t.tab === active ? 'page' : null,
    }, t.label)),
  );
}

/** Breadcrumbs, title and tabs of a manager page. */
export function managerHead(project: Project, active: ManagerTab, title: string, lead?: string): HTMLElement[] {
  setTitle(title, project.name);
  return [
    breadcrumbs([
      { label: 'Projects', href: href.projects() },
      { label: project.name, href: href.project(project.slug) },
      { label: title },
    ]),
    h('div', { class: 'page-head' },
      h('h1', null, title),
      lead ? h('p', { class: 'muted' }, lead) : null,
    ),
    managerTabs(project, active),
  ];
}

/** What a non-manager sees on a manager page (the API would refuse every call anyway). */
export function managersOnly(project: Project): HTMLElement[] {
  setTitle('Managers only', project.name);
  return [
    breadcrumbs([
      { label: 'Projects', href: href.projects() },
      { label: project.name, href: href.project(project.slug) },
      { label: 'Managers only' },
    ]),
    h('section', { class: 'card' },
      h('h1', null, 'Managers only'),
      h('p', null, `This page is for the managers of ${project.name}. Your role is ${project.my_role}.`),
      h('p', null, h('a', { href: href.project(project.slug) }, 'Back to the project')),
    ),
  ];
}
