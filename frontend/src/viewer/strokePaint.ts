// The arithmetic of the stroke overlay (strokeOverlay.ts), kept free of the DOM and Cornerstone:
// which voxel plane a view shows, and the RGBA image of what a stroke changed on it.

export type Vec3 = readonly [number, number, number];

/** Colour 0..255 and opacity 0..1 of a segment as the labelmap pass blends it; null: hidden. */
export type SegmentLook = { rgb: readonly [number, number, number]; alpha: number } | null;

/**
 * One voxel plane of the labelmap grid: `axis` fixed at `index`, pixel (u, v) over the other two
 * axes in order (axial, axis 2: u = i, v = j; axis 1: u = i, v = k; axis 0: u = j, v = k), so
 * pixel u + v * width is also the order Labelmap.readPlane() writes.
 */
export interface Plane {
  axis: 0 | 1 | 2;
  index: number;
  width: number;
  height: number;
}

/** Views more than this far (in voxels) from a voxel plane show a blend of two: no overlay. */
const OFF_PLANE = 0.25;

/**
 * The plane a view shows, from where its focal point and one step along its normal fall in the
 * voxel grid (`toIndex`: world to continuous ijk); null for an oblique view, a view between two
 * planes, or a plane outside the grid.
 */
export function planeInView(
  dims: Vec3,
  toIndex: (world: Vec3) => Vec3,
  focalPoint: Vec3,
  normal: Vec3,
): Plane | null {
  const { axis, position, alignment } = viewAxis(toIndex, focalPoint, normal);
  // the normal must run along that axis alone (the crosshairs can rotate a view)
  if (!(alignment >= 0.9999)) return null;
  const index = Math.round(position);
  if (Math.abs(position - index) > OFF_PLANE || index < 0 || index >= dims[axis]) return null;
  const [u, v] = otherAxes(axis);
  return { axis, index, width: dims[u], height: dims[v] };
}

/**
 * The grid axis a view looks down (the one its normal moves along most), the focal point's
 * continuous index along it, and how purely the normal runs along it (1: exactly; NaN for a zero
 * normal).
 */
export function viewAxis(
  toIndex: (world: Vec3) => Vec3,
  focalPoint: Vec3,
  normal: Vec3,
): { axis: 0 | 1 | 2; position: number; alignment: number } {
  const at = toIndex(focalPoint);
  const ahead = toIndex([focalPoint[0] + normal[0], focalPoint[1] + normal[1], focalPoint[2] + normal[2]]);
  const step = [0, 1, 2].map((a) => Math.abs((ahead[a] ?? 0) - (at[a] ?? 0)));
  const axis = step.indexOf(Math.max(...step)) as 0 | 1 | 2;
  return { axis, position: at[axis] ?? 0, alignment: (step[axis] ?? 0) / Math.hypot(...step) };
}

/** The two axes that span a plane fixed along `axis`, in the order of (u, v). */
export function otherAxes(axis: 0 | 1 | 2): [0 | 1 | 2, 0 | 1 | 2] {
  if (axis === 0) return [1, 2];
  if (axis === 1) return [0, 2];
  return [0, 1];
}

/** The continuous ijk of the point (u, v) of a plane (u, v in voxels, pixel centres at integers). */
export function planeToIndex(plane: Plane, u: number, v: number): [number, number, number] {
  const ijk: [number, number, number] = [0, 0, 0];
  const [a, b] = otherAxes(plane.axis);
  ijk[plane.axis] = plane.index;
  ijk[a] = u;
  ijk[b] = v;
  return ijk;
}

export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

/**
 * Brings `pixels` (RGBA, one per plane voxel) up to date with the plane's labels `now`, to be
 * drawn over the view as it was at the stroke's start, which shows the labels `before`. A voxel
 * back to its `before` label is transparent; a newly labelled one over an unlabelled voxel shows
 * its segment's look, blended by the canvas; one whose `before` label showed must hide it, so it
 * is drawn opaque: `underneath(i)`, the grey the view gives the image there, with the new
 * segment's look blended in (none where erased). Only voxels that differ from `shown` (what the
 * last call saw; updated here) are visited. Returns the box of pixels that changed, null when
 * none did, or 'erased' when such a voxel needs `underneath` and there is none.
 */
export function paintStroke(
  before: Uint8Array,
  shown: Uint8Array,
  now: Uint8Array,
  pixels: Uint8ClampedArray,
  width: number,
  lookOf: (segment: number) => SegmentLook,
  underneath: ((i: number) => number) | null = null,
): Box | 'erased' | null {
  const n = now.length;
  if (before.length !== n || shown.length !== n || pixels.length !== n * 4) {
    throw new Error('the plane, its copies and its pixels differ in size');
  }
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -1;
  let y1 = -1;
  // skip equal runs four voxels at a time where the arrays allow it
  const words = n % 4 === 0 && now.byteOffset % 4 === 0 && shown.byteOffset % 4 === 0;
  const nowWords = words ? new Uint32Array(now.buffer, now.byteOffset, n / 4) : null;
  const shownWords = words ? new Uint32Array(shown.buffer, shown.byteOffset, n / 4) : null;
  for (let i = 0; i < n; i++) {
    if (nowWords && shownWords && i % 4 === 0 && nowWords[i / 4] === shownWords[i / 4]) {
      i += 3;
      continue;
    }
    const label = now[i] ?? 0;
    if (label === shown[i]) continue;
    const was = before[i] ?? 0;
    const look = label === was || label === 0 ? null : lookOf(label);
    const p = i * 4;
    if (label !== was && was !== 0 && lookOf(was)) {
      if (!underneath) return 'erased';
      const grey = underneath(i);
      const a = look?.alpha ?? 0;
      pixels[p] = Math.round((look?.rgb[0] ?? 0) * a + grey * (1 - a));
      pixels[p + 1] = Math.round((look?.rgb[1] ?? 0) * a + grey * (1 - a));
      pixels[p + 2] = Math.round((look?.rgb[2] ?? 0) * a + grey * (1 - a));
      pixels[p + 3] = 255;
    } else if (look) {
      pixels[p] = look.rgb[0];
      pixels[p + 1] = look.rgb[1];
      pixels[p + 2] = look.rgb[2];
      pixels[p + 3] = Math.round(look.alpha * 255);
    } else {
      pixels[p] = pixels[p + 1] = pixels[p + 2] = pixels[p + 3] = 0;
    }
    shown[i] = label;
    const x = i % width;
    const y = (i - x) / width;
    if (x < x0) x0 = x;
    if (x > x1) x1 = x;
    if (y < y0) y0 = y;
    if (y > y1) y1 = y;
  }
  if (x1 < 0) return null;
  return { x: x0, y: y0, width: x1 - x0 + 1, height: y1 - y0 + 1 };
}
