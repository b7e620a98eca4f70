// Keyboard shortcuts: global ones live for the whole session, page ones until the next route.

import { h, kbd } from './dom';

export interface Shortcut {
  key: string;
  description: string;
  run: () => void;
}

/** More rows for the help, grouped (the workspace's shortcuts, which take modifiers). */
export interface HelpSection {
  title: string;
  rows: { keys: string[]; description: string }[];
}

const globalShortcuts: Shortcut[] = [];
let pageShortcuts: Shortcut[] = [];
let helpSections: (() => HelpSection[]) | null = null;
let dialog: HTMLDialogElement | null = null;

export function addGlobalShortcut(shortcut: Shortcut): void {
  globalShortcuts.push(shortcut);
}

export function addPageShortcut(shortcut: Shortcut): void {
  pageShortcuts.push(shortcut);
}

export function clearPageShortcuts(): void {
  pageShortcuts = [];
  helpSections = null;
}

/** Page-scoped like page shortcuts: the help shows these sections until the next route. */
export function setShortcutHelpSections(provider: (() => HelpSection[]) | null): void {
  helpSections = provider;
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

function row(key: string | string[], description: string): HTMLElement {
  const keys = typeof key === 'string' ? [key] : key;
  const cells = keys.flatMap((k, i) => (i === 0 ? [kbd(k)] : [' or ', kbd(k)]));
  return h('tr', null, h('td', null, cells), h('td', null, description));
}

function sectionRows(section: HelpSection): HTMLElement[] {
  return [
    h('tr', null, h('th', { colspan: '2', scope: 'colgroup' }, section.title)),
    ...section.rows.map((r) => row(r.keys, r.description)),
  ];
}

export function showShortcutHelp(): void {
  dialog?.remove();
  const close = h('button', { type: 'button', class: 'btn', onclick: () => dialog?.close() }, 'Close');
  dialog = h('dialog', { class: 'dialog', 'aria-labelledby': 'shortcut-title' },
    h('h2', { id: 'shortcut-title' }, 'Keyboard shortcuts'),
    h('table', { class: 'shortcut-table' },
      h('tbody', null,
        pageShortcuts.map((s) => row(s.key, s.description)),
        (helpSections?.() ?? []).flatMap(sectionRows),
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
