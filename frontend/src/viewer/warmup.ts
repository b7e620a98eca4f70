// Cornerstone's init() probes WebGL before anything else: a throwaway context (the page's first:
// the GPU process sets up its GL for it) and a few texture formats read back, 0.3-0.45 s of the
// main thread in software GL, between the viewer's chunk arriving and the views being set up.
// The probe's module is small and has no other imports, so the page runs it while the chunk is
// still downloading; init() then finds the result (the bundle holds one instance of the module)
// and the probe also lands in localStorage for the next visit.

import { getRenderingCapabilities } from '@cornerstonejs/core/utilities/renderingCapabilities';

/** Runs the probe after the next frame has been painted (it blocks the main thread). */
export function probeRenderingSoon(): void {
  requestAnimationFrame(() =>
    setTimeout(() => {
      try {
        getRenderingCapabilities();
      } catch {
        // init() probes again and reports what fails
      }
    }, 0),
  );
}
