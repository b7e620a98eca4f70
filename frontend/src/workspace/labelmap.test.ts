import { describe, expect, it } from 'vitest';
import { DIFFERENCE, differenceLabelmap } from './labelmap';

describe('the reviewer difference view', () => {
  // 10 voxels; lesion 1 final = 0..3, model = 2..5; lesion 2 final = 8, no model mask
  const final = Uint8Array.from([1, 1, 1, 1, 0, 0, 0, 0, 2, 0]);
  const model1 = Uint8Array.from([0, 0, 1, 1, 1, 1, 0, 0, 0, 0]);

  it('marks what both hold, what the annotator added and what they removed', () => {
    const { labelmap, lesions } = differenceLabelmap(final, [
      { segment: 1, mask: model1 },
      { segment: 2, mask: null },
    ]);
    const { agree: A, added: D, removed: R } = DIFFERENCE;
    expect(Array.from(labelmap)).toEqual([D, D, A, A, R, R, 0, 0, D, 0]);
    expect(lesions).toEqual([
      { segment: 1, agree: 2, added: 2, removed: 2, dice: 0.5 },
      { segment: 2, agree: 0, added: 1, removed: 0, dice: 0 },
    ]);
  });

  it('gives Dice 1 for identical masks and for two empty ones', () => {
    const same = differenceLabelmap(Uint8Array.from([0, 3, 3]), [{ segment: 3, mask: Uint8Array.from([0, 1, 1]) }]);
    expect(same.lesions[0]!.dice).toBe(1);
    const empty = differenceLabelmap(new Uint8Array(3), [{ segment: 4, mask: new Uint8Array(3) }]);
    expect(empty.lesions[0]).toEqual({ segment: 4, agree: 0, added: 0, removed: 0, dice: 1 });
  });

  it('refuses a model mask of another size', () => {
    expect(() => differenceLabelmap(final, [{ segment: 1, mask: new Uint8Array(3) }])).toThrow(/3 voxels, not 10/);
  });
});
