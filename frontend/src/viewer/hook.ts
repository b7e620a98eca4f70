// window.__workspace: the test / benchmark hook (names fixed; see WorkspaceHook in ./types).
// Installed before Cornerstone loads, so a test can see `error` even when loading fails.

import type { WorkspaceHook } from './types';

function notReady(): never {
  throw new Error('the workspace is not ready');
}

export function installHook(): WorkspaceHook {
  const hook: WorkspaceHook = {
    ready: false,
    error: null,
    timings: { firstSliceMs: null, interactiveMs: null },
    viewports: [],
    labelmapVoxels: notReady,
    voxelToPage: notReady,
    brushLatenciesMs: [],
    strokeOverlayDraws: 0,
    setTool: notReady,
    setBrushSize: notReady,
    lesions: notReady,
    saveState: () => '',
    selectedLesion: () => null,
    sliceIndex: notReady,
    overlay: () => null,
    sliceRange: () => ({ first: null, last: null }),
  };
  window.__workspace = hook;
  return hook;
}
