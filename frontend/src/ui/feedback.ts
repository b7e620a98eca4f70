// Loading, error and notice blocks. Errors are always visible (role="alert").

import { ApiError } from '../api';
import { h } from './dom';

/** Shows the spinner only after this long: a fast page never flashes it (and a spinning element
 * is a new frame 60 times a second, costly where the page is composited in software). */
export const SPINNER_DELAY_MS = 500;

export function loading(label = 'Loading…'): HTMLElement {
  const el = h('div', { class: 'loading', role: 'status', 'aria-live': 'polite' }, label);
  setTimeout(() => {
    if (el.isConnected) el.prepend(h('span', { class: 'spinner', 'aria-hidden': 'true' }));
  }, SPINNER_DELAY_MS);
  return el;
}

export function isAbort(err: unknown): boolean {
  return err instanceof DOMException && err.name === 'AbortError';
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

export function errorBanner(err: unknown, title = 'Something went wrong'): HTMLElement {
  const status = err instanceof ApiError && err.status > 0 ? err.status : null;
  return h('div', { class: 'banner banner-error', role: 'alert' },
    h('strong', null, title),
    status !== null ? h('span', { class: 'banner-status' }, `HTTP ${status}`) : null,
    h('p', null, errorMessage(err)),
  );
}

export function notice(message: string, kind: 'info' | 'success' = 'info'): HTMLElement {
  return h('div', { class: `banner banner-${kind}`, role: 'status' }, h('p', null, message));
}

export function emptyState(message: string): HTMLElement {
  return h('p', { class: 'empty' }, message);
}
