// The tool bar: the viewer's tools and the page's prompt tools (one pressed at a time), undo /
// redo / propagate, brush radius, layout, window presets and cine playback. The buttons exist
// (disabled) before the viewer loads; wireTools() and wireViewControls() bring them to life.

import { h } from '../../ui/dom';
import type { Shortcut } from '../../ui/shortcuts';
import { LAYOUTS } from '../../viewer/layout';
import type { Layout, ToolName, WindowPresetLike, WorkspaceHook } from '../../viewer/types';
import type { Viewer } from '../../viewer/viewer';
import { EFFORT_TOOL, type PageTool, type WorkspaceState } from './state';

const TOOLS: { name: ToolName; label: string; key: string }[] = [
  { name: 'windowLevel', label: 'Window/level', key: 'w' },
  { name: 'pan', label: 'Pan', key: 'p' },
  { name: 'zoom', label: 'Zoom', key: 'z' },
  { name: 'crosshairs', label: 'Crosshairs', key: 'c' },
  { name: 'brush', label: 'Brush', key: 'b' },
  { name: 'eraser', label: 'Eraser', key: 'e' },
  { name: 'threshold', label: 'Threshold brush', key: 't' },
];

/** The tools that change the labelmap: they need one, and an editable task. */
const EDITING_TOOLS = new Set<PageTool>(['brush', 'eraser', 'threshold', 'box', 'point']);

export interface ToolbarView {
  el: HTMLElement;
  toolButtons: Map<PageTool, HTMLButtonElement>;
  undoButton: HTMLButtonElement;
  redoButton: HTMLButtonElement;
  propagateButton: HTMLButtonElement;
  helpButton: HTMLButtonElement;
  brushSize: HTMLInputElement;
  brushLabel: HTMLElement;
  layoutSelect: HTMLSelectElement;
  presets: HTMLElement;
  cine: HTMLButtonElement;
}

export function toolbarView(): ToolbarView {
  const toolButtons = new Map<PageTool, HTMLButtonElement>();
  const el = h('div', { class: 'vw-toolbar', role: 'toolbar', 'aria-label': 'Tools' });
  const layoutSelect = h('select', { 'aria-label': 'Layout' },
    LAYOUTS.map((l) => h('option', { value: l.value }, l.label)));
  const brushSize = h('input', {
    type: 'range', min: 1, max: 40, step: 1, value: 5, 'aria-label': 'Brush radius (mm)',
  });
  const brushLabel = h('span', { class: 'vw-size' }, '5 mm');
  const presets = h('div', { class: 'vw-presets' });
  const cine = h('button', { type: 'button', class: 'btn', hidden: true, 'data-action': 'cine' }, 'Play');
  const pageTools: { name: PageTool; label: string; title: string }[] = [
    ...TOOLS.map((t) => ({ name: t.name as PageTool, label: t.label, title: `${t.label} (${t.key.toUpperCase()})` })),
    { name: 'box', label: 'Box', title: 'Box prompt: drag a rectangle on the axial view (R)' },
    { name: 'point', label: 'Point', title: 'Refine: click inside the lesion, Shift+click outside it' },
  ];
  for (const tool of pageTools) {
    const button = h('button', {
      type: 'button', class: 'btn vw-tool', 'data-tool': tool.name, disabled: true, title: tool.title,
    }, tool.label);
    toolButtons.set(tool.name, button);
    el.append(button);
  }
  const undoButton = h('button', { type: 'button', class: 'btn', 'data-action': 'undo', disabled: true, title: 'Undo (Ctrl+Z)' }, 'Undo');
  const redoButton = h('button', { type: 'button', class: 'btn', 'data-action': 'redo', disabled: true, title: 'Redo (Shift+Ctrl+Z)' }, 'Redo');
  const propagateButton = h('button', {
    type: 'button', class: 'btn', 'data-action': 'propagate', disabled: true,
    title: 'Propagate my correction from the axial slice (G)',
  }, 'Propagate my correction');
  const helpButton = h('button', { type: 'button', class: 'btn btn-small', title: 'Keyboard shortcuts (?)' }, '?');
  el.append(
    undoButton, redoButton, propagateButton,
    h('label', { class: 'vw-control' }, 'Brush radius ', brushSize, brushLabel),
    h('label', { class: 'vw-control' }, 'Layout ', layoutSelect),
    presets,
    cine,
    helpButton,
  );
  return {
    el, toolButtons, undoButton, redoButton, propagateButton, helpButton, brushSize, brushLabel, layoutSelect, presets, cine,
  };
}

export interface ToolControls {
  select(name: PageTool): void;
  /** Enables the buttons that the viewer, the task and the selected lesion allow now. */
  update(): void;
}

/**
 * The tool buttons and their single-letter keys. `showPrompt` shows the prompt layer over the
 * axial view for the prompt tools (the viewer's window/level stays under it).
 */
export function wireTools(
  state: WorkspaceState,
  view: ToolbarView,
  showPrompt: (tool: PageTool) => void,
  addShortcut: (shortcut: Shortcut) => void,
  hook: WorkspaceHook,
): ToolControls {
  const { viewer } = state;
  const { toolButtons } = view;
  const select = (name: PageTool): void => {
    const prompt = name === 'box' || name === 'point';
    viewer.setTool(prompt ? 'windowLevel' : name);
    state.mode = name;
    showPrompt(name);
    state.session?.setTool(prompt ? null : EFFORT_TOOL[name] ?? null);
    for (const [tool, button] of toolButtons) button.setAttribute('aria-pressed', String(tool === name));
  };
  hook.setTool = (name) => select(name);
  const update = (): void => {
    const ses = state.session;
    const canEdit = state.canEdit();
    const hasLesion = Boolean(ses?.lesions.selected);
    for (const [name, button] of toolButtons) {
      const needsLabelmap = EDITING_TOOLS.has(name);
      const needsViews = name === 'crosshairs'; // crosshairs join views: a cine has one
      button.disabled = (viewer.stackOnly && needsLabelmap) || ((viewer.stackOnly || viewer.cine) && needsViews)
        || (needsLabelmap && !canEdit)
        || (needsLabelmap && name !== 'box' && !hasLesion);
    }
    if (toolButtons.get(state.mode)?.disabled) select('windowLevel');
    view.propagateButton.disabled = !state.canEdit() || !hasLesion || state.segmenting !== null;
    view.undoButton.disabled = !state.canEdit() || !ses?.history.canUndo;
    view.redoButton.disabled = !state.canEdit() || !ses?.history.canRedo;
  };
  for (const [name, button] of toolButtons) {
    button.addEventListener('click', () => select(name));
    const key = TOOLS.find((t) => t.name === name)?.key;
    if (key) {
      addShortcut({
        key, description: `${button.textContent} tool`, run: () => {
          if (!button.disabled) select(name);
        },
      });
    }
  }
  return { select, update };
}

/** Brush radius, layout, window presets and cine: what the viewer offers for this series. */
export function wireViewControls(
  viewer: Viewer, view: ToolbarView, presets: WindowPresetLike[], editable: boolean, hook: WorkspaceHook,
): void {
  const { brushSize, layoutSelect, cine } = view;
  const setSize = (mm: number): void => {
    viewer.setBrushSize(mm);
    brushSize.value = String(mm);
    view.brushLabel.textContent = `${mm} mm`;
  };
  hook.setBrushSize = setSize;
  brushSize.addEventListener('input', () => setSize(Number(brushSize.value)));
  setSize(Number(brushSize.value));
  layoutSelect.addEventListener('change', () => viewer.setLayout(layoutSelect.value as Layout));
  for (const preset of presets) {
    view.presets.append(h('button', { type: 'button', class: 'btn btn-small', onclick: () => viewer.applyPreset(preset) },
      preset.name));
  }
  const hideLabelOf = (control: HTMLElement): void => {
    const label = control.closest('label');
    if (label) label.hidden = true;
  };
  if (!editable) hideLabelOf(brushSize);
  if (viewer.stackOnly) {
    for (const control of [layoutSelect, brushSize]) hideLabelOf(control);
    view.presets.hidden = true;
  } else if (viewer.cine) {
    hideLabelOf(layoutSelect); // one view of the frames
  }
  if (viewer.cine) {
    cine.hidden = false;
    let playing = false;
    cine.addEventListener('click', () => {
      playing = !playing;
      viewer.playCine(playing);
      cine.textContent = playing ? 'Pause' : 'Play';
    });
  }
}
