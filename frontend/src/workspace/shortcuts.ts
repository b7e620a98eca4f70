// Keyboard shortcuts of the annotation workspace.
//
// `WORKSPACE_SHORTCUTS` names every action and its default keys; the viewer binds the actions
// it implements (`registry.bind('undo', () => ...)`) and only bound actions fire or appear in
// the help. Unlike the app-wide shortcuts (ui/shortcuts.ts: single keys), these take modifiers:
// "Mod" is Ctrl, or Cmd on a Mac. The help overlay of ui/shortcuts.ts shows `helpSections()`
// (see `installWorkspaceShortcuts`).

import { setShortcutHelpSections, type HelpSection } from '../ui/shortcuts';

export type WorkspaceAction =
  | 'tool.box' | 'tool.pointPositive' | 'tool.pointNegative' | 'tool.brush' | 'tool.eraser'
  | 'tool.threshold' | 'brush.smaller' | 'brush.larger'
  | 'edit.undo' | 'edit.redo' | 'edit.save'
  | 'segment.run' | 'segment.propagate' | 'segment.cancel'
  | 'range.first' | 'range.last' | 'range.clear'
  | 'lesion.add' | 'lesion.next' | 'lesion.previous' | 'lesion.toggleVisible' | 'lesion.showAll'
  | 'lesion.cycleClass' | 'lesion.delete'
  | 'view.sliceUp' | 'view.sliceDown' | 'view.keySlice' | 'view.reset' | 'view.preset'
  | 'task.submit';

export interface ShortcutDef {
  action: WorkspaceAction;
  /** "Mod+Shift+Z", "b", "ArrowUp", "1..9" (a digit range: the digit is passed to the handler). */
  keys: string[];
  description: string;
  group: 'Tools' | 'Edit' | 'Segmentation' | 'Slice range' | 'Lesions' | 'View' | 'Task';
}

export const WORKSPACE_SHORTCUTS: readonly ShortcutDef[] = [
  { action: 'tool.box', keys: ['r'], description: 'Box prompt on the key slice', group: 'Tools' },
  { action: 'tool.pointPositive', keys: ['p'], description: 'Positive point (inside the lesion)', group: 'Tools' },
  { action: 'tool.pointNegative', keys: ['n'], description: 'Negative point (outside the lesion)', group: 'Tools' },
  { action: 'tool.brush', keys: ['b'], description: 'Brush', group: 'Tools' },
  { action: 'tool.eraser', keys: ['e'], description: 'Eraser', group: 'Tools' },
  { action: 'tool.threshold', keys: ['t'], description: 'Threshold brush', group: 'Tools' },
  { action: 'brush.smaller', keys: ['['], description: 'Smaller brush', group: 'Tools' },
  { action: 'brush.larger', keys: [']'], description: 'Larger brush', group: 'Tools' },
  { action: 'edit.undo', keys: ['Mod+Z'], description: 'Undo', group: 'Edit' },
  { action: 'edit.redo', keys: ['Mod+Shift+Z', 'Mod+Y'], description: 'Redo', group: 'Edit' },
  { action: 'edit.save', keys: ['Mod+S'], description: 'Save now', group: 'Edit' },
  { action: 'segment.run', keys: ['Enter'], description: 'Segment the lesion from its prompt', group: 'Segmentation' },
  { action: 'segment.propagate', keys: ['g'], description: 'Propagate my correction from this slice', group: 'Segmentation' },
  { action: 'segment.cancel', keys: ['Escape'], description: 'Stop waiting for the segmentation', group: 'Segmentation' },
  // I / O: "in" and "out" points, as video editors mark a clip's first and last frame
  { action: 'range.first', keys: ['i'], description: "Mark this axial slice as the lesion's first", group: 'Slice range' },
  { action: 'range.last', keys: ['o'], description: "Mark this axial slice as the lesion's last", group: 'Slice range' },
  { action: 'range.clear', keys: ['x'], description: "Clear the lesion's slice range", group: 'Slice range' },
  { action: 'lesion.add', keys: ['a'], description: 'New lesion', group: 'Lesions' },
  { action: 'lesion.next', keys: ['l'], description: 'Next lesion', group: 'Lesions' },
  { action: 'lesion.previous', keys: ['Shift+L'], description: 'Previous lesion', group: 'Lesions' },
  { action: 'lesion.toggleVisible', keys: ['h'], description: 'Hide / show the lesion', group: 'Lesions' },
  { action: 'lesion.showAll', keys: ['Shift+H'], description: 'Show all lesions / only this one', group: 'Lesions' },
  { action: 'lesion.cycleClass', keys: ['c'], description: 'Next lesion class', group: 'Lesions' },
  { action: 'lesion.delete', keys: ['Delete'], description: 'Delete the lesion', group: 'Lesions' },
  { action: 'view.sliceUp', keys: ['ArrowUp'], description: 'Next slice', group: 'View' },
  { action: 'view.sliceDown', keys: ['ArrowDown'], description: 'Previous slice', group: 'View' },
  { action: 'view.keySlice', keys: ['k'], description: "Go to the lesion's key slice", group: 'View' },
  { action: 'view.reset', keys: ['0'], description: 'Reset zoom and pan', group: 'View' },
  { action: 'view.preset', keys: ['1..9'], description: 'Window preset 1-9', group: 'View' },
  { action: 'task.submit', keys: ['Mod+Enter'], description: 'Submit the task for review', group: 'Task' },
];

export interface KeyCombo {
  /** Lower-cased for single characters ("z", "["), as written otherwise ("ArrowUp"). */
  key: string;
  mod: boolean;
  shift: boolean;
  alt: boolean;
}

/** The part of a KeyboardEvent the registry reads. */
export interface KeyEventLike {
  key: string;
  ctrlKey: boolean;
  metaKey: boolean;
  shiftKey: boolean;
  altKey: boolean;
  repeat?: boolean;
  target?: EventTarget | null;
  defaultPrevented?: boolean;
  preventDefault?: () => void;
}

function normalKey(key: string): string {
  return key.length === 1 ? key.toLowerCase() : key;
}

export function parseCombo(text: string): KeyCombo {
  const parts = text.split('+');
  // "Mod++" would be ambiguous; "+" is written "Plus".
  const key = parts.pop();
  if (!key) throw new Error(`no key in shortcut ${JSON.stringify(text)}`);
  const combo: KeyCombo = { key: normalKey(key === 'Plus' ? '+' : key), mod: false, shift: false, alt: false };
  for (const part of parts) {
    const name = part.toLowerCase();
    if (name === 'mod' || name === 'ctrl' || name === 'cmd') combo.mod = true;
    else if (name === 'shift') combo.shift = true;
    else if (name === 'alt' || name === 'option') combo.alt = true;
    else throw new Error(`unknown modifier ${JSON.stringify(part)} in shortcut ${JSON.stringify(text)}`);
  }
  return combo;
}

/** Letters and named keys compare Shift; for punctuation Shift is part of the character ("?", "]"). */
function shiftMatters(key: string): boolean {
  return key.length > 1 || /^[a-z0-9]$/.test(key);
}

export function comboMatches(combo: KeyCombo, event: KeyEventLike): boolean {
  if (normalKey(event.key) !== combo.key) return false;
  if ((event.ctrlKey || event.metaKey) !== combo.mod) return false;
  if (event.altKey !== combo.alt) return false;
  if (shiftMatters(combo.key) && event.shiftKey !== combo.shift) return false;
  return true;
}

const KEY_NAMES: Record<string, string> = {
  ArrowUp: '↑', ArrowDown: '↓', ArrowLeft: '←', ArrowRight: '→', Escape: 'Esc', Delete: 'Del', ' ': 'Space',
};

/** "Ctrl+Shift+Z" (or "⌘⇧Z" on a Mac) for the help and tooltips. */
export function formatCombo(text: string, mac = false): string {
  if (text === '1..9') return '1–9';
  const combo = parseCombo(text);
  const key = KEY_NAMES[combo.key] ?? (combo.key.length === 1 ? combo.key.toUpperCase() : combo.key);
  if (mac) return `${combo.mod ? '⌘' : ''}${combo.alt ? '⌥' : ''}${combo.shift ? '⇧' : ''}${key}`;
  return [combo.mod && 'Ctrl', combo.alt && 'Alt', combo.shift && 'Shift', key].filter(Boolean).join('+');
}

function isTyping(target: EventTarget | null | undefined): boolean {
  if (typeof HTMLElement === 'undefined' || !(target instanceof HTMLElement)) return false;
  return target.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName);
}

export type ShortcutHandler = (arg?: number) => void;

interface Binding {
  def: ShortcutDef;
  combos: KeyCombo[];
  digits: boolean;
  run: ShortcutHandler;
}

export class ShortcutRegistry {
  private readonly defs: Map<WorkspaceAction, ShortcutDef>;
  private readonly bindings = new Map<WorkspaceAction, Binding>();
  readonly mac: boolean;

  constructor(defs: readonly ShortcutDef[] = WORKSPACE_SHORTCUTS, { mac = false }: { mac?: boolean } = {}) {
    this.defs = new Map(defs.map((d) => [d.action, d]));
    this.mac = mac;
    const seen = new Map<string, WorkspaceAction>();
    for (const def of defs) {
      for (const key of def.keys) {
        const id = key === '1..9' ? key : JSON.stringify(parseCombo(key));
        const other = seen.get(id);
        if (other) throw new Error(`${key} is bound to both ${other} and ${def.action}`);
        seen.set(id, def.action);
      }
    }
  }

  /** Makes an action live; returns the unbinder. */
  bind(action: WorkspaceAction, run: ShortcutHandler): () => void {
    const def = this.defs.get(action);
    if (!def) throw new Error(`no shortcut is defined for ${action}`);
    const binding: Binding = {
      def,
      combos: def.keys.filter((k) => k !== '1..9').map(parseCombo),
      digits: def.keys.includes('1..9'),
      run,
    };
    this.bindings.set(action, binding);
    return () => {
      if (this.bindings.get(action) === binding) this.bindings.delete(action);
    };
  }

  /** The keys of an action for a tooltip ("Brush (B)"); empty when it has none. */
  keysOf(action: WorkspaceAction): string[] {
    return (this.defs.get(action)?.keys ?? []).map((k) => formatCombo(k, this.mac));
  }

  /** The bound action a key event stands for, with its digit for "1..9" actions. */
  match(event: KeyEventLike): { action: WorkspaceAction; arg?: number } | null {
    for (const [action, binding] of this.bindings) {
      if (binding.combos.some((c) => comboMatches(c, event))) return { action };
      if (binding.digits && /^[1-9]$/.test(event.key) && !event.ctrlKey && !event.metaKey && !event.altKey) {
        return { action, arg: Number(event.key) };
      }
    }
    return null;
  }

  /**
   * Runs the action of a keydown; true when one ran (the event's default is then prevented).
   * Keys typed into a field are left alone, and so are Mod-less keys held down (auto-repeat),
   * except the slice keys, which scroll.
   */
  handle(event: KeyEventLike): boolean {
    if (event.defaultPrevented || isTyping(event.target)) return false;
    const found = this.match(event);
    if (!found) return false;
    const binding = this.bindings.get(found.action)!;
    const repeats = found.action === 'view.sliceUp' || found.action === 'view.sliceDown' || binding.combos.some((c) => c.mod);
    if (event.repeat && !repeats) return false;
    event.preventDefault?.();
    binding.run(found.arg);
    return true;
  }

  /** Listens for keydown on `target` (capture: before the app-wide shortcuts). */
  attach(target: Pick<EventTarget, 'addEventListener' | 'removeEventListener'>): () => void {
    const listener = (event: Event): void => {
      this.handle(event as KeyboardEvent);
    };
    target.addEventListener('keydown', listener, { capture: true });
    return () => target.removeEventListener('keydown', listener, { capture: true });
  }

  /** The help overlay's content: the bound actions by group, in definition order. */
  helpSections(): HelpSection[] {
    const sections = new Map<string, HelpSection>();
    for (const def of this.defs.values()) {
      if (!this.bindings.has(def.action)) continue;
      let section = sections.get(def.group);
      if (!section) {
        section = { title: def.group, rows: [] };
        sections.set(def.group, section);
      }
      section.rows.push({ keys: def.keys.map((k) => formatCombo(k, this.mac)), description: def.description });
    }
    return [...sections.values()];
  }
}

/** True on Apple platforms, where "Mod" is Cmd. */
export function isMac(): boolean {
  return typeof navigator !== 'undefined' && /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent);
}

/**
 * Attaches the registry to the window and shows its bound actions in the "?" help of
 * ui/shortcuts.ts (cleared on the next route). Returns the detacher.
 */
export function installWorkspaceShortcuts(registry: ShortcutRegistry, target: Pick<EventTarget, 'addEventListener' | 'removeEventListener'> = window): () => void {
  const detach = registry.attach(target);
  setShortcutHelpSections(() => registry.helpSections());
  return () => {
    detach();
    setShortcutHelpSections(null);
  };
}
