// Hash routing: #/ , #/projects/<slug> , #/projects/<slug>/dashboard , #/tasks/<id>[/workspace]

/** The manager pages under a project: `#/projects/<slug>/<page>`. */
export const PROJECT_PAGES = ['dashboard', 'settings', 'import', 'rounds', 'tasks'] as const;
export type ProjectPage = (typeof PROJECT_PAGES)[number];

export type Route =
  | { name: 'projects' }
  | { name: 'newProject' }
  | { name: 'project'; slug: string }
  | { name: ProjectPage; slug: string }
  | { name: 'task'; id: number }
  | { name: 'workspace'; id: number }
  | { name: 'notFound'; path: string };

function decode(segment: string): string | null {
  try {
    return decodeURIComponent(segment);
  } catch {
    return null;
  }
}

/** Parses `location.hash` (with or without the leading `#`) into a Route. */
export function parseRoute(hash: string): Route {
  let path = hash.startsWith('#') ? hash.slice(1) : hash;
  const query = path.search(/[?]/);
  if (query >= 0) path = path.slice(0, query);
  const parts = path.split('/').filter((p) => p !== '');

  if (parts.length === 0) return { name: 'projects' };

  const [head, arg, ...rest] = parts;
  const page = PROJECT_PAGES.find((p) => p === rest[0]);
  if (head === 'projects' && arg !== undefined && rest.length === 1 && page) {
    const slug = decode(arg);
    if (slug) return { name: page, slug };
  }
  if (parts.length === 1 && head === 'new-project') return { name: 'newProject' };
  if (rest.length === 0 && arg !== undefined) {
    if (head === 'projects') {
      const slug = decode(arg);
      if (slug) return { name: 'project', slug };
    }
    if (head === 'tasks' && /^[1-9]\d*$/.test(arg)) {
      return { name: 'task', id: Number(arg) };
    }
  }
  if (head === 'tasks' && arg !== undefined && /^[1-9]\d*$/.test(arg) && rest.length === 1 && rest[0] === 'workspace') {
    return { name: 'workspace', id: Number(arg) };
  }
  if (parts.length === 1 && head === 'projects') return { name: 'projects' };
  return { name: 'notFound', path: `/${parts.join('/')}` };
}

/** Builds the hash for a route; inverse of parseRoute. */
export const href = {
  projects: (): string => '#/',
  project: (slug: string): string => `#/projects/${encodeURIComponent(slug)}`,
  dashboard: (slug: string): string => `#/projects/${encodeURIComponent(slug)}/dashboard`,
  newProject: (): string => '#/new-project',
  settings: (slug: string): string => `#/projects/${encodeURIComponent(slug)}/settings`,
  import: (slug: string): string => `#/projects/${encodeURIComponent(slug)}/import`,
  rounds: (slug: string): string => `#/projects/${encodeURIComponent(slug)}/rounds`,
  /** The manager's task list, optionally filtered (`?state=…&round=…`). */
  tasks: (slug: string, filter: { state?: string; round?: number } = {}): string => {
    const query = new URLSearchParams();
    if (filter.state) query.set('state', filter.state);
    if (filter.round !== undefined) query.set('round', String(filter.round));
    const qs = query.toString();
    return `#/projects/${encodeURIComponent(slug)}/tasks${qs ? `?${qs}` : ''}`;
  },
  task: (id: number): string => `#/tasks/${id}`,
  workspace: (id: number): string => `#/tasks/${id}/workspace`,
};

/** The query part of a hash (`#/projects/x/tasks?state=assigned` -> state=assigned). */
export function hashQuery(hash: string): URLSearchParams {
  const at = hash.indexOf('?');
  return new URLSearchParams(at < 0 ? '' : hash.slice(at + 1));
}

export function navigate(hash: string): void {
  if (location.hash === hash) {
    window.dispatchEvent(new HashChangeEvent('hashchange'));
  } else {
    location.hash = hash;
  }
}

/** Calls `onRoute` now and on every hash change. Returns a function that stops listening. */
export function startRouter(onRoute: (route: Route) => void): () => void {
  const handler = (): void => onRoute(parseRoute(location.hash));
  window.addEventListener('hashchange', handler);
  handler();
  return () => window.removeEventListener('hashchange', handler);
}
