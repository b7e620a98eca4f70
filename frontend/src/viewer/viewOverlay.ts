// What a radiologist expects on each view: the slice out of the total (for the view's own axis),
// the lesion's marked slice range, the window / level, and orientation letters on the four edges.
//
// HTML laid over each view's cell (pointer-events: none, so the tools under it get every event),
// styled by classes and data attributes only (workspace.css). The texts follow the camera (scroll,
// pan, zoom, flips: CAMERA_MODIFIED) and the window (VOI_MODIFIED), at most once a frame. In the
// view that looks down the volume's slice axis (k, the server's z) the current slice is marked
// against the range; in the views across the slices the range's ends are lines.

import { Enums, utilities, type Types } from '@cornerstonejs/core';
import { h } from '../ui/dom';
import { edgeLetters, type Vec3 } from './orientation';
import { rangeLabel, rangeMark, rangeMarkText, sliceLabel, windowLevelText } from './overlayText';
import { worldToIndex } from './planes';
import { viewAxis } from './strokePaint';
import type { RangeMarks } from './types';

const SVG = 'http://www.w3.org/2000/svg';
/** The slice axis of the volume grid (k): the axis of `key_slice` and `z_range`. */
const SLICE_AXIS = 2;

/** What one view's overlay shows now (also the test hook's answer). */
export interface OverlayState {
  slice: string;
  range: string;
  mark: string;
  windowLevel: string;
  edges: { top: string; bottom: string; left: string; right: string };
}

/** The volume index a view shows along the axis it looks down, and that axis' length. */
export interface ViewSlice {
  axis: 0 | 1 | 2;
  index: number;
  total: number;
}

interface View {
  viewport: Types.IVolumeViewport;
  root: HTMLElement;
  slice: HTMLElement;
  range: HTMLElement;
  rangeText: HTMLElement;
  mark: HTMLElement;
  windowLevel: HTMLElement;
  edges: Record<keyof OverlayState['edges'], HTMLElement>;
  lines: SVGSVGElement;
}

function setText(el: Element, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

function setData(el: HTMLElement | SVGElement, key: string, value: string): void {
  if (el.dataset[key] !== value) el.dataset[key] = value;
}

export class ViewOverlays {
  private readonly views = new Map<string, View>();
  private readonly volume: Types.IImageVolume;
  private readonly noun: string;
  private readonly orient: boolean;
  private marks: RangeMarks | null = null;
  private frame = 0;
  private readonly stops: (() => void)[] = [];

  /**
   * `cells`: the element each view's overlay goes in (its cell), by viewport id. A cine shows
   * "Frame" and no orientation (its frames have no patient positions).
   */
  constructor(
    viewports: Types.IVolumeViewport[],
    cells: Record<string, HTMLElement>,
    volume: Types.IImageVolume,
    { cine = false }: { cine?: boolean } = {},
  ) {
    this.volume = volume;
    this.noun = cine ? 'Frame' : 'Slice';
    this.orient = !cine;
    for (const viewport of viewports) {
      const cell = cells[viewport.id];
      if (!cell) continue;
      const view = this.build(viewport, cell);
      this.views.set(viewport.id, view);
      const schedule = (): void => this.schedule();
      for (const name of [Enums.Events.CAMERA_MODIFIED, Enums.Events.VOI_MODIFIED]) {
        viewport.element.addEventListener(name, schedule);
        this.stops.push(() => viewport.element.removeEventListener(name, schedule));
      }
    }
    // a view resized (layout, window) moves the range lines before its camera event comes
    const resized = new ResizeObserver(() => this.schedule());
    for (const view of this.views.values()) resized.observe(view.root);
    this.stops.push(() => resized.disconnect());
    this.update();
  }

  private build(viewport: Types.IVolumeViewport, cell: HTMLElement): View {
    const edge = (side: string): HTMLElement => h('span', { class: `vw-ov-edge vw-ov-${side}`, 'data-edge': side });
    const edges = { top: edge('top'), bottom: edge('bottom'), left: edge('left'), right: edge('right') };
    const slice = h('div', { class: 'vw-ov-slice', 'data-testid': 'overlay-slice' });
    const windowLevel = h('div', { class: 'vw-ov-wl', 'data-testid': 'overlay-wl' });
    const mark = h('span', { class: 'vw-ov-mark', 'data-testid': 'overlay-mark', hidden: true });
    const rangeText = h('span', { class: 'vw-ov-range-text', 'data-testid': 'overlay-range' });
    const range = h('div', { class: 'vw-ov-range', hidden: true }, mark, rangeText);
    const lines = document.createElementNS(SVG, 'svg');
    lines.classList.add('vw-ov-lines');
    lines.setAttribute('aria-hidden', 'true');
    const root = h('div', { class: 'vw-overlay', 'data-viewport': viewport.id, 'aria-hidden': 'true' },
      lines,
      h('div', { class: 'vw-ov-corner vw-ov-tl' }, slice),
      h('div', { class: 'vw-ov-corner vw-ov-tr' }, windowLevel),
      h('div', { class: 'vw-ov-corner vw-ov-bl' }, range),
      edges.top, edges.bottom, edges.left, edges.right,
    );
    cell.append(root);
    this.stops.push(() => root.remove());
    return { viewport, root, slice, range, rangeText, mark, windowLevel, edges, lines };
  }

  /** The lesion's marks (null: no lesion selected); redraws. */
  setMarks(marks: RangeMarks | null): void {
    this.marks = marks ? { ...marks } : null;
    this.schedule();
  }

  private schedule(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.update();
    });
  }

  /** The slice a view shows along its own axis (null where its camera is not set). */
  viewSlice(viewportId: string): ViewSlice | null {
    const view = this.views.get(viewportId);
    if (!view) return null;
    const { focalPoint, viewPlaneNormal } = view.viewport.getCamera();
    if (!focalPoint || !viewPlaneNormal) return null;
    const { axis, position } = viewAxis(worldToIndex(this.volume), focalPoint, viewPlaneNormal);
    const total = this.volume.dimensions[axis];
    return { axis, index: Math.min(total - 1, Math.max(0, Math.round(position))), total };
  }

  /** Brings every view's overlay up to date now. */
  update(): void {
    if (this.frame) {
      cancelAnimationFrame(this.frame);
      this.frame = 0;
    }
    for (const [id, view] of this.views) this.updateView(id, view);
  }

  private updateView(id: string, view: View): void {
    const camera = view.viewport.getCamera();
    const slice = this.viewSlice(id);
    setText(view.slice, slice ? sliceLabel(slice.index, slice.total, this.noun) : '');

    const alongSlices = slice?.axis === SLICE_AXIS;
    const label = rangeLabel(this.marks);
    view.range.hidden = label === null;
    setText(view.rangeText, label ?? '');
    const mark = alongSlices && slice ? rangeMark(slice.index, this.marks) : null;
    setText(view.mark, rangeMarkText(mark));
    view.mark.hidden = mark === null;
    setData(view.root, 'mark', mark ?? '');

    const properties = view.viewport.getProperties() as { voiRange?: Types.VOIRange };
    setText(view.windowLevel, windowLevelText(properties.voiRange));

    const letters = this.orient && camera.viewUp && camera.viewPlaneNormal
      ? edgeLetters(camera.viewUp as unknown as Vec3, camera.viewPlaneNormal as unknown as Vec3)
      : { top: '', bottom: '', left: '', right: '' };
    for (const side of ['top', 'bottom', 'left', 'right'] as const) setText(view.edges[side], letters[side]);

    this.drawLines(view, slice && !alongSlices ? slice : null);
  }

  /** The marked ends as lines across a view that cuts through the slices (sagittal, coronal). */
  private drawLines(view: View, slice: ViewSlice | null): void {
    const ends: { end: 'first' | 'last'; z: number }[] = [];
    if (slice && this.marks) {
      if (this.marks.first !== null) ends.push({ end: 'first', z: this.marks.first });
      if (this.marks.last !== null) ends.push({ end: 'last', z: this.marks.last });
    }
    const lines = ends.map(({ end, z }) => {
      const across = ([0, 1, 2] as const).find((a) => a !== slice!.axis && a !== SLICE_AXIS)!;
      const point = (at: number): Types.Point2 => {
        const ijk: [number, number, number] = [0, 0, 0];
        ijk[slice!.axis] = slice!.index;
        ijk[SLICE_AXIS] = z;
        ijk[across] = at;
        const world = utilities.transformIndexToWorld(this.volume.imageData as never, ijk as Types.Point3);
        return view.viewport.worldToCanvas(world);
      };
      const [a, b] = [point(-0.5), point(this.volume.dimensions[across] - 0.5)];
      return { end, a, b };
    });
    const key = lines.map(({ end, a, b }) => `${end}:${[...a, ...b].map((v) => v.toFixed(1)).join(',')}`).join(' ');
    if (view.lines.dataset.key === key) return;
    view.lines.dataset.key = key;
    view.lines.replaceChildren(...lines.map(({ end, a, b }) => {
      const line = document.createElementNS(SVG, 'line');
      line.classList.add('vw-ov-line');
      line.dataset.end = end;
      line.setAttribute('x1', a[0].toFixed(1));
      line.setAttribute('y1', a[1].toFixed(1));
      line.setAttribute('x2', b[0].toFixed(1));
      line.setAttribute('y2', b[1].toFixed(1));
      return line;
    }));
  }

  /** What a view's overlay shows (for the test hook). */
  state(viewportId: string): OverlayState | null {
    const view = this.views.get(viewportId);
    if (!view) return null;
    return {
      slice: view.slice.textContent ?? '',
      range: view.range.hidden ? '' : view.rangeText.textContent ?? '',
      mark: view.mark.hidden ? '' : view.mark.textContent ?? '',
      windowLevel: view.windowLevel.textContent ?? '',
      edges: {
        top: view.edges.top.textContent ?? '',
        bottom: view.edges.bottom.textContent ?? '',
        left: view.edges.left.textContent ?? '',
        right: view.edges.right.textContent ?? '',
      },
    };
  }

  dispose(): void {
    if (this.frame) cancelAnimationFrame(this.frame);
    for (const stop of this.stops.reverse()) stop();
    this.views.clear();
  }
}
