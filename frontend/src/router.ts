// Hash routing: #/ , #/projects/<slug> , #/projects/<slug>/dashboard , #/tasks/<id>

export type Route =
  | { name: 'projects' }
  | { name: 'project'; slug: string }
  | { name: 'dashboard'; slug: string }
  | { name: 'task'; id: number }
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
  if (head === 'projects' && arg !== undefined && rest.length === 1 && rest[0] === 'dashboard') {
    const slug = decode(arg);
    if (slug) return { name: 'dashboard', slug };
  }
  if (rest.length === 0 && arg !== undefined) {
    if (head === 'projects') {
      const slug = decode(arg);
      if (slug) return { name: 'project', slug };
    }
    if (head === 'tasks' && /^[1-9]\d*$/.test(arg)) {
      return { name: 'task', id: Number(arg) };
    }
  }
  if (parts.length === 1 && head === 'projects') return { name: 'projects' };
  return { name: 'notFound', path: `/${parts.join('/')}` };
}

/** Builds the hash for a route; inverse of parseRoute. */
export const href = {
  projects: (): string => '#/',
  project: (slug: string): string => `#/projects/${encodeURIComponent(slug)}`,
  dashboard: (slug: string): string => `#/projects/${encodeURIComponent(slug)}/dashboard`,
  task: (id: number): string => `#/tasks/${id}`,
};

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
