// Keyboard shortcuts: global ones live for the whole session, page ones until the next route.

import { h, kbd } from './dom';

export interface Shortcut {
  key: string;
  description: string;
  run: () => void;
}

const globalShortcuts: Shortcut[] = [];
let pageShortcuts: Shortcut[] = [];
let dialog: HTMLDialogElement | null = null;

export function addGlobalShortcut(shortcut: Shortcut): void {
  globalShortcuts.push(shortcut);
}

export function addPageShortcut(shortcut: Shortcut): void {
  pageShortcuts.push(shortcut);
}

export function clearPageShortcuts(): void {
  pageShortcuts = [];
}

function isTyping(target: EventTarget | null): boolean {
  if (!(target instanceof HTMLElement)) return false;
  return target.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName);
}

function onKeydown(event: KeyboardEvent): void {
  if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
  if (isTyping(event.target) || dialog?.open) return;
  const match = [...pageShortcuts, ...globalShortcuts].find((s) => s.key === event.key);
  if (!match) return;
  event.preventDefault();
  match.run();
}

function row(key: string, description: string): HTMLElement {
  return h('tr', null, h('td', null, kbd(key)), h('td', null, description));
}

export function showShortcutHelp(): void {
  dialog?.remove();
  const close = h('button', { type: 'button', class: 'btn', onclick: () => dialog?.close() }, 'Close');
  dialog = h('dialog', { class: 'dialog', 'aria-labelledby': 'shortcut-title' },
    h('h2', { id: 'shortcut-title' }, 'Keyboard shortcuts'),
    h('table', { class: 'shortcut-table' },
      h('tbody', null,
        pageShortcuts.map((s) => row(s.key, s.description)),
        globalShortcuts.map((s) => row(s.key, s.description)),
        row('Esc', 'Close this help'),
      ),
    ),
    h('div', { class: 'dialog-actions' }, close),
  );
  dialog.addEventListener('close', () => dialog?.remove());
  dialog.addEventListener('click', (e) => {
    if (e.target === dialog) dialog?.close(); // click on the backdrop
  });
  document.body.appendChild(dialog);
  dialog.showModal();
  close.focus();
}

export function installShortcuts(): void {
  addGlobalShortcut({ key: '?', description: 'Show keyboard shortcuts', run: showShortcutHelp });
  document.addEventListener('keydown', onKeydown);
}
