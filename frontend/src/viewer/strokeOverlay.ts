// A brush stroke shown at once on the painted view's own canvas. Through Cornerstone, each edit
// repaints the view with WebGL: a ray cast of the CT volume and a pass over the labelmap. Where
// the GPU is emulated in software (no GPU: a VM, a remote desktop) that is about 50 ms of the GPU
// process per edit plus the page's frame, while the input keeps coming, and the brush trails the
// mouse by a quarter of a second. Instead, at the press the view's canvas is copied; each edit then
// puts back that copy and draws over it the voxels this stroke changed on the view's plane, in
// their segment's colour and fill opacity (as the labelmap pass blends them, without the
// outline), one canvas pixel block per voxel placed by the view's camera. Where the copy shows a
// label the stroke erased or replaced, the block is the image's own grey in the view's window
// (not interpolated), with the new label's colour blended in. The view's real repaint follows
// the release. Where the overlay cannot show an edit (an oblique view, the camera or the window
// moved, the canvas resized) the view repaints through Cornerstone as before.

import { utilities, type Types } from '@cornerstonejs/core';
import { Enums as ToolEnums, segmentation } from '@cornerstonejs/tools';
import { readVolumePlane, worldToIndex } from './planes';
import { paintStroke, planeInView, planeToIndex, type Plane, type SegmentLook } from './strokePaint';

export interface PlaneLabels {
  readonly dimensions: [number, number, number];
  readPlane(axis: 0 | 1 | 2, index: number, out: Uint8Array): void;
}

/** What became of one edit: drawn on the canvas, nothing to show, or the view must repaint. */
export type StrokeShow = 'drawn' | 'same' | 'repaint';

/** How the labelmap pass fills a segment in a view (Cornerstone's colour table and style). */
export function labelmapLook(segmentationId: string): (viewportId: string, segment: number) => SegmentLook {
  const specifier = { segmentationId, type: ToolEnums.SegmentationRepresentations.Labelmap };
  return (viewportId, segment) => {
    if (!segmentation.config.visibility.getSegmentIndexVisibility(viewportId, specifier, segment)) return null;
    const style = segmentation.config.style.getStyle({ viewportId, ...specifier, segmentIndex: segment }) as {
      fillAlpha?: number;
      renderFill?: boolean;
    };
    if (style.renderFill === false) return null;
    const [r, g, b, a] = segmentation.config.color.getSegmentIndexColor(viewportId, segmentationId, segment);
    return { rgb: [r, g, b], alpha: ((a ?? 255) / 255) * (style.fillAlpha ?? 0.5) };
  };
}

export class StrokeOverlay {
  private plane: Plane | null = null;
  private view = '';
  private before = new Uint8Array(0);
  private shown = new Uint8Array(0);
  private now = new Uint8Array(0);
  private image: ImageData | null = null;
  private readonly snapshot = document.createElement('canvas');
  private readonly mask = document.createElement('canvas');
  private transform: [number, number, number, number, number, number] = [1, 0, 0, 1, 0, 0];
  private looks = new Map<number, SegmentLook>();
  /** The canvas holds overlay pixels the engine has not drawn. */
  drew = false;

  private readonly viewport: Types.IVolumeViewport;
  private readonly labels: PlaneLabels;
  private readonly volume: Types.IImageVolume;
  /** The image's plane (read at the first edit that needs it) and the view's linear window. */
  private imagePlane: Float32Array | null = null;
  private window: { lower: number; upper: number; invert: boolean } | null = null;
  private readonly lookOf: (viewportId: string, segment: number) => SegmentLook;

  constructor(
    viewport: Types.IVolumeViewport,
    labels: PlaneLabels,
    volume: Types.IImageVolume,
    lookOf: (viewportId: string, segment: number) => SegmentLook,
  ) {
    this.viewport = viewport;
    this.labels = labels;
    this.volume = volume;
    this.lookOf = lookOf;
  }

  /** Takes the canvas as it is now as the stroke's ground; false where no overlay can be drawn. */
  begin(): boolean {
    this.plane = null;
    this.looks.clear();
    const { focalPoint, viewPlaneNormal } = this.viewport.getCamera();
    if (!focalPoint || !viewPlaneNormal) return false;
    const plane = planeInView(this.labels.dimensions, worldToIndex(this.volume), focalPoint, viewPlaneNormal);
    const { canvas } = this.viewport;
    if (!plane || !canvas.width || !canvas.height || !canvas.clientWidth) return false;
    const size = plane.width * plane.height;
    if (this.before.length !== size) {
      this.before = new Uint8Array(size);
      this.shown = new Uint8Array(size);
      this.now = new Uint8Array(size);
    }
    this.labels.readPlane(plane.axis, plane.index, this.before);
    this.shown.set(this.before);
    if (this.mask.width !== plane.width || this.mask.height !== plane.height || !this.image) {
      this.mask.width = plane.width;
      this.mask.height = plane.height;
      this.image = new ImageData(plane.width, plane.height);
    } else {
      this.image.data.fill(0);
    }
    this.mask.getContext('2d')?.clearRect(0, 0, plane.width, plane.height);
    this.snapshot.width = canvas.width;
    this.snapshot.height = canvas.height;
    const copy = this.snapshot.getContext('2d');
    if (!copy) return false;
    copy.globalCompositeOperation = 'copy';
    copy.drawImage(canvas, 0, 0);
    // voxel (u, v) covers the canvas square from the point (u - 1/2, v - 1/2), in device pixels
    const scale = canvas.width / canvas.clientWidth;
    const at = (u: number, v: number): [number, number] => {
      const world = utilities.transformIndexToWorld(this.volume.imageData as never, planeToIndex(plane, u, v) as Types.Point3);
      const [x, y] = this.viewport.worldToCanvas(world);
      return [x * scale, y * scale];
    };
    const [ox, oy] = at(-0.5, -0.5);
    const [ux, uy] = at(0.5, -0.5);
    const [vx, vy] = at(-0.5, 0.5);
    this.transform = [ux - ox, uy - oy, vx - ox, vy - oy, ox, oy];
    const properties = this.viewport.getProperties();
    const voi = properties?.voiRange;
    this.window = voi && voi.upper > voi.lower ? { ...voi, invert: Boolean(properties?.invert) } : null;
    this.imagePlane = null;
    this.view = this.viewKey();
    this.plane = plane;
    this.drew = false;
    return true;
  }

  /** Shows the plane's labels as they are now. */
  show(): StrokeShow {
    const { plane, image } = this;
    if (!plane || !image || this.viewKey() !== this.view) return 'repaint';
    this.labels.readPlane(plane.axis, plane.index, this.now);
    const underneath = this.window ? (i: number): number => this.grey(plane, i) : null;
    const box = paintStroke(this.before, this.shown, this.now, image.data, plane.width, (segment) => this.look(segment), underneath);
    if (box === 'erased') return 'repaint';
    if (!box) return 'same';
    const mask = this.mask.getContext('2d');
    const view = this.viewport.canvas.getContext('2d');
    if (!mask || !view) return 'repaint';
    mask.putImageData(image, 0, 0, box.x, box.y, box.width, box.height);
    view.save();
    view.setTransform(1, 0, 0, 1, 0, 0);
    view.globalCompositeOperation = 'copy';
    view.drawImage(this.snapshot, 0, 0);
    view.globalCompositeOperation = 'source-over';
    view.setTransform(...this.transform);
    view.imageSmoothingEnabled = false;
    view.drawImage(this.mask, 0, 0);
    view.restore();
    this.drew = true;
    return 'drawn';
  }

  /** Ends the stroke; true when the view still shows overlay pixels (it needs its real repaint). */
  end(): boolean {
    const drew = this.drew;
    this.plane = null;
    this.drew = false;
    return drew;
  }

  /** The grey the view gives the image at voxel i of the plane: its window, linear, no blur. */
  private grey(plane: Plane, i: number): number {
    const window = this.window;
    if (!window) return 0;
    if (!this.imagePlane) {
      this.imagePlane = new Float32Array(plane.width * plane.height);
      readVolumePlane(this.volume, plane.axis, plane.index, this.imagePlane);
    }
    const t = Math.min(1, Math.max(0, ((this.imagePlane[i] ?? 0) - window.lower) / (window.upper - window.lower)));
    return Math.round((window.invert ? 1 - t : t) * 255);
  }

  private look(segment: number): SegmentLook {
    if (!this.looks.has(segment)) this.looks.set(segment, this.lookOf(this.viewport.id, segment));
    return this.looks.get(segment) ?? null;
  }

  /** What the copy and the overlay's placement depend on: the camera, the window, the canvas size. */
  private viewKey(): string {
    const { focalPoint, position, parallelScale, viewUp } = this.viewport.getCamera();
    const voiRange = this.viewport.getProperties()?.voiRange;
    const { canvas } = this.viewport;
    return JSON.stringify([focalPoint, position, parallelScale, viewUp, voiRange, canvas.width, canvas.height, canvas.clientWidth]);
  }
}
