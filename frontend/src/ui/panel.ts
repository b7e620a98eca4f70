// A side panel (drawer) over the right edge of the page; one at a time.

import { h, type Child } from './dom';

export interface SidePanel {
  body: HTMLElement;
  setTitle(title: Child | Child[]): void;
  close(): void;
}

let current: SidePanel | null = null;

export function closeSidePanel(): void {
  current?.close();
}

/** Opens the panel (closing any other); Esc, the close button or `signal` close it. */
export function openSidePanel(title: Child | Child[], signal?: AbortSignal): SidePanel {
  current?.close();
  const heading = h('h2', { id: 'side-panel-title' }, title);
  const closeButton = h('button', {
    type: 'button', class: 'btn btn-ghost btn-icon', 'aria-label': 'Close panel', title: 'Close (Esc)',
  }, '×');
  const body = h('div', { class: 'side-panel-body' });
  const panel = h('aside', {
    class: 'side-panel', role: 'dialog', 'aria-modal': 'false', 'aria-labelledby': 'side-panel-title',
    tabindex: -1,
  }, h('header', { class: 'side-panel-head' }, heading, closeButton), body);
  const previousFocus = document.activeElement instanceof HTMLElement ? document.activeElement : null;

  const onKey = (event: KeyboardEvent): void => {
    if (event.key === 'Escape') {
      event.stopPropagation();
      handle.close();
    }
  };
  const handle: SidePanel = {
    body,
    setTitle(next) {
      heading.replaceChildren(...[next].flat().filter((c): c is Node | string => c !== null && c !== undefined && c !== false)
        .map((c) => (c instanceof Node ? c : String(c))));
    },
    close() {
      if (!panel.isConnected) return;
      panel.remove();
      document.removeEventListener('keydown', onKey, true);
      if (current === handle) current = null;
      previousFocus?.focus();
    },
  };
  closeButton.addEventListener('click', () => handle.close());
  document.addEventListener('keydown', onKey, true);
  signal?.addEventListener('abort', () => handle.close(), { once: true });
  document.body.append(panel);
  panel.focus();
  current = handle;
  return handle;
}
