// One-time Cornerstone3D set-up: core, tools and the DICOM image loader (one decode worker:
// shared/docs/VIEWER.md). Imported only through the viewer's dynamic chunk.

import { init as coreInit } from '@cornerstonejs/core';
import { init as dicomLoaderInit } from '@cornerstonejs/dicom-image-loader';
import {
  addTool, BrushTool, CrosshairsTool, init as toolsInit, PanTool, StackScrollTool, WindowLevelTool,
  ZoomTool,
} from '@cornerstonejs/tools';

let started = false;

export function initCornerstone(): void {
  if (started) return;
  started = true;
  coreInit();
  dicomLoaderInit({ maxWebWorkers: 1 });
  toolsInit();
  for (const tool of [BrushTool, CrosshairsTool, PanTool, StackScrollTool, WindowLevelTool, ZoomTool]) {
    addTool(tool);
  }
}
