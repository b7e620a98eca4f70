// Brush strokes, undo and redo. Each press of the brush, eraser or threshold brush is one undo
// step and one effort interaction: the viewer reports its edits in idle time, so a stroke's are
// flushed into the session before the step opens and after the button is released.

import { EFFORT_TOOL, type Refresh, type WorkspaceState } from './state';
import type { ToolName } from '../../viewer/types';

const BRUSH_TOOLS = ['brush', 'eraser', 'threshold'];

/** After the release, the viewer's last edits of the stroke have been found (idle time). */
const STROKE_SETTLE_MS = 120;

export interface EditingDeps {
  state: WorkspaceState;
  /** The views' grid: presses are caught on the way down, before the viewer's tools see them. */
  stage: HTMLElement;
  undoButton: HTMLButtonElement;
  redoButton: HTMLButtonElement;
  refresh: Refresh;
}

export interface EditingControls {
  undo(): void;
  redo(): void;
}

export function wireEditing(deps: EditingDeps): EditingControls {
  const { state, refresh } = deps;
  const { viewer: ready } = state;
  deps.stage.addEventListener('mousedown', (e) => {
    const ses = state.session;
    if (!ses || !state.canEdit() || e.button !== 0 || !BRUSH_TOOLS.includes(state.mode) || state.stroking) return;
    ready.flushEdits(); // anything pending belongs to the previous step
    state.stroking = true;
    ses.beginStroke(EFFORT_TOOL[state.mode as ToolName] ?? null, state.mode === 'eraser' ? 'Eraser' : 'Brush');
  }, { capture: true });
  const endStroke = (): void => {
    const ses = state.session;
    if (!state.stroking || !ses) return;
    window.setTimeout(() => {
      ready.flushEdits();
      ses.endStroke();
      state.stroking = false;
      refresh.tools();
    }, STROKE_SETTLE_MS);
  };
  document.addEventListener('mouseup', endStroke, true);
  state.onClose(() => document.removeEventListener('mouseup', endStroke, true));

  const undo = (): void => {
    const ses = state.session;
    if (!ses || !state.canEdit() || state.stroking) return;
    ready.flushEdits();
    ses.undo();
    refresh.tools();
  };
  const redo = (): void => {
    const ses = state.session;
    if (!ses || !state.canEdit() || state.stroking) return;
    ses.redo();
    refresh.tools();
  };
  deps.undoButton.addEventListener('click', undo);
  deps.redoButton.addEventListener('click', redo);
  return { undo, redo };
}
