// #/new-project  Create a project (users with the add_project permission).

import { createProject, type ProjectCreate } from '../api';
import { href, navigate } from '../router';
import { setFlash } from '../store';
import { h } from '../ui/dom';
import { breadcrumbs, setTitle } from '../ui/layout';
import { emptyProjectValues, projectForm } from '../ui/projectForm';
import type { PageContext } from './page';

export function newProjectPage(root: HTMLElement, ctx: PageContext): void {
  setTitle('New project');
  const crumbs = breadcrumbs([{ label: 'Projects', href: href.projects() }, { label: 'New project' }]);
  if (!ctx.me.can_create_projects) {
    root.replaceChildren(crumbs, h('section', { class: 'card' },
      h('h1', null, 'New project'),
      h('p', null, 'Your account may not create projects. Ask an administrator for the “add project” permission.'),
    ));
    return;
  }
  root.replaceChildren(
    crumbs,
    h('div', { class: 'page-head' },
      h('h1', null, 'New project'),
      h('p', { class: 'muted' }, 'You become its manager. Round 0 opens right away, ready for imports.'),
    ),
    projectForm({
      mode: 'create',
      initial: emptyProjectValues(),
      submitLabel: 'Create project',
      busyLabel: 'Creating…',
      errorTitle: 'The project was not created',
      signal: ctx.signal,
      submit: async (payload) => {
        const project = await createProject(payload as ProjectCreate, { signal: ctx.signal });
        setFlash(`Project “${project.name}” created. Add its members, then import studies.`);
        navigate(href.settings(project.slug));
      },
    }),
  );
  root.querySelector<HTMLInputElement>('input')?.focus();
}
