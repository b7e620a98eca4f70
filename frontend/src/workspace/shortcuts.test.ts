import { describe, expect, it, vi } from 'vitest';
import {
  comboMatches, formatCombo, parseCombo, ShortcutRegistry, WORKSPACE_SHORTCUTS, type KeyEventLike,
} from './shortcuts';

function key(k: string, mods: Partial<KeyEventLike> = {}): KeyEventLike & { prevented: boolean } {
  const event = {
    key: k, ctrlKey: false, metaKey: false, shiftKey: false, altKey: false, prevented: false,
    preventDefault() { event.prevented = true; },
    ...mods,
  };
  return event;
}

describe('key combos', () => {
  it('parses modifiers and keys', () => {
    expect(parseCombo('Mod+Shift+Z')).toEqual({ key: 'z', mod: true, shift: true, alt: false });
    expect(parseCombo('ArrowUp')).toEqual({ key: 'ArrowUp', mod: false, shift: false, alt: false });
    expect(parseCombo('Ctrl+Plus').key).toBe('+');
    expect(() => parseCombo('Hyper+X')).toThrow(/unknown modifier/);
  });

  it('matches Ctrl or Cmd for Mod, and Shift exactly for letters', () => {
    const undo = parseCombo('Mod+Z');
    expect(comboMatches(undo, key('z', { ctrlKey: true }))).toBe(true);
    expect(comboMatches(undo, key('z', { metaKey: true }))).toBe(true);
    expect(comboMatches(undo, key('Z', { ctrlKey: true, shiftKey: true }))).toBe(false);
    expect(comboMatches(parseCombo('Mod+Shift+Z'), key('Z', { ctrlKey: true, shiftKey: true }))).toBe(true);
    expect(comboMatches(parseCombo('b'), key('b', { altKey: true }))).toBe(false);
    // punctuation: Shift is part of the character on some layouts
    expect(comboMatches(parseCombo(']'), key(']', { shiftKey: true }))).toBe(true);
  });

  it('formats combos for the help, on a PC and on a Mac', () => {
    expect(formatCombo('Mod+Shift+Z')).toBe('Ctrl+Shift+Z');
    expect(formatCombo('Mod+Shift+Z', true)).toBe('⌘⇧Z');
    expect(formatCombo('ArrowUp')).toBe('↑');
    expect(formatCombo('1..9')).toBe('1–9');
  });
});

describe('ShortcutRegistry', () => {
  it('has no key bound twice in the defaults', () => {
    expect(() => new ShortcutRegistry()).not.toThrow();
    expect(() => new ShortcutRegistry([
      { action: 'tool.brush', keys: ['b'], description: '', group: 'Tools' },
      { action: 'tool.box', keys: ['B'], description: '', group: 'Tools' },
    ])).toThrow(/bound to both/);
  });

  it('runs bound actions only, and prevents the default', () => {
    const registry = new ShortcutRegistry();
    const undo = vi.fn();
    const redo = vi.fn();
    registry.bind('edit.undo', undo);
    registry.bind('edit.redo', redo);
    const e1 = key('z', { ctrlKey: true });
    expect(registry.handle(e1)).toBe(true);
    expect(e1.prevented).toBe(true);
    expect(registry.handle(key('Z', { metaKey: true, shiftKey: true }))).toBe(true);
    expect(registry.handle(key('y', { ctrlKey: true }))).toBe(true);
    expect(undo).toHaveBeenCalledTimes(1);
    expect(redo).toHaveBeenCalledTimes(2);
    const unbound = key('b');
    expect(registry.handle(unbound)).toBe(false); // brush not bound
    expect(unbound.prevented).toBe(false);
  });

  it('passes the digit of a preset key, and tells Shift+L from l', () => {
    const registry = new ShortcutRegistry();
    const preset = vi.fn();
    const next = vi.fn();
    const previous = vi.fn();
    registry.bind('view.preset', preset);
    registry.bind('lesion.next', next);
    registry.bind('lesion.previous', previous);
    registry.handle(key('3'));
    expect(preset).toHaveBeenCalledWith(3);
    expect(registry.handle(key('3', { ctrlKey: true }))).toBe(false);
    registry.handle(key('L', { shiftKey: true }));
    registry.handle(key('l'));
    expect(previous).toHaveBeenCalledTimes(1);
    expect(next).toHaveBeenCalledTimes(1);
  });

  it('ignores auto-repeat except for slice scrolling and Mod combos', () => {
    const registry = new ShortcutRegistry();
    const brush = vi.fn();
    const up = vi.fn();
    const undo = vi.fn();
    registry.bind('tool.brush', brush);
    registry.bind('view.sliceUp', up);
    registry.bind('edit.undo', undo);
    registry.handle(key('b', { repeat: true }));
    registry.handle(key('ArrowUp', { repeat: true }));
    registry.handle(key('z', { ctrlKey: true, repeat: true }));
    expect(brush).not.toHaveBeenCalled();
    expect(up).toHaveBeenCalledTimes(1);
    expect(undo).toHaveBeenCalledTimes(1);
  });

  it('leaves handled events alone and unbinds', () => {
    const registry = new ShortcutRegistry();
    const brush = vi.fn();
    const unbind = registry.bind('tool.brush', brush);
    expect(registry.handle(key('b', { defaultPrevented: true }))).toBe(false);
    unbind();
    expect(registry.handle(key('b'))).toBe(false);
    expect(brush).not.toHaveBeenCalled();
    expect(() => registry.bind('nope' as never, brush)).toThrow(/no shortcut/);
  });

  it('lists only bound actions in the help, grouped in definition order', () => {
    const registry = new ShortcutRegistry(WORKSPACE_SHORTCUTS, { mac: true });
    registry.bind('edit.redo', () => undefined);
    registry.bind('tool.brush', () => undefined);
    registry.bind('edit.undo', () => undefined);
    expect(registry.helpSections()).toEqual([
      { title: 'Tools', rows: [{ keys: ['B'], description: 'Brush' }] },
      { title: 'Edit', rows: [
        { keys: ['⌘Z'], description: 'Undo' },
        { keys: ['⌘⇧Z', '⌘Y'], description: 'Redo' },
      ] },
    ]);
    expect(registry.keysOf('tool.eraser')).toEqual(['E']);
  });

  it('marks and clears the slice range with I, O and X, listed in the help', () => {
    const registry = new ShortcutRegistry();
    const first = vi.fn();
    const last = vi.fn();
    const clear = vi.fn();
    const smaller = vi.fn();
    registry.bind('range.first', first);
    registry.bind('range.last', last);
    registry.bind('range.clear', clear);
    registry.bind('brush.smaller', smaller);
    registry.handle(key('i'));
    registry.handle(key('o'));
    registry.handle(key('o', { repeat: true })); // a held key marks once
    registry.handle(key('x'));
    registry.handle(key('['));
    expect([first, last, clear, smaller].map((f) => f.mock.calls.length)).toEqual([1, 1, 1, 1]);
    expect(registry.handle(key('i', { ctrlKey: true }))).toBe(false);
    expect(registry.helpSections().find((s) => s.title === 'Slice range')).toEqual({
      title: 'Slice range',
      rows: [
        { keys: ['I'], description: "Mark this axial slice as the lesion's first" },
        { keys: ['O'], description: "Mark this axial slice as the lesion's last" },
        { keys: ['X'], description: "Clear the lesion's slice range" },
      ],
    });
  });

  it('listens for keydown on a target', () => {
    const registry = new ShortcutRegistry();
    const save = vi.fn();
    registry.bind('edit.save', save);
    const target = new EventTarget();
    const detach = registry.attach(target);
    const event = Object.assign(new Event('keydown', { cancelable: true }), { key: 's', ctrlKey: true, metaKey: false, shiftKey: false, altKey: false });
    target.dispatchEvent(event);
    expect(save).toHaveBeenCalledTimes(1);
    expect(event.defaultPrevented).toBe(true);
    detach();
    target.dispatchEvent(Object.assign(new Event('keydown'), { key: 's', ctrlKey: true, metaKey: false, shiftKey: false, altKey: false }));
    expect(save).toHaveBeenCalledTimes(1);
  });
});
