// Viewport layouts: one view of any orientation, 1+2 (axial large, two small), or 3 side by side.

import type { Layout, Orientation } from './types';

export const ORIENTATIONS: readonly Orientation[] = ['axial', 'sagittal', 'coronal'];

export const LAYOUTS: { value: Layout; label: string }[] = [
  { value: '3x1', label: '3 side by side' },
  { value: '1+2', label: '1 + 2' },
  { value: 'axial', label: 'Axial' },
  { value: 'sagittal', label: 'Sagittal' },
  { value: 'coronal', label: 'Coronal' },
];

/** Which orientations a layout shows, in order. */
export function visibleOrientations(layout: Layout): Orientation[] {
  return layout === '3x1' || layout === '1+2' ? [...ORIENTATIONS] : [layout];
}

export function applyLayout(
  elements: { grid: HTMLElement; cells: Record<Orientation, HTMLElement> },
  layout: Layout,
): void {
  const shown = new Set(visibleOrientations(layout));
  elements.grid.dataset.layout = layout;
  for (const orientation of ORIENTATIONS) {
    elements.cells[orientation].hidden = !shown.has(orientation);
  }
}
