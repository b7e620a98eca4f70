// The workspace's tool group: one primary-button tool at a time (brush, eraser, threshold brush,
// window/level, pan, zoom, crosshairs), wheel scrolls slices, middle button pans, right zooms.

import {
  BrushTool, CrosshairsTool, Enums as ToolEnums, PanTool, StackScrollTool, ToolGroupManager,
  utilities as toolUtilities, WindowLevelTool, ZoomTool, type Types as ToolTypes,
} from '@cornerstonejs/tools';
import type { ToolName } from './types';

const { MouseBindings } = ToolEnums;

export const BRUSH = 'CircularBrush';
export const ERASER = 'CircularEraser';
export const THRESHOLD = 'ThresholdBrush';
const BRUSHES = [BRUSH, ERASER, THRESHOLD];

/**
 * BrushTool's defaults wait for 4 px of movement or 500 ms before a drag paints, and a press
 * without a drag paints on release. With both at 0 every drag event paints, including the
 * synthetic one paintImmediately() sends at the press.
 */
const PREVIEW = {
  enabled: false,
  previewColors: { 0: [255, 255, 255, 128] },
  previewTimeMs: 250,
  previewMoveDistance: 8,
  dragMoveDistance: 0,
  dragTimeMs: 0,
};

const PRIMARY: Record<ToolName, string> = {
  brush: BRUSH,
  eraser: ERASER,
  threshold: THRESHOLD,
  windowLevel: WindowLevelTool.toolName,
  pan: PanTool.toolName,
  zoom: ZoomTool.toolName,
  crosshairs: CrosshairsTool.toolName,
};

export interface ViewerTools {
  group: ToolTypes.IToolGroup;
  current(): ToolName;
  set(name: ToolName): void;
  isBrush(): boolean;
  setBrushSize(mm: number): void;
  brushSize(): number;
  setThresholdRange(lower: number, upper: number): void;
}

export function createTools(groupId: string, renderingEngineId: string, viewportIds: string[]): ViewerTools {
  ToolGroupManager.destroyToolGroup(groupId);
  const group = ToolGroupManager.createToolGroup(groupId);
  if (!group) throw new Error('could not create the tool group');
  group.addToolInstance(BRUSH, BrushTool.toolName, { activeStrategy: 'FILL_INSIDE_CIRCLE', preview: PREVIEW });
  group.addToolInstance(ERASER, BrushTool.toolName, { activeStrategy: 'ERASE_INSIDE_CIRCLE', preview: PREVIEW });
  group.addToolInstance(THRESHOLD, BrushTool.toolName, {
    activeStrategy: 'THRESHOLD_INSIDE_CIRCLE',
    preview: PREVIEW,
    threshold: { range: [-150, 250], isDynamic: false },
  });
  group.addTool(WindowLevelTool.toolName);
  group.addTool(PanTool.toolName);
  group.addTool(ZoomTool.toolName);
  group.addTool(StackScrollTool.toolName);
  group.addTool(CrosshairsTool.toolName);
  for (const id of viewportIds) group.addViewport(id, renderingEngineId);

  group.setToolActive(StackScrollTool.toolName, { bindings: [{ mouseButton: MouseBindings.Wheel }] });
  let active: ToolName = 'windowLevel';
  let size = 5;

  const set = (name: ToolName): void => {
    const previous = PRIMARY[active];
    const next = PRIMARY[name];
    if (previous !== next) {
      // crosshairs keep drawing their lines when another tool takes the button
      if (previous === CrosshairsTool.toolName) group.setToolPassive(previous);
      else group.setToolDisabled(previous);
    }
    for (const other of [PanTool.toolName, ZoomTool.toolName]) {
      if (other !== next) group.setToolDisabled(other);
    }
    const bindings = [{ mouseButton: MouseBindings.Primary }];
    if (next === PanTool.toolName) bindings.push({ mouseButton: MouseBindings.Auxiliary });
    if (next === ZoomTool.toolName) bindings.push({ mouseButton: MouseBindings.Secondary });
    group.setToolActive(next, { bindings });
    if (next !== PanTool.toolName) group.setToolActive(PanTool.toolName, { bindings: [{ mouseButton: MouseBindings.Auxiliary }] });
    if (next !== ZoomTool.toolName) group.setToolActive(ZoomTool.toolName, { bindings: [{ mouseButton: MouseBindings.Secondary }] });
    active = name;
    if (BRUSHES.includes(next)) toolUtilities.segmentation.setBrushSizeForToolGroup(groupId, size, next);
  };

  set('windowLevel');

  return {
    group,
    current: () => active,
    set,
    isBrush: () => BRUSHES.includes(PRIMARY[active]),
    setBrushSize(mm: number) {
      if (!(mm > 0)) throw new Error(`brush size must be positive, got ${mm}`);
      size = mm;
      for (const tool of BRUSHES) toolUtilities.segmentation.setBrushSizeForToolGroup(groupId, mm, tool);
    },
    brushSize: () => size,
    setThresholdRange(lower: number, upper: number) {
      const tool = group.getToolInstance(THRESHOLD) as { configuration: { threshold?: { range: number[] } } } | undefined;
      if (tool?.configuration.threshold) tool.configuration.threshold.range = [lower, upper];
    },
  };
}

/**
 * Cornerstone holds a primary-button press for 400 ms to tell a double-click apart, and the brush
 * paints a press only on release. While a brush is active, right after the real mousedown:
 * 1. a synthetic mousedown makes Cornerstone release the held press at once. Its listener
 *    compares the new event's `buttons` with the held one's (they must differ to release it) and
 *    then hands the synthetic event to the tools, which pick the tool by `buttons` (it must be the
 *    primary button there): so `buttons` reads 0 once on the viewport element, otherwise 1;
 * 2. a synthetic mousemove at the same point is a zero-length drag, which paints the first dab.
 */
export function paintImmediately(element: HTMLElement, isBrush: () => boolean): () => void {
  const parent = element.parentElement;
  if (!parent) throw new Error('viewport element must be in the DOM');
  const onDown = (evt: MouseEvent): void => {
    if (!evt.isTrusted || evt.buttons !== 1 || !isBrush()) return;
    const init: MouseEventInit = {
      bubbles: true, cancelable: true, clientX: evt.clientX, clientY: evt.clientY,
      screenX: evt.screenX, screenY: evt.screenY, button: 0, buttons: 1,
      ctrlKey: evt.ctrlKey, shiftKey: evt.shiftKey, altKey: evt.altKey, metaKey: evt.metaKey,
    };
    const release = new MouseEvent('mousedown', init);
    // only Cornerstone's own listener (on the viewport element) sees the 0, on its first read
    let released = false;
    Object.defineProperty(release, 'buttons', {
      get: () => {
        if (released || release.currentTarget !== element) return 1;
        released = true;
        return 0;
      },
    });
    evt.target?.dispatchEvent(release);
    document.dispatchEvent(new MouseEvent('mousemove', init));
  };
  parent.addEventListener('mousedown', onDown);
  return () => parent.removeEventListener('mousedown', onDown);
}

/** A view's stroke overlay, as repaintOnlyPaintedView() drives it (strokeOverlay.ts). */
export interface StrokeView {
  begin(): boolean;
  show(): 'drawn' | 'same' | 'repaint';
  end(): boolean;
}

/**
 * During a brush stroke only the view being painted repaints, and at once: the other views catch
 * up when the button is released. Every edit asks all views showing the labelmap to repaint, and
 * where the pixels are drawn in software (no GPU) the other two views would triple the time from
 * the mouse to the painted pixels; and a repaint asked for inside the segmentation's own animation
 * frame would wait for the next one (`renderNow` draws the views asked for so far, now). Where
 * the painted view has a stroke overlay (`strokeViews`) the edits are drawn onto its canvas
 * instead (`onDrawn` is told) and its own repaint also waits for the release. Returns the function
 * that restores the views' own render().
 */
export function repaintOnlyPaintedView(
  viewports: { id: string; element: HTMLElement; render(): void }[],
  isBrush: () => boolean,
  renderNow: () => void,
  strokeViews: Map<string, StrokeView> = new Map(),
  onDrawn: (viewportId: string) => void = () => undefined,
): () => void {
  let painting: string | null = null;
  let overlay: StrokeView | null = null;
  const deferred = new Set<() => void>();
  const restores: (() => void)[] = [];
  for (const vp of viewports) {
    const render = vp.render.bind(vp);
    vp.render = () => {
      if (painting === null) render();
      else if (painting !== vp.id) deferred.add(render);
      else {
        const shown = overlay?.show();
        if (shown === 'drawn') onDrawn(vp.id);
        if (shown === 'drawn' || shown === 'same') return;
        overlay?.end(); // the camera moved, say: this stroke repaints from here on
        overlay = null;
        render();
        renderNow();
      }
    };
    const onDown = (evt: MouseEvent): void => {
      if (!evt.isTrusted || evt.buttons !== 1 || !isBrush()) return;
      painting = vp.id;
      overlay = strokeViews.get(vp.id) ?? null;
      if (overlay && !overlay.begin()) overlay = null;
    };
    vp.element.addEventListener('mousedown', onDown, true);
    restores.push(() => {
      vp.element.removeEventListener('mousedown', onDown, true);
      vp.render = render;
    });
  }
  const release = (): void => {
    if (painting === null) return;
    const painted = viewports.find((vp) => vp.id === painting);
    // the canvas shows the overlay: the view's own repaint replaces it
    if (painted && strokeViews.get(painted.id)?.end()) deferred.add(() => painted.render());
    painting = null;
    overlay = null;
    const pending = [...deferred]; // one repaint per view, however many edits it missed
    deferred.clear();
    for (const render of pending) render();
  };
  document.addEventListener('mouseup', release, true);
  window.addEventListener('blur', release);
  return () => {
    document.removeEventListener('mouseup', release, true);
    window.removeEventListener('blur', release);
    release();
    for (const restore of restores) restore();
  };
}
