// Ultrasound / video (multi-frame) or a single image: one stack view, cine playback for
// multi-frame; no labelmap editing yet (Cornerstone builds no volume without slice positions).

import type { RenderingEngine, Types } from '@cornerstonejs/core';
import { utilities as toolUtilities } from '@cornerstonejs/tools';
import type { SeriesImages } from './dicomweb';
import { attachStackTools } from './toolWiring';
import type { WorkspaceHook } from './types';
import type { Viewer } from './viewer';

export function stackOnlyViewer(
  engine: RenderingEngine,
  stack: Types.IStackViewport,
  element: HTMLDivElement,
  images: SeriesImages,
  fps: number,
  hook: WorkspaceHook,
  disposers: (() => void)[],
): Viewer {
  const tools = attachStackTools(disposers);
  hook.setTool = (name) => tools.set(name);
  hook.labelmapVoxels = () => 0;
  hook.viewports = [stack.id];
  const unsupported = (): never => {
    throw new Error('labelmap editing of multi-frame (cine) series is not supported yet');
  };
  return {
    stackOnly: true,
    cine: images.multiFrame,
    dimensions: [0, 0, 0],
    getLabelmap: unsupported,
    setLabelmap: unsupported,
    onEdit: () => () => undefined,
    setLayout: () => engine.resize(true, true),
    setTool: (name) => tools.set(name),
    setBrushSize: () => undefined,
    setActiveSegment: () => undefined,
    applyPreset: () => undefined,
    pageToVoxel: unsupported,
    sliceIndex: () => 0,
    setRangeMarks: () => undefined,
    setSegmentStyle: () => undefined,
    flushEdits: () => undefined,
    playCine(play: boolean) {
      if (play) toolUtilities.cine.playClip(element, { framesPerSecond: fps, loop: true });
      else toolUtilities.cine.stopClip(element);
    },
    dispose() {
      toolUtilities.cine.stopClip(element);
      for (const dispose of disposers.reverse()) dispose();
    },
  };
}
