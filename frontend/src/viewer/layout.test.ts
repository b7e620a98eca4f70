import { describe, expect, it } from 'vitest';
import { LAYOUTS, visibleOrientations } from './layout';

describe('layouts', () => {
  it('shows all three views side by side or as 1 + 2', () => {
    expect(visibleOrientations('3x1')).toEqual(['axial', 'sagittal', 'coronal']);
    expect(visibleOrientations('1+2')).toEqual(['axial', 'sagittal', 'coronal']);
  });

  it.each(['axial', 'sagittal', 'coronal'] as const)('shows one %s view alone', (orientation) => {
    expect(visibleOrientations(orientation)).toEqual([orientation]);
  });

  it('offers every layout once', () => {
    const values = LAYOUTS.map((l) => l.value);
    expect(new Set(values).size).toBe(values.length);
    expect(values).toEqual(expect.arrayContaining(['3x1', '1+2', 'axial', 'sagittal', 'coronal']));
  });
});
