import { describe, expect, it, vi } from 'vitest';
import type { SegmentRequest } from '../api/types';
import { boxPrompt, propagatePrompt } from './segmentJob';
import { fitPromptToRange, markEnd, rangeText, SliceRanges, zRangeOf } from './sliceRange';

describe('marks and their range', () => {
  it('needs both ends, and sorts them (a scroll may run towards lower indices)', () => {
    expect(zRangeOf({ first: null, last: null })).toBeNull();
    expect(zRangeOf({ first: 30, last: null })).toBeNull();
    expect(zRangeOf({ first: 29, last: 44 })).toEqual([29, 44]);
    expect(zRangeOf({ first: 44, last: 29 })).toEqual([29, 44]);
    expect(zRangeOf({ first: 7, last: 7 })).toEqual([7, 7]);
  });

  it('marks one end and keeps the other', () => {
    const first = markEnd({ first: null, last: null }, 'first', 12);
    expect(first).toEqual({ first: 12, last: null });
    expect(markEnd(first, 'last', 20)).toEqual({ first: 12, last: 20 });
    expect(markEnd({ first: 12, last: 20 }, 'first', 15)).toEqual({ first: 15, last: 20 });
    expect(() => markEnd(first, 'last', -1)).toThrow(/not a slice index/);
    expect(() => markEnd(first, 'last', 2.5)).toThrow(/not a slice index/);
  });

  it('shows ranges 1-based', () => {
    expect(rangeText([29, 44])).toBe('30-45');
  });
});

describe('fitPromptToRange', () => {
  const box: [number, number, number, number] = [10, 10, 40, 40];

  it('sends no z_range until both ends are marked', () => {
    const asked = boxPrompt(30, box, { zRange: [0, 5] });
    const fitted = fitPromptToRange(asked, { first: 25, last: null });
    expect(fitted.prompt).toEqual({ key_slice: 30, box });
    expect(fitted.message).toBeNull();
  });

  it('adds the range to a box, to clicks and to a propagated correction', () => {
    const marks = { first: 45, last: 30 };
    expect(fitPromptToRange(boxPrompt(37, box), marks).prompt).toEqual({ key_slice: 37, box, z_range: [30, 45] });
    const clicks = boxPrompt(37, box, { positive: [[20, 20, 33]], negative: [[30, 30, 40]] });
    expect(fitPromptToRange(clicks, marks).prompt).toEqual({ ...clicks, z_range: [30, 45] });
    const fitted = fitPromptToRange(propagatePrompt(31), marks);
    expect(fitted.prompt).toEqual({ mask_slice: 31, z_range: [30, 45] });
    expect(fitted).toMatchObject({ widened: false, message: null, marks });
  });

  it('widens the range to a key slice outside it, and says so', () => {
    const fitted = fitPromptToRange(boxPrompt(51, box), { first: 29, last: 44 });
    expect(fitted.prompt.z_range).toEqual([29, 51]);
    expect(fitted.widened).toBe(true);
    expect(fitted.marks).toEqual({ first: 29, last: 51 });
    expect(fitted.message).toBe('The slice range 30-45 was widened to 30-52 to include the key slice (slice 52).');
  });

  it('keeps a descending range descending when it widens it', () => {
    const fitted = fitPromptToRange(boxPrompt(10, box), { first: 44, last: 29 });
    expect(fitted.prompt.z_range).toEqual([10, 44]);
    expect(fitted.marks).toEqual({ first: 44, last: 10 });
  });

  it('widens to a corrected slice and to positive clicks on both sides', () => {
    expect(fitPromptToRange(propagatePrompt(3), { first: 5, last: 9 }).prompt).toEqual({ mask_slice: 3, z_range: [3, 9] });
    const clicks = boxPrompt(7, box, { positive: [[1, 1, 2], [1, 1, 12], [1, 1, 8]] });
    const fitted = fitPromptToRange(clicks, { first: 5, last: 9 });
    expect(fitted.prompt.z_range).toEqual([2, 12]);
    expect(fitted.message).toContain('a positive click (slices 3 and 13)');
  });

  it('leaves out negative clicks outside the range instead of widening it', () => {
    const clicks: SegmentRequest = boxPrompt(7, box, { negative: [[1, 1, 7], [2, 2, 20], [3, 3, 0]] });
    const fitted = fitPromptToRange(clicks, { first: 5, last: 9 });
    expect(fitted.prompt.z_range).toEqual([5, 9]);
    expect(fitted.prompt.negative_points).toEqual([[1, 1, 7]]);
    expect(fitted.dropped).toEqual([[2, 2, 20], [3, 3, 0]]);
    expect(fitted.widened).toBe(false);
    expect(fitted.message).toBe('2 negative clicks outside the slice range (slices 1 and 21) were left out.');
    const none = fitPromptToRange(boxPrompt(7, box, { negative: [[2, 2, 20]] }), { first: 5, last: 9 });
    expect(none.prompt).not.toHaveProperty('negative_points');
    expect(none.message).toBe('A negative click outside the slice range (slice 21) was left out.');
  });

  it('checks negative clicks against the widened range', () => {
    const clicks = boxPrompt(12, box, { negative: [[1, 1, 11]] });
    const fitted = fitPromptToRange(clicks, { first: 5, last: 9 });
    expect(fitted.prompt).toMatchObject({ z_range: [5, 12], negative_points: [[1, 1, 11]] });
    expect(fitted.dropped).toEqual([]);
  });

  it('every prompted slice lies inside the range it sends (the server refuses others)', () => {
    const prompts = [
      boxPrompt(0, box, { positive: [[1, 1, 58]], negative: [[1, 1, 30], [1, 1, 59]] }),
      propagatePrompt(58),
      boxPrompt(20, box),
    ];
    for (const marks of [{ first: 10, last: 40 }, { first: 40, last: 10 }, { first: 0, last: 0 }]) {
      for (const asked of prompts) {
        const { prompt } = fitPromptToRange(asked, marks);
        const [z0, z1] = prompt.z_range!;
        const slices = [prompt.key_slice, prompt.mask_slice, ...[...(prompt.positive_points ?? []), ...(prompt.negative_points ?? [])].map((p) => p[2])]
          .filter((z): z is number => z !== undefined);
        for (const z of slices) expect(z0 <= z && z <= z1).toBe(true);
      }
    }
  });
});

describe('SliceRanges', () => {
  it('keeps marks per lesion and tells its listeners', () => {
    const ranges = new SliceRanges();
    const heard = vi.fn();
    ranges.subscribe(heard);
    ranges.mark(1, 'first', 30);
    ranges.mark(1, 'last', 45);
    ranges.mark(2, 'first', 3);
    expect(ranges.range(1)).toEqual([30, 45]);
    expect(ranges.get(2)).toEqual({ first: 3, last: null });
    expect(ranges.range(2)).toBeNull();
    expect(ranges.get(3)).toEqual({ first: null, last: null });
    expect(heard).toHaveBeenCalledTimes(3);
  });

  it('clears one lesion only', () => {
    const ranges = new SliceRanges();
    ranges.mark(1, 'first', 30);
    ranges.mark(2, 'last', 8);
    const heard = vi.fn();
    ranges.subscribe(heard);
    ranges.clear(1);
    ranges.clear(1); // nothing left: no news
    expect(ranges.get(1)).toEqual({ first: null, last: null });
    expect(ranges.get(2)).toEqual({ first: null, last: 8 });
    expect(heard).toHaveBeenCalledTimes(1);
  });

  it('gives the marks made with no lesion to the next new one', () => {
    const ranges = new SliceRanges();
    ranges.mark(null, 'first', 4);
    ranges.mark(null, 'last', 9);
    ranges.adoptPending(7);
    expect(ranges.range(7)).toEqual([4, 9]);
    expect(ranges.get(null)).toEqual({ first: null, last: null });
    ranges.mark(null, 'first', 1);
    ranges.adoptPending(7); // 7 has its own marks already
    expect(ranges.range(7)).toEqual([4, 9]);
    expect(ranges.get(null)).toEqual({ first: 1, last: null });
  });

  it('keeps the range a request widened', () => {
    const ranges = new SliceRanges();
    ranges.mark(1, 'first', 29);
    ranges.mark(1, 'last', 44);
    const fitted = ranges.fit(1, boxPrompt(51, [1, 1, 9, 9]));
    expect(fitted.prompt.z_range).toEqual([29, 51]);
    expect(ranges.get(1)).toEqual({ first: 29, last: 51 });
    expect(ranges.fit(1, propagatePrompt(40)).prompt.z_range).toEqual([29, 51]);
    expect(ranges.fit(2, propagatePrompt(40)).prompt).toEqual({ mask_slice: 40 });
  });
});
