// #/tasks/<id>/workspace  The annotator's image workspace: the series in axial / sagittal /
// coronal views with a labelmap (one segment per lesion), brush / eraser and window presets.
// Cornerstone comes in its own chunk (dynamic import) so this page paints before it is parsed.

import '../viewer/workspace.css';

import {
  acceptTask, fetchMaskData, getProject, getTask, listLesions, listMaskVersions, rejectTask, type Lesion, type Task,
} from '../api';
import type { EffortTool, Point } from '../api/types';
import { href } from '../router';
import { h } from '../ui/dom';
import { errorBanner, errorMessage, isAbort, notice } from '../ui/feedback';
import { breadcrumbs, setTitle } from '../ui/layout';
import { progressBar } from '../ui/progress';
import { showShortcutHelp } from '../ui/shortcuts';
import { installHook } from '../viewer/hook';
import { LAYOUTS, ORIENTATIONS, applyLayout } from '../viewer/layout';
import { prepareSeries } from '../viewer/prepare';
import { drawKeyPreview } from '../viewer/preview';
import { probeRenderingSoon } from '../viewer/warmup';
import type { Layout, Orientation, ToolName } from '../viewer/types';
import type { Viewer, ViewerElements } from '../viewer/viewer';
import { installUnloadGuard } from '../workspace/autosave';
import { DIFFERENCE, differenceLabelmap, replaceSegment } from '../workspace/labelmap';
import { boxFromCorners, boxPrompt, propagatePrompt, type SegmentProgress } from '../workspace/segmentJob';
import { WorkspaceSession } from '../workspace/session';
import { rangeText, SliceRanges, zRangeOf, type RangeEnd } from '../workspace/sliceRange';
import { isMac, installWorkspaceShortcuts, ShortcutRegistry, WORKSPACE_SHORTCUTS } from '../workspace/shortcuts';
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

type PageTool = ToolName | 'box' | 'point';

const EFFORT_TOOL: Partial<Record<ToolName, EffortTool>> = { brush: 'brush', eraser: 'eraser', threshold: 'threshold' };

const SAVE_LABELS: Record<string, string> = {
  saved: 'All changes saved',
  dirty: 'Unsaved changes',
  saving: 'Saving…',
  conflict: 'Conflict',
  error: 'Not saved',
};

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
  // the series' metadata, then its pixels, start downloading now, beside the viewer's chunk
  const series = prepareSeries(task, ctx.signal);
  series.catch(() => undefined); // reported where it is awaited
  const project = await getProject(task.project, { signal: ctx.signal });
  setTitle('Workspace', `Task #${task.id}`);

  const me = ctx.me.username;
  const editable = task.assignee === me && (task.state === 'assigned' || task.state === 'rejected');
  const reviewing = !editable && task.state === 'submitted' && task.assignee !== me
    && (project.my_role === 'reviewer' || project.my_role === 'manager');

  const elements = viewerElements();
  const bar = progressBar('Loading the series');
  const status = h('div', { class: 'vw-status' }, bar.el);
  const toolButtons = new Map<PageTool, HTMLButtonElement>();
  const toolbar = h('div', { class: 'vw-toolbar', role: 'toolbar', 'aria-label': 'Tools' });
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
    toolbar.append(button);
  }
  const undoButton = h('button', { type: 'button', class: 'btn', 'data-action': 'undo', disabled: true, title: 'Undo (Ctrl+Z)' }, 'Undo');
  const redoButton = h('button', { type: 'button', class: 'btn', 'data-action': 'redo', disabled: true, title: 'Redo (Shift+Ctrl+Z)' }, 'Redo');
  const propagateButton = h('button', {
    type: 'button', class: 'btn', 'data-action': 'propagate', disabled: true,
    title: 'Propagate my correction from the axial slice (G)',
  }, 'Propagate my correction');
  const helpButton = h('button', { type: 'button', class: 'btn btn-small', title: 'Keyboard shortcuts (?)' }, '?');
  toolbar.append(
    undoButton, redoButton, propagateButton,
    h('label', { class: 'vw-control' }, 'Brush radius ', brushSize, brushLabel),
    h('label', { class: 'vw-control' }, 'Layout ', layoutSelect),
    presets,
    cine,
    helpButton,
  );

  // Side panel: save state, lesions, segmentation progress, submit / review.
  const saveEl = h('div', { class: 'vw-save', 'data-state': '', role: 'status', 'aria-live': 'polite' });
  const segmentEl = h('div', { class: 'vw-segment', 'data-state': 'idle' });
  const rangeValue = h('span', { class: 'vw-range-value', 'data-testid': 'slice-range' });
  const clearRangeButton = h('button', {
    type: 'button', class: 'btn btn-small', 'data-action': 'clear-range', disabled: true,
    title: "Clear the lesion's slice range (X)",
  }, 'Clear range');
  const rangeEl = h('div', { class: 'vw-range', title: 'Mark the first (I) and last (O) slice of the lesion while scrolling the axial view' },
    'Slice range: ', rangeValue, clearRangeButton);
  const lesionList = h('ul', { class: 'vw-lesions' });
  const classSelect = h('select', { 'aria-label': 'Lesion class' },
    project.lesion_classes.map((c) => h('option', { value: c.name }, c.name)));
  const addButton = h('button', { type: 'button', class: 'btn', 'data-action': 'add-lesion', disabled: true }, 'Add lesion');
  const actionSlot = h('div', { class: 'vw-actions' });
  const messageSlot = h('div', { class: 'vw-messages' });
  if (task.state === 'rejected' && task.last_review) {
    messageSlot.append(h('div', { class: 'banner banner-error vw-review-note', role: 'alert' },
      h('strong', null, `Rejected by ${task.last_review.reviewer}: `),
      h('span', { class: 'vw-review-comment' }, task.last_review.comment || 'No comment given.')));
  }
  if (!editable && !reviewing) {
    messageSlot.append(notice(`Read-only: this task is ${task.state}${task.assignee ? `, assigned to ${task.assignee}` : ''}.`));
  }
  const viewsBox = h('div', { class: 'vw-stage' }, elements.grid);
  const side = h('aside', { class: 'vw-side' },
    messageSlot,
    editable ? saveEl : null,
    h('h2', null, 'Lesions'),
    lesionList,
    editable ? h('div', { class: 'vw-add' }, classSelect, addButton) : null,
    editable ? rangeEl : null,
    segmentEl,
    actionSlot,
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
        h('span', { class: 'muted small' }, ` · ${task.series.modality} · ${task.state}`)),
    ),
    toolbar,
    status,
    h('div', { class: 'vw-body' }, viewsBox, side),
  );
  document.getElementById('main')?.classList.add('vw-wide');
  ctx.signal.addEventListener('abort', () => document.getElementById('main')?.classList.remove('vw-wide'));
  fitToWindow(viewsBox, side, ctx.signal);
  applyLayout(elements, '3x1');

  let viewer: Viewer | null = null;
  let session: WorkspaceSession | null = null;
  const cleanups: (() => void)[] = [];
  ctx.signal.addEventListener('abort', () => {
    for (const cleanup of cleanups.reverse()) cleanup();
    void session?.close();
    session = null;
    viewer?.dispose();
    viewer = null;
    if (window.__workspace === hook) delete window.__workspace;
  });

  const keyLesion = [...lesions].sort((a, b) => a.id - b.id).find((l) => l.key_slice !== null);
  // the key slice on screen while the viewer's chunk still loads
  const preview = series.then(async ({ uids, metadata }) => {
    const canvas = await drawKeyPreview(
      elements.keyCell, uids, metadata, keyLesion?.key_slice ?? null, project.window_presets[0] ?? null, ctx.signal,
    ).catch((err: unknown) => {
      if (isAbort(err)) throw err;
      return null; // the viewer's stack view shows the key slice then, or says what is wrong with it
    });
    if (canvas) {
      hook.timings.firstSliceMs = performance.now();
      performance.mark('viewer:first-slice');
    }
    probeRenderingSoon(); // while the viewer's chunk still loads
    return canvas;
  });
  preview.catch(() => undefined); // reported where it is awaited
  try {
    const { createViewer } = await viewerModule;
    const progressShown = { phase: '', at: 0 };
    // the lesions and masks as they are now (not as the page found them), beside the volume
    const saved = WorkspaceSession.loadSaved(task.id);
    saved.catch(() => undefined); // reported where it is awaited
    viewer = await createViewer({
      elements,
      series: await series,
      preview: await preview,
      lesions: [], // the session composes the labelmap from the saved masks
      keySlice: keyLesion?.key_slice ?? null,
      presets: project.window_presets,
      hook,
      signal: ctx.signal,
      onProgress(done, total, phase) {
        // at most 2 updates a second within a phase: each one is a new frame of the page, and
        // a software-composited page (no GPU) pays for each one while the volume loads
        const now = performance.now();
        if (phase === progressShown.phase && done < total && now - progressShown.at < 500) return;
        progressShown.phase = phase;
        progressShown.at = now;
        // never the indeterminate bar here: its endless animation is a new frame 60 times a second
        bar.set(total > 1 ? done / total : 0, total > 1 ? `${phase}: ${done} of ${total} slices` : `${phase}…`);
      },
    });
    if (!viewer.stackOnly) {
      session = await WorkspaceSession.open({
        task, lesionClasses: project.lesion_classes, host: viewer, editable,
      }, { saved });
      performance.mark('viewer:session-open');
    }
  } catch (err) {
    fail(err);
    return;
  }
  if (ctx.signal.aborted) {
    void session?.close();
    return;
  }
  const ready = viewer;
  const ses = session;

  let mode: PageTool = 'windowLevel';
  let submitted = false;
  const canEdit = (): boolean => editable && !submitted && ses !== null;
  const points = new Map<number, { positive: Point[]; negative: Point[] }>();
  // the lesions' marked slice ranges, sent as z_range with each of their segmentation requests
  const ranges = new SliceRanges();
  let segmenting: AbortController | null = null;

  // ---- tools ----------------------------------------------------------------------------------
  const overlay = h('div', { class: 'vw-prompt-layer', hidden: true, 'data-testid': 'prompt-layer' });
  const rubber = h('div', { class: 'vw-rubber', hidden: true });
  overlay.append(rubber);
  elements.cells.axial.append(overlay);

  const select = (name: PageTool): void => {
    const prompt = name === 'box' || name === 'point';
    ready.setTool(prompt ? 'windowLevel' : name);
    mode = name;
    overlay.hidden = !prompt;
    overlay.dataset.tool = name;
    ses?.setTool(prompt ? null : EFFORT_TOOL[name] ?? null);
    for (const [tool, button] of toolButtons) button.setAttribute('aria-pressed', String(tool === name));
  };
  hook.setTool = (name) => select(name);
  const editingTools = new Set<PageTool>(['brush', 'eraser', 'threshold', 'box', 'point']);
  const updateToolAvailability = (): void => {
    const hasLesion = Boolean(ses?.lesions.selected);
    for (const [name, button] of toolButtons) {
      const needsLabelmap = editingTools.has(name);
      const needsViews = name === 'crosshairs'; // crosshairs join views: a cine has one
      button.disabled = (ready.stackOnly && needsLabelmap) || ((ready.stackOnly || ready.cine) && needsViews)
        || (needsLabelmap && !canEdit())
        || (needsLabelmap && name !== 'box' && !hasLesion);
    }
    if (toolButtons.get(mode)?.disabled) select('windowLevel');
    propagateButton.disabled = !canEdit() || !hasLesion || segmenting !== null;
    addButton.disabled = !canEdit();
    undoButton.disabled = !canEdit() || !ses?.history.canUndo;
    redoButton.disabled = !canEdit() || !ses?.history.canRedo;
  };
  for (const [name, button] of toolButtons) {
    button.addEventListener('click', () => select(name));
    const key = TOOLS.find((t) => t.name === name)?.key;
    if (key) {
      ctx.addShortcut({
        key, description: `${button.textContent} tool`, run: () => {
          if (!button.disabled) select(name);
        },
      });
    }
  }

  // ---- segmentation ---------------------------------------------------------------------------
  const segBar = progressBar('Segmentation');
  const runSegment = async (lesionId: number, asked: Parameters<WorkspaceSession['segment']>[1], what: string): Promise<void> => {
    if (!ses || segmenting) return;
    segmenting = new AbortController();
    updateToolAvailability();
    // the lesion's slice range goes with every request, widened to the slices the prompt needs
    const { prompt, message } = ranges.fit(lesionId, asked);
    const rangeNote = message ? h('p', { class: 'muted small vw-range-note', 'data-testid': 'range-note' }, message) : null;
    const cancel = h('button', { type: 'button', class: 'btn btn-small', onclick: () => segmenting?.abort() }, 'Stop waiting');
    segmentEl.dataset.state = 'running';
    segBar.setTone('normal');
    segBar.set(null, `${what}: queued`);
    segmentEl.replaceChildren(segBar.el, cancel, rangeNote ?? '');
    try {
      const result = await ses.segment(lesionId, prompt, {
        signal: segmenting.signal,
        onProgress: (p: SegmentProgress) => segBar.set(p.fraction, `${what}: ${p.label}`),
      });
      segBar.set(1, `${what}: done, ${result.version.voxel_count} voxels`);
      segBar.setTone('success');
      segmentEl.dataset.state = 'done';
      segmentEl.replaceChildren(segBar.el, rangeNote ?? '');
    } catch (err) {
      segmentEl.dataset.state = 'error';
      segmentEl.replaceChildren(
        isAbort(err) ? notice('Stopped waiting for the segmentation.') : errorBanner(err, `${what} failed`),
        rangeNote ?? '',
      );
    } finally {
      segmenting = null;
      renderLesions();
      updateToolAvailability();
    }
  };
  const axialSlice = (): number => {
    const rect = elements.cells.axial.getBoundingClientRect();
    const ijk = ready.pageToVoxel('axial', [rect.left + rect.width / 2 + window.scrollX, rect.top + rect.height / 2 + window.scrollY]);
    return Math.round(ijk[2]);
  };
  const promptDrag = async (a: [number, number], b: [number, number], negative: boolean): Promise<void> => {
    if (!ses) return;
    const [nx, ny, nz] = ready.dimensions;
    const p0 = ready.pageToVoxel('axial', [a[0] + window.scrollX, a[1] + window.scrollY]);
    const p1 = ready.pageToVoxel('axial', [b[0] + window.scrollX, b[1] + window.scrollY]);
    const k = Math.min(nz - 1, Math.max(0, Math.round(p0[2])));
    if (mode === 'box') {
      const box = boxFromCorners([p0[0], p0[1]], [p1[0], p1[1]], nx, ny);
      if (box[2] - box[0] < 2 || box[3] - box[1] < 2) return; // a click, not a box
      let entry = ses.lesions.selected;
      if (!entry) {
        entry = await ses.addLesion(classSelect.value || undefined);
        ranges.adoptPending(entry.lesion.id);
        ses.select(entry.lesion.id);
      }
      points.delete(entry.lesion.id);
      await runSegment(entry.lesion.id, boxPrompt(k, box), 'Box');
      return;
    }
    const entry = ses.lesions.selected;
    if (!entry) return;
    const box = entry.lesion.box as [number, number, number, number] | null;
    if (!box || entry.lesion.key_slice === null) {
      segmentEl.replaceChildren(notice('Draw a box first: points refine a box prompt.'));
      return;
    }
    const clicks = points.get(entry.lesion.id) ?? { positive: [], negative: [] };
    const point: Point = [Math.round(p1[0]), Math.round(p1[1]), k];
    (negative ? clicks.negative : clicks.positive).push(point);
    points.set(entry.lesion.id, clicks);
    await runSegment(entry.lesion.id, boxPrompt(entry.lesion.key_slice, box, clicks), negative ? 'Negative point' : 'Positive point');
  };
  let dragStart: [number, number] | null = null;
  overlay.addEventListener('mousedown', (e) => {
    if (e.button !== 0) return;
    e.preventDefault();
    e.stopPropagation();
    dragStart = [e.clientX, e.clientY];
  });
  const rectOf = (a: [number, number], b: [number, number]): void => {
    const box = overlay.getBoundingClientRect();
    Object.assign(rubber.style, {
      left: `${Math.min(a[0], b[0]) - box.left}px`, top: `${Math.min(a[1], b[1]) - box.top}px`,
      width: `${Math.abs(a[0] - b[0])}px`, height: `${Math.abs(a[1] - b[1])}px`,
    });
  };
  const onMove = (e: MouseEvent): void => {
    if (!dragStart || mode !== 'box') return;
    rubber.hidden = false;
    rectOf(dragStart, [e.clientX, e.clientY]);
  };
  const onUp = (e: MouseEvent): void => {
    if (!dragStart) return;
    const start = dragStart;
    dragStart = null;
    rubber.hidden = true;
    promptDrag(start, [e.clientX, e.clientY], e.shiftKey || e.altKey).catch((err: unknown) => {
      segmentEl.replaceChildren(errorBanner(err, 'The prompt failed'));
    });
  };
  document.addEventListener('mousemove', onMove);
  document.addEventListener('mouseup', onUp);
  cleanups.push(() => {
    document.removeEventListener('mousemove', onMove);
    document.removeEventListener('mouseup', onUp);
  });
  propagateButton.addEventListener('click', () => {
    const entry = ses?.lesions.selected;
    if (entry) void runSegment(entry.lesion.id, propagatePrompt(axialSlice()), 'Propagate');
  });

  // ---- brush strokes: one undo step and one interaction per press ----------------------------
  const stage = elements.grid;
  let stroking = false;
  stage.addEventListener('mousedown', (e) => {
    if (!ses || !canEdit() || e.button !== 0 || !['brush', 'eraser', 'threshold'].includes(mode) || stroking) return;
    ready.flushEdits(); // anything pending belongs to the previous step
    stroking = true;
    ses.beginStroke(EFFORT_TOOL[mode as ToolName] ?? null, mode === 'eraser' ? 'Eraser' : 'Brush');
  }, { capture: true });
  const endStroke = (): void => {
    if (!stroking || !ses) return;
    window.setTimeout(() => {
      ready.flushEdits();
      ses.endStroke();
      stroking = false;
      updateToolAvailability();
    }, 120);
  };
  document.addEventListener('mouseup', endStroke, true);
  cleanups.push(() => document.removeEventListener('mouseup', endStroke, true));

  // ---- undo / redo / save ---------------------------------------------------------------------
  const undo = (): void => {
    if (!ses || !canEdit() || stroking) return;
    ready.flushEdits();
    ses.undo();
    updateToolAvailability();
  };
  const redo = (): void => {
    if (!ses || !canEdit() || stroking) return;
    ses.redo();
    updateToolAvailability();
  };
  undoButton.addEventListener('click', undo);
  redoButton.addEventListener('click', redo);

  const renderSave = (): void => {
    if (!ses) return;
    const overall = ses.autosave.overall();
    saveEl.dataset.state = overall;
    const children: (HTMLElement | string)[] = [h('span', { class: `vw-save-label vw-save-${overall}` }, SAVE_LABELS[overall] ?? overall)];
    for (const state of ses.autosave.states()) {
      const name = ses.lesions.get(state.lesionId)?.name ?? `lesion ${state.lesionId}`;
      if (state.status === 'conflict') {
        children.push(h('div', { class: 'banner banner-error vw-conflict', role: 'alert' },
          h('p', null, `${name}: ${state.message}`),
          h('button', {
            type: 'button', class: 'btn btn-small', onclick: () => {
              ses.reloadTheirs(state.lesionId).catch((err: unknown) => saveEl.append(errorBanner(err, 'Reload failed')));
            },
          }, 'Reload theirs'),
          h('button', {
            type: 'button', class: 'btn btn-small', onclick: () => {
              ses.overwrite(state.lesionId).catch((err: unknown) => saveEl.append(errorBanner(err, 'Overwrite failed')));
            },
          }, 'Overwrite with mine')));
      } else if (state.status === 'error') {
        children.push(h('div', { class: 'banner banner-error vw-save-error', role: 'alert' },
          h('p', null, `${name}: ${state.message || 'could not be saved'}`),
          h('button', {
            type: 'button', class: 'btn btn-small', onclick: () => void ses.autosave.retry(state.lesionId).catch(() => undefined),
          }, 'Retry')));
      }
    }
    saveEl.replaceChildren(...children);
  };

  // ---- lesions --------------------------------------------------------------------------------
  const pendingDelete = new Set<number>();
  const renderLesions = (): void => {
    if (!ses) {
      lesionList.replaceChildren(h('li', { class: 'muted' }, 'No labelmap for this series.'));
      return;
    }
    const selected = ses.lesions.selected;
    const rows = ses.lesions.entries.map((entry) => {
      const lesionId = entry.lesion.id;
      const row = h('li', {
        class: `vw-lesion${selected?.lesion.id === lesionId ? ' is-selected' : ''}`,
        'data-lesion': lesionId, 'data-segment': entry.segment,
      });
      const swatch = h('span', { class: 'vw-swatch', style: `background:${entry.css}` });
      const name = h('button', {
        type: 'button', class: 'btn-link vw-lesion-name', onclick: () => {
          ses.select(lesionId);
        },
      }, `${entry.name} (#${lesionId})`);
      const classes = h('select', { 'aria-label': `Class of lesion ${lesionId}`, disabled: !canEdit() },
        project.lesion_classes.map((c) => h('option', { value: c.name, selected: c.name === entry.lesion.lesion_class }, c.name)));
      classes.addEventListener('change', () => {
        ses.lesions.setClass(lesionId, classes.value).catch((err: unknown) => row.append(errorBanner(err, 'Could not change the class')));
      });
      const eye = h('button', {
        type: 'button', class: 'btn btn-small', 'data-action': 'toggle-visible', onclick: () => {
          ses.lesions.toggleVisible(lesionId);
        },
      }, entry.visible ? 'Hide' : 'Show');
      const del = h('button', {
        type: 'button', class: `btn btn-small${pendingDelete.has(lesionId) ? ' btn-danger' : ''}`,
        'data-action': 'delete-lesion', disabled: !canEdit(),
        onclick: () => {
          if (!pendingDelete.has(lesionId)) {
            pendingDelete.add(lesionId);
            renderLesions();
            window.setTimeout(() => {
              if (pendingDelete.delete(lesionId)) renderLesions();
            }, 4000);
            return;
          }
          pendingDelete.delete(lesionId);
          ses.deleteLesion(lesionId)
            .then(() => ranges.clear(lesionId))
            .catch((err: unknown) => lesionList.append(errorBanner(err, 'Could not delete the lesion')));
        },
      }, pendingDelete.has(lesionId) ? 'Confirm delete' : 'Delete');
      row.append(swatch, name, classes, eye, del);
      return row;
    });
    lesionList.replaceChildren(...(rows.length ? rows : [h('li', { class: 'muted' }, 'No lesions yet.')]));
  };
  const styleSegments = (): void => {
    if (!ses) return;
    for (const entry of ses.lesions.entries) ready.setSegmentStyle(entry.segment, entry.color, entry.visible);
    const selected = ses.lesions.selected;
    if (selected) ready.setActiveSegment(selected.segment);
  };
  const addLesion = (): void => {
    if (!ses || !canEdit()) return;
    addButton.disabled = true;
    ses.addLesion(classSelect.value || undefined)
      .then((entry) => {
        ranges.adoptPending(entry.lesion.id);
        ses.select(entry.lesion.id);
      })
      .catch((err: unknown) => lesionList.append(errorBanner(err, 'Could not add the lesion')))
      .finally(() => updateToolAvailability());
  };
  addButton.addEventListener('click', addLesion);
  if (ses) {
    cleanups.push(ses.lesions.subscribe(() => {
      renderLesions();
      styleSegments();
      renderSave();
      updateToolAvailability();
    }));
    cleanups.push(ses.autosave.subscribe(() => {
      renderSave();
      updateToolAvailability();
    }));
    if (!ses.lesions.selected && ses.lesions.entries[0]) ses.select(ses.lesions.entries[0].lesion.id);
    if (editable) cleanups.push(installUnloadGuard(ses.autosave));
    hook.lesions = () => ses.lesions.entries.map((e) => ({
      id: e.lesion.id, segment: e.segment, voxels: hook.labelmapVoxels(e.segment),
      lesionClass: e.lesion.lesion_class, visible: e.visible,
    }));
    hook.saveState = () => ses.autosave.overall();
    hook.selectedLesion = () => ses.lesions.selected?.lesion.id ?? null;
  }
  renderLesions();
  styleSegments();
  renderSave();

  // ---- the lesion's slice range ---------------------------------------------------------------
  const rangeOwner = (): number | null => ses?.lesions.selected?.lesion.id ?? null;
  const renderRange = (): void => {
    const marks = ranges.get(rangeOwner());
    ready.setRangeMarks(ses ? marks : null);
    const range = zRangeOf(marks);
    const shown = (z: number | null): string => (z === null ? '?' : String(z + 1));
    rangeValue.textContent = range
      ? rangeText(range)
      : marks.first === null && marks.last === null
        ? 'not marked (I: first slice, O: last)'
        : `${shown(marks.first)}-${shown(marks.last)}`; // one end marked: "33-?" (as the views show it)
    rangeEl.dataset.state = range ? 'complete' : marks.first === null && marks.last === null ? 'none' : 'partial';
    clearRangeButton.disabled = !canEdit() || (marks.first === null && marks.last === null);
    rangeEl.hidden = !ses; // no labelmap (a cine, one image): nothing to segment
  };
  const markRange = (end: RangeEnd): void => {
    if (!canEdit()) return;
    ranges.mark(rangeOwner(), end, Math.min(ready.dimensions[2] - 1, Math.max(0, axialSlice())));
  };
  const clearRange = (): void => {
    if (canEdit()) ranges.clear(rangeOwner());
  };
  clearRangeButton.addEventListener('click', clearRange);
  cleanups.push(ranges.subscribe(renderRange));
  if (ses) cleanups.push(ses.lesions.subscribe(renderRange));
  hook.sliceRange = () => ({ ...ranges.get(rangeOwner()) });
  renderRange();

  // ---- submit / review ------------------------------------------------------------------------
  const submitAction: { run: (() => void) | null } = { run: null };
  if (editable && ses) {
    const submit = h('button', { type: 'button', class: 'btn btn-primary', 'data-action': 'submit' }, 'Submit for review');
    const result = h('div', { class: 'vw-submit-result' });
    const doSubmit = async (): Promise<void> => {
      if (submit.disabled || !canEdit()) return;
      submit.disabled = true;
      result.replaceChildren(notice('Saving and submitting…'));
      try {
        ready.flushEdits();
        const done = await ses.submit();
        submitted = true;
        select('windowLevel');
        updateToolAvailability();
        renderLesions();
        result.replaceChildren(notice(`Submitted for review (${done.state}).`, 'success'));
        result.dataset.state = done.state;
      } catch (err) {
        submit.disabled = false;
        result.replaceChildren(errorBanner(err, 'Could not submit'));
        result.dataset.state = 'error';
      }
    };
    submit.addEventListener('click', () => void doSubmit());
    actionSlot.append(submit, result);
    submitAction.run = () => void doSubmit();
  } else if (reviewing) {
    const comment = h('textarea', { rows: 3, 'aria-label': 'Review comment', placeholder: 'What should the annotator change?' });
    const accept = h('button', { type: 'button', class: 'btn btn-primary', 'data-action': 'accept' }, 'Accept');
    const reject = h('button', { type: 'button', class: 'btn', 'data-action': 'reject' }, 'Reject with comment');
    const result = h('div', { class: 'vw-review-result' });
    const decide = async (decision: 'accept' | 'reject'): Promise<void> => {
      if (decision === 'reject' && !comment.value.trim()) {
        result.replaceChildren(errorBanner(new Error('Say what the annotator should change.'), 'A rejection needs a comment'));
        comment.focus();
        return;
      }
      accept.disabled = true;
      reject.disabled = true;
      try {
        const review = decision === 'accept' ? await acceptTask(task.id, comment.value) : await rejectTask(task.id, comment.value);
        result.dataset.state = review.decision;
        result.replaceChildren(notice(review.decision === 'accept' ? 'Accepted.' : 'Rejected: the task goes back to its annotator.', 'success'));
      } catch (err) {
        accept.disabled = false;
        reject.disabled = false;
        result.replaceChildren(errorBanner(err, 'The review was not saved'));
      }
    };
    // Submitted, model, or their difference: the lesions' latest model masks against the
    // submitted ones (what the annotator added, what they removed, Dice per lesion).
    const views = ['final', 'model', 'difference'] as const;
    const labels = { final: 'Submitted', model: "Model's", difference: 'Difference' };
    const radios = views.map((view) => h('input', {
      type: 'radio', name: 'vw-review-view', value: view, 'data-action': `show-${view}`, checked: view === 'final',
    }));
    const modelInfo = h('div', { class: 'muted small vw-model-info', 'data-state': 'final' }, 'Showing the submitted masks');
    let models: Promise<{ segment: number; mask: Uint8Array | null }[]> | null = null;
    const loadModels = (): Promise<{ segment: number; mask: Uint8Array | null }[]> => {
      if (!ses) return Promise.resolve([]);
      models ??= Promise.all(ses.lesions.entries.map(async (entry) => {
        const versions = await listMaskVersions(entry.lesion.id, { signal: ctx.signal });
        const model = versions.filter((v) => v.source === 'model').sort((a, b) => b.id - a.id)[0];
        const mask = model ? (await fetchMaskData(model.id, { signal: ctx.signal })).voxels : null;
        return { segment: entry.segment, mask };
      }));
      models.catch(() => { models = null; }); // try again next time
      return models;
    };
    const restyle = (): void => {
      if (!ses) return;
      for (const entry of ses.lesions.entries) ready.setSegmentStyle(entry.segment, entry.color, entry.visible);
    };
    const show = async (view: (typeof views)[number]): Promise<void> => {
      if (!ses) return;
      if (view === 'final') {
        ready.setLabelmap(ses.labelmapData);
        modelInfo.dataset.state = 'final';
        modelInfo.replaceChildren('Showing the submitted masks');
        return;
      }
      for (const radio of radios) radio.disabled = true;
      modelInfo.replaceChildren('Loading the model masks…');
      try {
        const masks = await loadModels();
        const current = radios.find((r) => r.checked)?.value;
        if (current !== view) return; // switched meanwhile
        if (view === 'model') {
          const shown = ses.labelmapData.slice();
          for (const { segment, mask } of masks) replaceSegment(shown, segment, mask ?? new Uint8Array(shown.length));
          ready.setLabelmap(shown);
          restyle();
          const found = masks.filter((m) => m.mask).length;
          modelInfo.replaceChildren(`Model masks of ${found} of ${masks.length} lesions`);
        } else {
          const diff = differenceLabelmap(ses.labelmapData, masks);
          ready.setLabelmap(diff.labelmap);
          ready.setSegmentStyle(DIFFERENCE.agree, [150, 160, 175], true);
          ready.setSegmentStyle(DIFFERENCE.added, [40, 200, 90], true);
          ready.setSegmentStyle(DIFFERENCE.removed, [235, 70, 60], true);
          const total = diff.lesions.reduce((t, l) => ({
            agree: t.agree + l.agree, added: t.added + l.added, removed: t.removed + l.removed,
          }), { agree: 0, added: 0, removed: 0 });
          Object.assign(modelInfo.dataset, {
            agree: String(total.agree), added: String(total.added), removed: String(total.removed),
          });
          const swatch = (rgb: string): HTMLElement => h('span', { class: 'vw-swatch', style: `background: rgb(${rgb})` });
          modelInfo.replaceChildren(
            h('div', null, swatch('40, 200, 90'), ` added by the annotator: ${total.added} voxels`),
            h('div', null, swatch('235, 70, 60'), ` removed from the model's: ${total.removed}`),
            h('div', null, swatch('150, 160, 175'), ` in both: ${total.agree}`),
            ...diff.lesions.map((l) => {
              const name = ses.lesions.bySegment(l.segment)?.lesion.lesion_class ?? `lesion ${l.segment}`;
              return h('div', { class: 'vw-dice' }, `${name}: Dice model vs submitted ${l.dice.toFixed(3)}`);
            }),
          );
        }
        modelInfo.dataset.state = view;
      } catch (err) {
        if (isAbort(err)) return;
        modelInfo.replaceChildren(errorBanner(err, 'Could not load the model masks'));
      } finally {
        for (const radio of radios) radio.disabled = false;
      }
    };
    for (const radio of radios) {
      radio.addEventListener('change', () => {
        if (radio.checked) void show(radio.value as (typeof views)[number]);
      });
    }
    accept.addEventListener('click', () => void decide('accept'));
    reject.addEventListener('click', () => void decide('reject'));
    actionSlot.append(h('h2', null, 'Review'), h('p', { class: 'muted' }, `Annotated by ${task.assignee ?? 'nobody'}.`),
      h('fieldset', { class: 'vw-review-view' }, h('legend', null, 'Show'),
        ...radios.map((radio) => h('label', { class: 'vw-control' }, radio, ` ${labels[radio.value as (typeof views)[number]]}`))),
      modelInfo,
      comment, h('div', { class: 'vw-review-buttons' }, accept, reject), result);
  }

  // ---- keyboard shortcuts ---------------------------------------------------------------------
  const registry = new ShortcutRegistry(WORKSPACE_SHORTCUTS, { mac: isMac() });
  if (editable && ses) {
    registry.bind('edit.undo', undo);
    registry.bind('edit.redo', redo);
    registry.bind('edit.save', () => void ses.autosave.flush());
    registry.bind('lesion.add', addLesion);
    registry.bind('tool.box', () => {
      if (!toolButtons.get('box')?.disabled) select('box');
    });
    registry.bind('segment.propagate', () => propagateButton.click());
    registry.bind('range.first', () => markRange('first'));
    registry.bind('range.last', () => markRange('last'));
    registry.bind('range.clear', clearRange);
    const run = submitAction.run;
    if (run) registry.bind('task.submit', run);
  }
  if (ses) {
    registry.bind('lesion.next', () => ses.lesions.selectNext(1));
    registry.bind('lesion.previous', () => ses.lesions.selectNext(-1));
    registry.bind('lesion.toggleVisible', () => {
      const entry = ses.lesions.selected;
      if (entry) ses.lesions.toggleVisible(entry.lesion.id);
    });
  }
  cleanups.push(installWorkspaceShortcuts(registry));
  helpButton.addEventListener('click', () => showShortcutHelp());

  hook.timings.interactiveMs = performance.now();
  performance.mark('viewer:interactive');
  hook.ready = true;
  bar.set(1, `Ready in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  bar.setTone('success');

  select('windowLevel');
  updateToolAvailability();
  const setSize = (mm: number): void => {
    ready.setBrushSize(mm);
    brushSize.value = String(mm);
    brushLabel.textContent = `${mm} mm`;
  };
  hook.setBrushSize = setSize;
  brushSize.addEventListener('input', () => setSize(Number(brushSize.value)));
  setSize(Number(brushSize.value));
  layoutSelect.addEventListener('change', () => ready.setLayout(layoutSelect.value as Layout));
  for (const preset of project.window_presets) {
    presets.append(h('button', { type: 'button', class: 'btn btn-small', onclick: () => ready.applyPreset(preset) },
      preset.name));
  }
  if (!editable) {
    const label = brushSize.closest('label');
    if (label) label.hidden = true;
  }
  if (ready.stackOnly) {
    for (const control of [layoutSelect, brushSize]) {
      const label = control.closest('label');
      if (label) label.hidden = true;
    }
    presets.hidden = true;
  } else if (ready.cine) {
    const label = layoutSelect.closest('label'); // one view of the frames
    if (label) label.hidden = true;
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

/**
 * The views and the side panel fill the window below the toolbar, whose height changes as it
 * wraps: on a 1280 px wide window a fixed offset left the views' bottom 40 px off screen.
 */
function fitToWindow(stage: HTMLElement, side: HTMLElement, signal: AbortSignal): void {
  const fit = (): void => {
    const top = stage.getBoundingClientRect().top + window.scrollY;
    const height = `${Math.max(360, Math.floor(window.innerHeight - top - 12))}px`;
    stage.style.height = height;
    side.style.maxHeight = height;
  };
  fit();
  const above = new ResizeObserver(fit); // the heading, toolbar and status above the views
  for (let el = stage.parentElement?.previousElementSibling; el; el = el.previousElementSibling) above.observe(el);
  window.addEventListener('resize', fit);
  signal.addEventListener('abort', () => {
    above.disconnect();
    window.removeEventListener('resize', fit);
  });
}
