// #/tasks/<id>/workspace  The annotator's image workspace: the series in axial / sagittal /
// coronal views with a labelmap (one segment per lesion), brush / eraser and window presets.
// Cornerstone comes in its own chunk (dynamic import) so this page paints before it is parsed.
//
// This module only composes: the panels (workspace/panels/) build their own elements and share
// one WorkspaceState; the state modules under them (workspace/*.ts) know nothing of the DOM.
// The layers go one way: api -> workspace state -> panels -> this page.

import '../viewer/workspace.css';

import { getProject, getTask, listLesions, type Lesion, type Task } from '../api';
import { h } from '../ui/dom';
import { errorBanner, errorMessage, isAbort } from '../ui/feedback';
import { setTitle } from '../ui/layout';
import { progressBar } from '../ui/progress';
import { showShortcutHelp } from '../ui/shortcuts';
import { installHook } from '../viewer/hook';
import { applyLayout } from '../viewer/layout';
import { prepareSeries } from '../viewer/prepare';
import { installUnloadGuard } from '../workspace/autosave';
import { wireEditing } from '../workspace/panels/editing';
import { lesionView, wireLesions } from '../workspace/panels/lesionPanel';
import { openWorkspace, type Opened } from '../workspace/panels/loading';
import { rangeView, wireRange } from '../workspace/panels/rangePanel';
import { wireReview } from '../workspace/panels/reviewPanel';
import { saveStatus, saveView } from '../workspace/panels/saveStatus';
import { promptLayer, segmentView, wireSegmentation } from '../workspace/panels/segmentPanel';
import { fitToWindow, pageHead, sidePanel, taskMessages, viewerElements, widenMain } from '../workspace/panels/shell';
import { axialSlice, createState, keyLesionOf, taskAccess, type Refresh } from '../workspace/panels/state';
import { wireSubmit } from '../workspace/panels/submitPanel';
import { toolbarView, wireTools, wireViewControls } from '../workspace/panels/toolbar';
import { isMac, installWorkspaceShortcuts, ShortcutRegistry, WORKSPACE_SHORTCUTS } from '../workspace/shortcuts';
import type { PageContext } from './page';

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
  const { editable, reviewing } = taskAccess(task, project, ctx.me.username);

  // ---- the page, painted before the viewer loads ----------------------------------------------
  const elements = viewerElements();
  const bar = progressBar('Loading the series');
  const status = h('div', { class: 'vw-status' }, bar.el);
  const toolbar = toolbarView();
  const saveEl = saveView();
  const segmentEl = segmentView();
  const range = rangeView();
  const lesionEls = lesionView(project.lesion_classes);
  const actionSlot = h('div', { class: 'vw-actions' });
  const viewsBox = h('div', { class: 'vw-stage' }, elements.grid);
  const side = sidePanel({
    messages: taskMessages(task, editable, reviewing),
    save: editable ? saveEl : null,
    lesions: lesionEls.list,
    addLesion: editable ? lesionEls.addRow : null,
    range: editable ? range.el : null,
    segment: segmentEl,
    actions: actionSlot,
  });
  root.replaceChildren(pageHead(task, project), toolbar.el, status, h('div', { class: 'vw-body' }, viewsBox, side));
  widenMain(ctx.signal);
  fitToWindow(viewsBox, side, ctx.signal);
  applyLayout(elements, '3x1');

  // ---- the viewer and the session -------------------------------------------------------------
  const opened: Opened = { viewer: null, session: null };
  const cleanups: (() => void)[] = [];
  ctx.signal.addEventListener('abort', () => {
    for (const cleanup of cleanups.reverse()) cleanup();
    void opened.session?.close();
    opened.session = null;
    opened.viewer?.dispose();
    opened.viewer = null;
    if (window.__workspace === hook) delete window.__workspace;
  });
  try {
    await openWorkspace({
      viewerModule, series, task, project, keyLesion: keyLesionOf(lesions), editable, elements, hook, bar, signal: ctx.signal,
    }, opened);
  } catch (err) {
    fail(err);
    return;
  }
  if (ctx.signal.aborted) {
    void opened.session?.close();
    return;
  }
  const ready = opened.viewer as NonNullable<Opened['viewer']>;
  const ses = opened.session;
  const state = createState(task, ready, ses, editable, (cleanup) => cleanups.push(cleanup));

  // ---- the panels -----------------------------------------------------------------------------
  // bound once the tool bar and the lesion list exist: the panels below call them only later
  const refresh: Refresh = {
    tools: () => {
      tools.update();
      lesionPanel.update();
    },
    lesions: () => lesionPanel.render(),
  };
  const layer = promptLayer(elements.cells.axial);
  const tools = wireTools(state, toolbar, layer.show, ctx.addShortcut, hook);
  wireSegmentation({
    state, segmentEl, layer, axialCell: elements.cells.axial, propagateButton: toolbar.propagateButton,
    lesionClass: () => lesionEls.classSelect.value || undefined, refresh,
  });
  const editing = wireEditing({ state, stage: elements.grid, undoButton: toolbar.undoButton, redoButton: toolbar.redoButton, refresh });
  const renderSave = saveStatus(saveEl, ses);
  const lesionPanel = wireLesions(state, lesionEls, project.lesion_classes, refresh);
  if (ses) {
    state.onClose(ses.lesions.subscribe(() => {
      lesionPanel.render();
      lesionPanel.style();
      renderSave();
      refresh.tools();
    }));
    state.onClose(ses.autosave.subscribe(() => {
      renderSave();
      refresh.tools();
    }));
    if (!ses.lesions.selected && ses.lesions.entries[0]) ses.select(ses.lesions.entries[0].lesion.id);
    if (editable) state.onClose(installUnloadGuard(ses.autosave));
    hook.lesions = () => ses.lesions.entries.map((e) => ({
      id: e.lesion.id, segment: e.segment, voxels: hook.labelmapVoxels(e.segment),
      lesionClass: e.lesion.lesion_class, visible: e.visible,
    }));
    hook.saveState = () => ses.autosave.overall();
    hook.selectedLesion = () => ses.lesions.selected?.lesion.id ?? null;
  }
  lesionPanel.render();
  lesionPanel.style();
  renderSave();
  const ranges = wireRange(state, range, () => axialSlice(ready, elements.cells.axial), hook);
  const submit = wireSubmit(state, actionSlot, () => {
    tools.select('windowLevel');
    refresh.tools();
    refresh.lesions();
  });
  if (!submit && reviewing) wireReview(state, actionSlot, ctx.signal);

  // ---- keyboard shortcuts ---------------------------------------------------------------------
  const registry = new ShortcutRegistry(WORKSPACE_SHORTCUTS, { mac: isMac() });
  if (editable && ses) {
    registry.bind('edit.undo', editing.undo);
    registry.bind('edit.redo', editing.redo);
    registry.bind('edit.save', () => void ses.autosave.flush());
    registry.bind('lesion.add', lesionPanel.add);
    registry.bind('tool.box', () => {
      if (!toolbar.toolButtons.get('box')?.disabled) tools.select('box');
    });
    registry.bind('segment.propagate', () => toolbar.propagateButton.click());
    registry.bind('range.first', () => ranges.mark('first'));
    registry.bind('range.last', () => ranges.mark('last'));
    registry.bind('range.clear', ranges.clear);
    if (submit) registry.bind('task.submit', submit);
  }
  if (ses) {
    registry.bind('lesion.next', () => ses.lesions.selectNext(1));
    registry.bind('lesion.previous', () => ses.lesions.selectNext(-1));
    registry.bind('lesion.toggleVisible', () => {
      const entry = ses.lesions.selected;
      if (entry) ses.lesions.toggleVisible(entry.lesion.id);
    });
  }
  state.onClose(installWorkspaceShortcuts(registry));
  toolbar.helpButton.addEventListener('click', () => showShortcutHelp());

  hook.timings.interactiveMs = performance.now();
  performance.mark('viewer:interactive');
  hook.ready = true;
  bar.set(1, `Ready in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  bar.setTone('success');

  tools.select('windowLevel');
  refresh.tools();
  wireViewControls(ready, toolbar, project.window_presets, editable, hook);
}
