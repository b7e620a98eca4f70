// The viewer's tools on its views: the tool group of tools.ts (window/level, pan, zoom,
// crosshairs, brush, eraser, threshold brush and their mouse bindings) added to the views, and,
// for the brushes on the volume views, the paths that keep a stroke's first dab and its repaint
// fast (paint on press, repaint only the painted view, the stroke overlay) and measure them.

import { ToolGroupManager } from '@cornerstonejs/tools';
import { BrushLatency } from './latency';
import { labelmapLook, StrokeOverlay } from './strokeOverlay';
import { createTools, paintImmediately, repaintOnlyPaintedView, type ViewerTools } from './tools';
import { ENGINE_ID, KEY_VIEWPORT, type Stage } from './setup';
import type { WorkspaceHook } from './types';
import { SEGMENTATION_ID, type VolumeViews } from './volume';

const TOOL_GROUP_ID = 'workspace-tools';

function toolGroup(viewportIds: string[], disposers: (() => void)[]): ViewerTools {
  const tools = createTools(TOOL_GROUP_ID, ENGINE_ID, viewportIds);
  disposers.push(() => ToolGroupManager.destroyToolGroup(TOOL_GROUP_ID));
  return tools;
}

/** The tools of the key slice's stack view, where it is the whole viewer (no labelmap). */
export function attachStackTools(disposers: (() => void)[]): ViewerTools {
  return toolGroup([KEY_VIEWPORT], disposers);
}

/** The tools of the volume views, with the brush's fast paths and its latency in `hook`. */
export function attachVolumeTools(stage: Stage, views: VolumeViews, hook: WorkspaceHook): ViewerTools {
  const { engine, disposers } = stage;
  const { viewports, labelmap, volume } = views;
  const tools = toolGroup(views.ids, disposers);
  const latency = new BrushLatency(engine);
  disposers.push(() => latency.dispose());
  labelmap.onAnyChange = () => latency.edited();
  for (const vp of viewports) {
    disposers.push(paintImmediately(vp.element, tools.isBrush));
    latency.watch(vp.id, vp.element, (evt) => tools.isBrush() && (evt.buttons & 1) === 1);
  }
  // the engine's own draw of the viewports asked for so far (what its animation frame would run)
  const implementation = (engine as unknown as { _implementation?: { _renderFlaggedViewports?: () => void } })
    ._implementation;
  const renderNow = (): void => implementation?._renderFlaggedViewports?.();
  const look = labelmapLook(SEGMENTATION_ID);
  const strokeViews = new Map(viewports.map((vp) => [vp.id, new StrokeOverlay(vp, labelmap, volume, look)]));
  disposers.push(repaintOnlyPaintedView(viewports, tools.isBrush, renderNow, strokeViews, (id) => {
    hook.strokeOverlayDraws += 1;
    latency.overlaid(id);
  }));
  hook.brushLatenciesMs = latency.samples;
  return tools;
}
