// One-time Cornerstone3D set-up: core (one WebGL context shared by the views, so a volume's
// texture is uploaded once), tools and the DICOM image loader (one decode worker:
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
  coreInit({ rendering: { webGlContextCount: 1 } } as never);
  // Each frame as a single-part payload (PS3.18 8.7.3.5): the loader searches a multipart body
  // byte by byte for its closing boundary, half a megabyte per CT slice on the main thread.
  dicomLoaderInit({
    maxWebWorkers: 1,
    beforeSend: () => ({ Accept: 'application/octet-stream; transfer-syntax=*' }),
  });
  toolsInit();
  for (const tool of [BrushTool, CrosshairsTool, PanTool, StackScrollTool, WindowLevelTool, ZoomTool]) {
    addTool(tool);
  }
}
