// #/tasks/<id>/workspace  The annotator's image workspace: the series in axial / sagittal /
// coronal views with a labelmap (one segment per lesion), brush / eraser and window presets.
// Cornerstone comes in its own chunk (dynamic import) so this page paints before it is parsed.

import '../viewer/workspace.css';

import { getProject, getTask, listLesions, type Lesion, type Project, type Task } from '../api';
import { href } from '../router';
import { h } from '../ui/dom';
import { errorBanner, errorMessage, isAbort } from '../ui/feedback';
import { breadcrumbs, setTitle } from '../ui/layout';
import { progressBar } from '../ui/progress';
import { installHook } from '../viewer/hook';
import { LAYOUTS, ORIENTATIONS, applyLayout } from '../viewer/layout';
import { findSeriesUids } from '../viewer/series';
import type { Layout, Orientation, ToolName, ViewerLesion } from '../viewer/types';
import type { Viewer, ViewerElements } from '../viewer/viewer';
import type { PageContext } from './page';

const TOOLS: { name: ToolName; label: string; key: string }[] = [
  { name: 'windowLevel', label: 'Window/level', key: 'w' },
  { name: 'pan', label: 'Pan', key: 'p' },
  { name: 'zoom', label: 'Zoom', key: 'z' },
  { name: 'crosshairs', label: 'Crosshairs', key: 'c' },
  { name: 'brush', label: 'Brush', key: 'b' },
  { name: 'eraser', label: 'Eraser', key: 'e' },
  { name: 'threshold', label: 'Threshold brush', key: 't' },
];

function viewerElements(): ViewerElements {
  const cell = (label: string, cls: string): HTMLElement =>
    h('div', { class: `vw-cell ${cls}` },
      h('div', { class: 'vw-element', oncontextmenu: (e: Event) => e.preventDefault() }),
      h('span', { class: 'vw-label' }, label));
  const cells = Object.fromEntries(
    ORIENTATIONS.map((o) => [o, cell(o[0]!.toUpperCase() + o.slice(1), `vw-${o}`)]),
  ) as Record<Orientation, HTMLElement>;
  const keyCell = cell('Key slice (loading the volume…)', 'vw-key');
  const grid = h('div', { class: 'vw-grid', 'data-layout': '3x1' }, ...ORIENTATIONS.map((o) => cells[o]), keyCell);
  return { grid, cells, keyCell };
}

function toViewerLesions(lesions: Lesion[], project: Project): ViewerLesion[] {
  const colors = new Map(project.lesion_classes.map((c) => [c.name, c.color]));
  return lesions.map((lesion, i) => ({
    id: lesion.id,
    segment: i + 1,
    color: colors.get(lesion.lesion_class) ?? null,
    keySlice: lesion.key_slice,
    maskId: lesion.latest_mask?.id ?? null,
  }));
}

export async function workspacePage(root: HTMLElement, ctx: PageContext, id: number): Promise<void> {
  const hook = installHook();
  const started = performance.now();
  const viewerModule = import('../viewer/viewer'); // starts parsing Cornerstone in parallel
  const fail = (err: unknown): void => {
    if (isAbort(err) || ctx.signal.aborted) return;
    hook.error = errorMessage(err);
    status.replaceChildren(errorBanner(err, 'The workspace could not load'));
    bar.setTone('error');
  };
  viewerModule.catch(() => undefined); // reported where it is awaited

  const [task, lesions]: [Task, Lesion[]] = await Promise.all([
    getTask(id, { signal: ctx.signal }),
    listLesions(id, { signal: ctx.signal }),
  ]);
  const project = await getProject(task.project, { signal: ctx.signal });
  setTitle('Workspace', `Task #${task.id}`);

  const elements = viewerElements();
  const bar = progressBar('Loading the series');
  const status = h('div', { class: 'vw-status' }, bar.el);
  const toolButtons = new Map<ToolName, HTMLButtonElement>();
  const toolbar = h('div', { class: 'vw-toolbar', role: 'toolbar', 'aria-label': 'Tools' });
  const layoutSelect = h('select', { 'aria-label': 'Layout' },
    LAYOUTS.map((l) => h('option', { value: l.value }, l.label)));
  const brushSize = h('input', {
    type: 'range', min: 1, max: 40, step: 1, value: 5, 'aria-label': 'Brush radius (mm)',
  });
  const brushLabel = h('span', { class: 'vw-size' }, '5 mm');
  const lesionSelect = h('select', { 'aria-label': 'Lesion (segment)' });
  const viewerLesions = toViewerLesions(lesions, project);
  if (viewerLesions.length) {
    for (const l of viewerLesions) {
      const lesion = lesions.find((x) => x.id === l.id);
      lesionSelect.append(h('option', { value: l.segment }, `#${l.id} ${lesion?.lesion_class ?? ''}`));
    }
  } else {
    lesionSelect.append(h('option', { value: 1 }, 'Segment 1 (no lesions yet)'));
  }
  const presets = h('div', { class: 'vw-presets' });
  const cine = h('button', { type: 'button', class: 'btn', hidden: true }, 'Play');
  for (const tool of TOOLS) {
    const button = h('button', { type: 'button', class: 'btn vw-tool', 'data-tool': tool.name, disabled: true },
      tool.label);
    toolButtons.set(tool.name, button);
    toolbar.append(button);
  }
  toolbar.append(
    h('label', { class: 'vw-control' }, 'Brush radius ', brushSize, brushLabel),
    h('label', { class: 'vw-control' }, 'Lesion ', lesionSelect),
    h('label', { class: 'vw-control' }, 'Layout ', layoutSelect),
    presets,
    cine,
  );

  root.replaceChildren(
    h('div', { class: 'page-head vw-head' },
      breadcrumbs([
        { label: 'Projects', href: href.projects() },
        { label: project.name, href: href.project(project.slug) },
        { label: `Task #${task.id}`, href: href.task(task.id) },
        { label: 'Workspace' },
      ]),
      h('h1', null, task.series.description || `Series ${task.series.id}`,
        h('span', { class: 'muted small' }, ` · ${task.series.modality}`)),
    ),
    toolbar,
    status,
    h('div', { class: 'vw-stage' }, elements.grid),
  );
  document.getElementById('main')?.classList.add('vw-wide');
  ctx.signal.addEventListener('abort', () => document.getElementById('main')?.classList.remove('vw-wide'));
  applyLayout(elements, '3x1');

  let viewer: Viewer | null = null;
  ctx.signal.addEventListener('abort', () => {
    viewer?.dispose();
    viewer = null;
    if (window.__workspace === hook) delete window.__workspace;
  });

  try {
    const uids = await findSeriesUids(task, ctx.signal);
    const { createViewer } = await viewerModule;
    const keyLesion = viewerLesions.find((l) => l.keySlice !== null);
    viewer = await createViewer({
      elements,
      uids,
      lesions: viewerLesions,
      keySlice: keyLesion?.keySlice ?? null,
      presets: project.window_presets,
      hook,
      signal: ctx.signal,
      onProgress(done, total, phase) {
        bar.set(total > 1 ? done / total : null, total > 1 ? `${phase}: ${done} of ${total} slices` : `${phase}…`);
      },
    });
  } catch (err) {
    fail(err);
    return;
  }
  if (ctx.signal.aborted) return;
  const ready = viewer;
  hook.timings.interactiveMs = performance.now();
  hook.ready = true;
  bar.set(1, `Ready in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  bar.setTone('success');

  const select = (name: ToolName): void => {
    ready.setTool(name);
    for (const [tool, button] of toolButtons) button.setAttribute('aria-pressed', String(tool === name));
  };
  hook.setTool = select;
  for (const [name, button] of toolButtons) {
    const needsLabelmap = name === 'brush' || name === 'eraser' || name === 'threshold';
    const needsVolume = name === 'crosshairs';
    button.disabled = ready.stackOnly && (needsLabelmap || needsVolume);
    button.addEventListener('click', () => select(name));
    const key = TOOLS.find((t) => t.name === name)?.key;
    if (key && !button.disabled) ctx.addShortcut({ key, description: `${button.textContent} tool`, run: () => select(name) });
  }
  select('windowLevel');
  const setSize = (mm: number): void => {
    ready.setBrushSize(mm);
    brushSize.value = String(mm);
    brushLabel.textContent = `${mm} mm`;
  };
  hook.setBrushSize = setSize;
  brushSize.addEventListener('input', () => setSize(Number(brushSize.value)));
  setSize(Number(brushSize.value));
  lesionSelect.addEventListener('change', () => ready.setActiveSegment(Number(lesionSelect.value)));
  layoutSelect.addEventListener('change', () => ready.setLayout(layoutSelect.value as Layout));
  for (const preset of project.window_presets) {
    presets.append(h('button', { type: 'button', class: 'btn btn-small', onclick: () => ready.applyPreset(preset) },
      preset.name));
  }
  if (ready.stackOnly) {
    for (const control of [layoutSelect, brushSize, lesionSelect]) {
      const label = control.closest('label');
      if (label) label.hidden = true;
    }
    presets.hidden = true;
  }
  if (ready.cine) {
    cine.hidden = false;
    let playing = false;
    cine.addEventListener('click', () => {
      playing = !playing;
      ready.playCine(playing);
      cine.textContent = playing ? 'Pause' : 'Play';
    });
  }
}
