// Segmentation prompts and their progress: the box drawn on the axial view (a new lesion where
// none is selected), point clicks that refine the lesion's box prompt, and "Propagate my
// correction". One request at a time (state.segmenting); its progress shows in the side panel.

import type { Point } from '../../api/types';
import { h } from '../../ui/dom';
import { errorBanner, isAbort, notice } from '../../ui/feedback';
import { progressBar } from '../../ui/progress';
import { boxFromCorners, boxPrompt, propagatePrompt, type SegmentProgress } from '../segmentJob';
import type { WorkspaceSession } from '../session';
import { axialSlice, type PageTool, type Refresh, type WorkspaceState } from './state';

export function segmentView(): HTMLElement {
  return h('div', { class: 'vw-segment', 'data-state': 'idle' });
}

export interface PromptLayer {
  el: HTMLElement;
  rubber: HTMLElement;
  /** Shown for the prompt tools only; it takes the axial view's primary button from the viewer. */
  show(tool: PageTool): void;
}

/** The layer over the axial view that box and point prompts are drawn on. */
export function promptLayer(axialCell: HTMLElement): PromptLayer {
  const el = h('div', { class: 'vw-prompt-layer', hidden: true, 'data-testid': 'prompt-layer' });
  const rubber = h('div', { class: 'vw-rubber', hidden: true });
  el.append(rubber);
  axialCell.append(el);
  return {
    el,
    rubber,
    show(tool) {
      el.hidden = tool !== 'box' && tool !== 'point';
      el.dataset.tool = tool;
    },
  };
}

export interface SegmentDeps {
  state: WorkspaceState;
  /** The side panel's progress area (segmentView()). */
  segmentEl: HTMLElement;
  layer: PromptLayer;
  axialCell: HTMLElement;
  propagateButton: HTMLButtonElement;
  /** The class a lesion made by a box prompt gets (the side panel's class select). */
  lesionClass(): string | undefined;
  refresh: Refresh;
}

type Asked = Parameters<WorkspaceSession['segment']>[1];

export function wireSegmentation(deps: SegmentDeps): void {
  const { state, segmentEl, layer, refresh } = deps;
  const { viewer: ready, ranges } = state;
  const points = new Map<number, { positive: Point[]; negative: Point[] }>();
  const segBar = progressBar('Segmentation');

  const runSegment = async (lesionId: number, asked: Asked, what: string): Promise<void> => {
    const ses = state.session;
    if (!ses || state.segmenting) return;
    state.segmenting = new AbortController();
    refresh.tools();
    // the lesion's slice range goes with every request, widened to the slices the prompt needs
    const { prompt, message } = ranges.fit(lesionId, asked);
    const rangeNote = message ? h('p', { class: 'muted small vw-range-note', 'data-testid': 'range-note' }, message) : null;
    const cancel = h('button', { type: 'button', class: 'btn btn-small', onclick: () => state.segmenting?.abort() }, 'Stop waiting');
    segmentEl.dataset.state = 'running';
    segBar.setTone('normal');
    segBar.set(null, `${what}: queued`);
    segmentEl.replaceChildren(segBar.el, cancel, rangeNote ?? '');
    try {
      const result = await ses.segment(lesionId, prompt, {
        signal: state.segmenting.signal,
        onProgress: (p: SegmentProgress) => segBar.set(p.fraction, `${what}: ${p.label}`),
      });
      segBar.set(1, `${what}: done, ${result.version.voxel_count} voxels`);
      segBar.setTone('success');
      segmentEl.dataset.state = 'done';
      segmentEl.replaceChildren(segBar.el, rangeNote ?? '');
    } catch (err) {
      segmentEl.dataset.state = 'error';
      segmentEl.replaceChildren(
        isAbort(err) ? notice('Stopped waiting for the segmentation.') : errorBanner(err, `${what} failed`),
        rangeNote ?? '',
      );
    } finally {
      state.segmenting = null;
      refresh.lesions();
      refresh.tools();
    }
  };

  const promptDrag = async (a: [number, number], b: [number, number], negative: boolean): Promise<void> => {
    const ses = state.session;
    if (!ses) return;
    const [nx, ny, nz] = ready.dimensions;
    const p0 = ready.pageToVoxel('axial', [a[0] + window.scrollX, a[1] + window.scrollY]);
    const p1 = ready.pageToVoxel('axial', [b[0] + window.scrollX, b[1] + window.scrollY]);
    const k = Math.min(nz - 1, Math.max(0, Math.round(p0[2])));
    if (state.mode === 'box') {
      const box = boxFromCorners([p0[0], p0[1]], [p1[0], p1[1]], nx, ny);
      if (box[2] - box[0] < 2 || box[3] - box[1] < 2) return; // a click, not a box
      let entry = ses.lesions.selected;
      if (!entry) {
        entry = await ses.addLesion(deps.lesionClass());
        ranges.adoptPending(entry.lesion.id);
        ses.select(entry.lesion.id);
      }
      points.delete(entry.lesion.id);
      await runSegment(entry.lesion.id, boxPrompt(k, box), 'Box');
      return;
    }
    const entry = ses.lesions.selected;
    if (!entry) return;
    const box = entry.lesion.box as [number, number, number, number] | null;
    if (!box || entry.lesion.key_slice === null) {
      segmentEl.replaceChildren(notice('Draw a box first: points refine a box prompt.'));
      return;
    }
    const clicks = points.get(entry.lesion.id) ?? { positive: [], negative: [] };
    const point: Point = [Math.round(p1[0]), Math.round(p1[1]), k];
    (negative ? clicks.negative : clicks.positive).push(point);
    points.set(entry.lesion.id, clicks);
    await runSegment(entry.lesion.id, boxPrompt(entry.lesion.key_slice, box, clicks), negative ? 'Negative point' : 'Positive point');
  };

  // a drag that leaves the layer still ends where the button is released: listen on the document
  let dragStart: [number, number] | null = null;
  layer.el.addEventListener('mousedown', (e) => {
    if (e.button !== 0) return;
    e.preventDefault();
    e.stopPropagation();
    dragStart = [e.clientX, e.clientY];
  });
  const rectOf = (a: [number, number], b: [number, number]): void => {
    const box = layer.el.getBoundingClientRect();
    Object.assign(layer.rubber.style, {
      left: `${Math.min(a[0], b[0]) - box.left}px`, top: `${Math.min(a[1], b[1]) - box.top}px`,
      width: `${Math.abs(a[0] - b[0])}px`, height: `${Math.abs(a[1] - b[1])}px`,
    });
  };
  const onMove = (e: MouseEvent): void => {
    if (!dragStart || state.mode !== 'box') return;
    layer.rubber.hidden = false;
    rectOf(dragStart, [e.clientX, e.clientY]);
  };
  const onUp = (e: MouseEvent): void => {
    if (!dragStart) return;
    const start = dragStart;
    dragStart = null;
    layer.rubber.hidden = true;
    promptDrag(start, [e.clientX, e.clientY], e.shiftKey || e.altKey).catch((err: unknown) => {
      segmentEl.replaceChildren(errorBanner(err, 'The prompt failed'));
    });
  };
  document.addEventListener('mousemove', onMove);
  document.addEventListener('mouseup', onUp);
  state.onClose(() => {
    document.removeEventListener('mousemove', onMove);
    document.removeEventListener('mouseup', onUp);
  });
  deps.propagateButton.addEventListener('click', () => {
    const entry = state.session?.lesions.selected;
    if (entry) void runSegment(entry.lesion.id, propagatePrompt(axialSlice(ready, deps.axialCell)), 'Propagate');
  });
}
