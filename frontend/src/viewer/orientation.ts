// Orientation letters on the four edges of a view, from its camera (no Cornerstone import).
//
// World coordinates are DICOM patient coordinates (LPS): +x towards the patient's Left, +y
// Posterior, +z Superior (head). A camera's `viewUp` is the world direction that points up on
// the screen; `viewPlaneNormal` points from the focal point towards the camera (vtk.js and
// Cornerstone3D), so the camera looks along -normal and the screen's right is viewUp x normal.
// Cornerstone's axial camera (normal [0, 0, -1], up [0, -1, 0]) thus puts the patient's Right
// on the screen's left: the radiological convention. Flips and rotations change the camera,
// and so the letters.

export type Vec3 = readonly [number, number, number];

/** A direction's component below this share of its length adds no letter (about 6 degrees). */
export const MIN_COMPONENT = 0.1;

const POSITIVE = ['L', 'P', 'S'] as const;
const NEGATIVE = ['R', 'A', 'I'] as const;

/**
 * The letters of a world direction, strongest first: [1, 0, 0] is "L", [0, -1, 0] "A", a
 * direction 30 degrees off the patient's left towards the head "LS". Empty for a zero vector.
 */
export function directionLetters(v: Vec3, minComponent = MIN_COMPONENT): string {
  const length = Math.hypot(v[0], v[1], v[2]);
  if (!(length > 0)) return '';
  return [0, 1, 2]
    .map((axis) => ({ axis, share: Math.abs(v[axis]!) / length }))
    .filter((c) => c.share >= minComponent)
    .sort((a, b) => b.share - a.share || a.axis - b.axis)
    .map(({ axis }) => (v[axis]! > 0 ? POSITIVE[axis] : NEGATIVE[axis]))
    .join('');
}

export function cross(a: Vec3, b: Vec3): [number, number, number] {
  return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
}

function negate(v: Vec3): [number, number, number] {
  return [-v[0], -v[1], -v[2]];
}

export interface EdgeLetters {
  top: string;
  bottom: string;
  left: string;
  right: string;
}

/** The letters of the four screen edges of a camera (see the top of the file). */
export function edgeLetters(viewUp: Vec3, viewPlaneNormal: Vec3): EdgeLetters {
  const right = cross(viewUp, viewPlaneNormal);
  return {
    top: directionLetters(viewUp),
    bottom: directionLetters(negate(viewUp)),
    left: directionLetters(negate(right)),
    right: directionLetters(right),
  };
}
