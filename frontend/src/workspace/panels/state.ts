// What the workspace page's panels share once the viewer is up. The panels are the DOM layer
// over the plain state modules beside this folder (session, lesions, sliceRange, ...): each one
// builds its own elements and reads or writes only what is here, so no panel imports another.
// The page (pages/workspace.ts) creates this object and hands it to every panel.
//
// `Viewer` is imported as a type only: a value import would pull Cornerstone into the page's
// chunk, which is split off so the page paints before Cornerstone is parsed.

import type { EffortTool, Lesion, Project, Task } from '../../api/types';
import type { ToolName } from '../../viewer/types';
import type { Viewer } from '../../viewer/viewer';
import type { WorkspaceSession } from '../session';
import { SliceRanges } from '../sliceRange';

/** The viewer's own tools, and the page's prompt tools drawn on the axial view. */
export type PageTool = ToolName | 'box' | 'point';

/** The tools whose presses the effort tracker counts as interactions. */
export const EFFORT_TOOL: Partial<Record<ToolName, EffortTool>> = { brush: 'brush', eraser: 'eraser', threshold: 'threshold' };

/** Who may do what with the task: decided once, from the task and the project as loaded. */
export interface TaskAccess {
  /** The signed-in user is its annotator and it is assigned or rejected. */
  editable: boolean;
  /** A reviewer or manager looks at a submitted task someone else annotated. */
  reviewing: boolean;
}

export function taskAccess(task: Task, project: Pick<Project, 'my_role'>, me: string): TaskAccess {
  const editable = task.assignee === me && (task.state === 'assigned' || task.state === 'rejected');
  const reviewing = !editable && task.state === 'submitted' && task.assignee !== me
    && (project.my_role === 'reviewer' || project.my_role === 'manager');
  return { editable, reviewing };
}

/** The lesion whose key slice the page shows first: the oldest one that has one. */
export function keyLesionOf(lesions: Lesion[]): Lesion | undefined {
  return [...lesions].sort((a, b) => a.id - b.id).find((l) => l.key_slice !== null);
}

export interface WorkspaceState {
  readonly task: Task;
  readonly viewer: Viewer;
  /** Null where the viewer has no labelmap (a cine, one image). */
  readonly session: WorkspaceSession | null;
  readonly editable: boolean;
  /** The lesions' marked slice ranges, sent as z_range with each of their segmentation requests. */
  readonly ranges: SliceRanges;
  mode: PageTool;
  /** Set once the task is submitted from this page: editing ends without a reload. */
  submitted: boolean;
  /** The segmentation request waited for (one at a time), or null. */
  segmenting: AbortController | null;
  /** A brush press is under way: undo / redo wait for its end. */
  stroking: boolean;
  /** Editing is allowed now (editable, not submitted, a labelmap). */
  canEdit(): boolean;
  /** Runs `cleanup` when the page is left. */
  onClose(cleanup: () => void): void;
}

export function createState(
  task: Task, viewer: Viewer, session: WorkspaceSession | null, editable: boolean, onClose: (cleanup: () => void) => void,
): WorkspaceState {
  const state: WorkspaceState = {
    task, viewer, session, editable, onClose,
    ranges: new SliceRanges(),
    mode: 'windowLevel',
    submitted: false,
    segmenting: null,
    stroking: false,
    canEdit: () => state.editable && !state.submitted && state.session !== null,
  };
  return state;
}

/** The axial slice (volume index k) shown now: the one at the centre of the axial view. */
export function axialSlice(viewer: Viewer, axialCell: HTMLElement): number {
  const rect = axialCell.getBoundingClientRect();
  const ijk = viewer.pageToVoxel('axial', [rect.left + rect.width / 2 + window.scrollX, rect.top + rect.height / 2 + window.scrollY]);
  return Math.round(ijk[2]);
}

/**
 * What a panel asks the others to redraw after it changed something they show: the page binds
 * these to the tool bar and the lesion list once both exist.
 */
export interface Refresh {
  tools(): void;
  lesions(): void;
}
