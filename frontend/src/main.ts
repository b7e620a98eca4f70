import './style.css';
import './manage.css';

import { ApiError, getMe, type Me } from './api';
import { dashboardPage } from './pages/dashboard';
import { importPage } from './pages/import';
import { manageTasksPage } from './pages/manageTasks';
import { newProjectPage } from './pages/newProject';
import { projectPage } from './pages/project';
import { projectsPage } from './pages/projects';
import { roundsPage } from './pages/rounds';
import { settingsPage } from './pages/settings';
import { notFoundPage } from './pages/notFound';
import type { PageContext } from './pages/page';
import { taskPage } from './pages/task';
import { workspacePage } from './pages/workspace';
import { href, startRouter, type Route } from './router';
import { setCurrentUser, takeFlash } from './store';
import { h } from './ui/dom';
import { errorBanner, isAbort, loading, notice } from './ui/feedback';
import { LOGIN_URL, setTitle, topBar } from './ui/layout';
import { closeSidePanel } from './ui/panel';
import { addPageShortcut, clearPageShortcuts, installShortcuts } from './ui/shortcuts';

const app = document.getElementById('app') ?? document.body;
const flashSlot = h('div', { class: 'flash' });
const pageRoot = h('div', { class: 'page' });
const main = h('main', { class: 'container', id: 'main' }, flashSlot, pageRoot);

let current: AbortController | null = null;

async function renderRoute(route: Route, me: Me): Promise<void> {
  current?.abort();
  const controller = new AbortController();
  current = controller;
  clearPageShortcuts();
  closeSidePanel();

  const flash = takeFlash();
  flashSlot.replaceChildren(...(flash ? [notice(flash, 'success')] : []));
  pageRoot.replaceChildren(loading());
  window.scrollTo(0, 0);

  const ctx: PageContext = { signal: controller.signal, me, addShortcut: addPageShortcut };
  try {
    switch (route.name) {
      case 'projects':
        await projectsPage(pageRoot, ctx);
        break;
      case 'project':
        await projectPage(pageRoot, ctx, route.slug);
        break;
      case 'dashboard':
        await dashboardPage(pageRoot, ctx, route.slug);
        break;
      case 'newProject':
        newProjectPage(pageRoot, ctx);
        break;
      case 'settings':
        await settingsPage(pageRoot, ctx, route.slug);
        break;
      case 'import':
        await importPage(pageRoot, ctx, route.slug);
        break;
      case 'rounds':
        await roundsPage(pageRoot, ctx, route.slug);
        break;
      case 'tasks':
        await manageTasksPage(pageRoot, ctx, route.slug);
        break;
      case 'task':
        await taskPage(pageRoot, ctx, route.id);
        break;
      case 'workspace':
        await workspacePage(pageRoot, ctx, route.id);
        break;
      case 'notFound':
        notFoundPage(pageRoot, route.path);
        break;
    }
  } catch (err) {
    if (isAbort(err) || controller.signal.aborted) return;
    const title = err instanceof ApiError && err.status === 404 ? 'Not found' : 'Could not load this page';
    setTitle(title);
    pageRoot.replaceChildren(
      errorBanner(err, title),
      h('p', null, h('a', { href: href.projects() }, 'Back to my projects')),
    );
  }
}

async function boot(): Promise<void> {
  // Opened straight on a workspace: its viewer (Cornerstone, the largest chunk) starts loading
  // with the page, not after the sign-in check and the task (the page's import gets the same one).
  if (/^#\/tasks\/\d+\/workspace/.test(location.hash)) import('./viewer/viewer').catch(() => undefined);
  app.replaceChildren(topBar(null), main);
  pageRoot.replaceChildren(loading());
  installShortcuts();

  let me: Me;
  try {
    me = await getMe();
  } catch (err) {
    if (err instanceof ApiError && err.isAuthError) {
      window.location.assign(LOGIN_URL);
      return;
    }
    pageRoot.replaceChildren(errorBanner(err, 'Could not start the application'));
    return;
  }
  setCurrentUser(me);
  app.replaceChildren(topBar(me), main);
  startRouter((route) => void renderRoute(route, me));
}

void boot();
