// The selected lesion's slice range: marked with I / O while scrolling the axial view, cleared
// with X or "Clear range", shown in the side panel and in every view's overlay.

import type { WorkspaceHook } from '../../viewer/types';
import { h } from '../../ui/dom';
import { rangeText, zRangeOf, type RangeEnd } from '../sliceRange';
import type { WorkspaceState } from './state';

export interface RangeView {
  el: HTMLElement;
  value: HTMLElement;
  clearButton: HTMLButtonElement;
}

export function rangeView(): RangeView {
  const value = h('span', { class: 'vw-range-value', 'data-testid': 'slice-range' });
  const clearButton = h('button', {
    type: 'button', class: 'btn btn-small', 'data-action': 'clear-range', disabled: true,
    title: "Clear the lesion's slice range (X)",
  }, 'Clear range');
  const el = h('div', { class: 'vw-range', title: 'Mark the first (I) and last (O) slice of the lesion while scrolling the axial view' },
    'Slice range: ', value, clearButton);
  return { el, value, clearButton };
}

export interface RangeControls {
  mark(end: RangeEnd): void;
  clear(): void;
}

/** `axialSlice` answers the slice the axial view shows (the one a mark goes on). */
export function wireRange(
  state: WorkspaceState, view: RangeView, axialSlice: () => number, hook: WorkspaceHook,
): RangeControls {
  const { viewer: ready, session: ses, ranges } = state;
  // marks made with no lesion selected wait under null for the next new lesion (adoptPending)
  const owner = (): number | null => ses?.lesions.selected?.lesion.id ?? null;
  const render = (): void => {
    const marks = ranges.get(owner());
    ready.setRangeMarks(ses ? marks : null);
    const range = zRangeOf(marks);
    const shown = (z: number | null): string => (z === null ? '?' : String(z + 1));
    view.value.textContent = range
      ? rangeText(range)
      : marks.first === null && marks.last === null
        ? 'not marked (I: first slice, O: last)'
        : `${shown(marks.first)}-${shown(marks.last)}`; // one end marked: "33-?" (as the views show it)
    view.el.dataset.state = range ? 'complete' : marks.first === null && marks.last === null ? 'none' : 'partial';
    view.clearButton.disabled = !state.canEdit() || (marks.first === null && marks.last === null);
    view.el.hidden = !ses; // no labelmap (a cine, one image): nothing to segment
  };
  const mark = (end: RangeEnd): void => {
    if (!state.canEdit()) return;
    ranges.mark(owner(), end, Math.min(ready.dimensions[2] - 1, Math.max(0, axialSlice())));
  };
  const clear = (): void => {
    if (state.canEdit()) ranges.clear(owner());
  };
  view.clearButton.addEventListener('click', clear);
  state.onClose(ranges.subscribe(render));
  if (ses) state.onClose(ses.lesions.subscribe(render));
  hook.sliceRange = () => ({ ...ranges.get(owner()) });
  render();
  return { mark, clear };
}
