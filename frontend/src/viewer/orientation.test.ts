import { describe, expect, it } from 'vitest';
import { cross, directionLetters, edgeLetters, type Vec3 } from './orientation';

// Cornerstone3D's cameras for its orientation presets (core/constants/mprCameraValues.js).
const AXIAL = { up: [0, -1, 0], normal: [0, 0, -1] } as const;
const SAGITTAL = { up: [0, 0, 1], normal: [1, 0, 0] } as const;
const CORONAL = { up: [0, 0, 1], normal: [0, -1, 0] } as const;

function rotate(v: Vec3, axis: Vec3, degrees: number): Vec3 {
  // Rodrigues' formula, axis of unit length
  const t = (degrees * Math.PI) / 180;
  const [c, s] = [Math.cos(t), Math.sin(t)];
  const k = cross(axis, v);
  const dot = axis[0] * v[0] + axis[1] * v[1] + axis[2] * v[2];
  return [0, 1, 2].map((i) => v[i]! * c + k[i]! * s + axis[i]! * dot * (1 - c)) as unknown as Vec3;
}

describe('directionLetters', () => {
  it('names the patient axes (LPS world coordinates)', () => {
    expect(directionLetters([1, 0, 0])).toBe('L');
    expect(directionLetters([-1, 0, 0])).toBe('R');
    expect(directionLetters([0, 1, 0])).toBe('P');
    expect(directionLetters([0, -1, 0])).toBe('A');
    expect(directionLetters([0, 0, 1])).toBe('S');
    expect(directionLetters([0, 0, -2])).toBe('I');
  });

  it('names an oblique direction strongest first, and ignores slight tilts', () => {
    expect(directionLetters([Math.cos(0.5), 0, Math.sin(0.5)])).toBe('LS');
    expect(directionLetters([-0.3, -0.9, 0.2])).toBe('ARS');
    expect(directionLetters([0.02, -1, 0.05])).toBe('A'); // a 3 degree gantry tilt
    expect(directionLetters([0, 0, 0])).toBe('');
  });
});

describe('edgeLetters', () => {
  it('axial: anterior up, the patient\'s right on the screen\'s left (radiological)', () => {
    expect(edgeLetters(AXIAL.up, AXIAL.normal)).toEqual({ top: 'A', bottom: 'P', left: 'R', right: 'L' });
  });

  it('sagittal: head up, anterior on the left', () => {
    expect(edgeLetters(SAGITTAL.up, SAGITTAL.normal)).toEqual({ top: 'S', bottom: 'I', left: 'A', right: 'P' });
  });

  it('coronal: head up, the patient\'s right on the left', () => {
    expect(edgeLetters(CORONAL.up, CORONAL.normal)).toEqual({ top: 'S', bottom: 'I', left: 'R', right: 'L' });
  });

  it('follows a horizontal flip (Cornerstone negates the normal) and a vertical one', () => {
    // Viewport.flip: flipHorizontal keeps viewUp and negates viewPlaneNormal
    expect(edgeLetters(AXIAL.up, [0, 0, 1])).toEqual({ top: 'A', bottom: 'P', left: 'L', right: 'R' });
    // flipVertical negates both
    expect(edgeLetters([0, 1, 0], [0, 0, 1])).toEqual({ top: 'P', bottom: 'A', left: 'R', right: 'L' });
  });

  it('follows an in-plane rotation of 90 degrees', () => {
    const up = rotate(AXIAL.up, [0, 0, 1], 90); // the view turned a quarter
    const letters = edgeLetters(up, AXIAL.normal);
    expect(new Set(Object.values(letters))).toEqual(new Set(['A', 'P', 'R', 'L']));
    expect(letters.top).not.toBe('A');
    expect([letters.top, letters.bottom].sort()).toEqual(['L', 'R']);
  });

  it('names an oblique view with two letters where it is tilted', () => {
    // the axial camera tilted 30 degrees about the patient's left-right axis (a gantry tilt)
    const axis: Vec3 = [1, 0, 0];
    const letters = edgeLetters(rotate(AXIAL.up, axis, 30), rotate(AXIAL.normal, axis, 30));
    expect(letters.left).toBe('R');
    expect(letters.right).toBe('L');
    expect(letters.top).toHaveLength(2);
    expect(letters.top[0]).toBe('A');
    expect(letters.bottom[0]).toBe('P');
    expect(letters.top[1]).not.toBe(letters.bottom[1]); // S and I: opposite tilts
    expect(new Set([letters.top[1], letters.bottom[1]])).toEqual(new Set(['S', 'I']));
  });
});
