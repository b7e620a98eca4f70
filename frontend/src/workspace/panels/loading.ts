// Opening the workspace: the key slice drawn from the series' own pixels while Cornerstone's
// chunk still loads, then the viewer on the whole volume, then the session on its labelmap.
// The series and the viewer's chunk are started by the page before the task's other requests,
// so all three download side by side.

import type { Lesion, Project, Task } from '../../api/types';
import { isAbort } from '../../ui/feedback';
import type { ProgressBar } from '../../ui/progress';
import type { PreparedSeries } from '../../viewer/prepare';
import { drawKeyPreview } from '../../viewer/preview';
import type { WorkspaceHook } from '../../viewer/types';
import { probeRenderingSoon } from '../../viewer/warmup';
import type { Viewer, ViewerElements } from '../../viewer/viewer';
import { WorkspaceSession } from '../session';

/** What is open so far: the page closes it when it is left, however far the loading got. */
export interface Opened {
  viewer: Viewer | null;
  session: WorkspaceSession | null;
}

export interface LoadDeps {
  viewerModule: Promise<typeof import('../../viewer/viewer')>;
  series: Promise<PreparedSeries>;
  task: Task;
  project: Pick<Project, 'lesion_classes' | 'window_presets'>;
  keyLesion: Lesion | undefined;
  editable: boolean;
  elements: ViewerElements;
  hook: WorkspaceHook;
  bar: ProgressBar;
  signal: AbortSignal;
}

/** Fills in `opened` as each part opens; rejects with the first failure. */
export async function openWorkspace(deps: LoadDeps, opened: Opened): Promise<void> {
  const { task, project, hook, bar, signal } = deps;
  const keySlice = deps.keyLesion?.key_slice ?? null;
  const preview = deps.series.then(async ({ uids, metadata }) => {
    const canvas = await drawKeyPreview(
      deps.elements.keyCell, uids, metadata, keySlice, project.window_presets[0] ?? null, signal,
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
  const { createViewer } = await deps.viewerModule;
  const progressShown = { phase: '', at: 0 };
  // the lesions and masks as they are now (not as the page found them), beside the volume
  const saved = WorkspaceSession.loadSaved(task.id);
  saved.catch(() => undefined); // reported where it is awaited
  const viewer = await createViewer({
    elements: deps.elements,
    series: await deps.series,
    preview: await preview,
    lesions: [], // the session composes the labelmap from the saved masks
    keySlice,
    presets: project.window_presets,
    hook,
    signal,
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
  opened.viewer = viewer;
  if (!viewer.stackOnly) {
    opened.session = await WorkspaceSession.open({
      task, lesionClasses: project.lesion_classes, host: viewer, editable: deps.editable,
    }, { saved });
    performance.mark('viewer:session-open');
  }
}
