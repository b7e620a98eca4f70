import { describe, expect, it } from 'vitest';
import { rangeLabel, rangeMark, rangeMarkText, sliceLabel, windowLevelText } from './overlayText';

describe('sliceLabel', () => {
  it('counts from 1 for display', () => {
    expect(sliceLabel(36, 134)).toBe('Slice 37 / 134');
    expect(sliceLabel(0, 59)).toBe('Slice 1 / 59');
    expect(sliceLabel(58, 59)).toBe('Slice 59 / 59');
    expect(sliceLabel(4, 40, 'Frame')).toBe('Frame 5 / 40');
  });
});

describe('rangeLabel', () => {
  it('shows the marked range sorted and 1-based', () => {
    expect(rangeLabel({ first: 29, last: 44 })).toBe('Range 30-45');
    expect(rangeLabel({ first: 44, last: 29 })).toBe('Range 30-45');
    expect(rangeLabel({ first: 5, last: 5 })).toBe('Range 6-6');
  });

  it('shows a half-marked range with a question mark, and nothing without marks', () => {
    expect(rangeLabel({ first: 29, last: null })).toBe('Range 30-?');
    expect(rangeLabel({ first: null, last: 44 })).toBe('Range ?-45');
    expect(rangeLabel({ first: null, last: null })).toBeNull();
    expect(rangeLabel(null)).toBeNull();
  });
});

describe('rangeMark', () => {
  const marks = { first: 44, last: 29 };

  it('tells the marked ends, inside and outside', () => {
    expect(rangeMark(44, marks)).toBe('first');
    expect(rangeMark(29, marks)).toBe('last');
    expect(rangeMark(30, marks)).toBe('inside');
    expect(rangeMark(43, marks)).toBe('inside');
    expect(rangeMark(28, marks)).toBe('outside');
    expect(rangeMark(45, marks)).toBe('outside');
    expect(rangeMark(7, { first: 7, last: 7 })).toBe('only');
  });

  it('has no inside before both ends are marked', () => {
    expect(rangeMark(10, { first: 10, last: null })).toBe('first');
    expect(rangeMark(11, { first: 10, last: null })).toBe('outside');
    expect(rangeMark(11, { first: null, last: null })).toBeNull();
    expect(rangeMark(11, null)).toBeNull();
  });

  it('has a text for each mark', () => {
    expect(rangeMarkText('first')).toBe('First slice');
    expect(rangeMarkText('last')).toBe('Last slice');
    expect(rangeMarkText('inside')).toBe('In range');
    expect(rangeMarkText(null)).toBe('');
  });
});

describe('windowLevelText', () => {
  it('shows width and level of a VOI range', () => {
    expect(windowLevelText({ lower: -160, upper: 240 })).toBe('W 400 L 40');
    expect(windowLevelText({ lower: -500, upper: 1500 })).toBe('W 2000 L 500');
    expect(windowLevelText({ lower: -1350, upper: 150 })).toBe('W 1500 L -600');
  });

  it('rounds CT to whole units and keeps decimals for small windows (PET SUV)', () => {
    expect(windowLevelText({ lower: -160.4, upper: 240.2 })).toBe('W 401 L 40');
    expect(windowLevelText({ lower: 0, upper: 5 })).toBe('W 5 L 2.5');
    expect(windowLevelText({ lower: 0.1, upper: 0.6 })).toBe('W 0.5 L 0.35');
    expect(windowLevelText({ lower: -0.2, upper: 0.2 })).toBe('W 0.4 L 0');
  });

  it('is empty without a window', () => {
    expect(windowLevelText(null)).toBe('');
    expect(windowLevelText(undefined)).toBe('');
    expect(windowLevelText({ lower: Number.NaN, upper: 3 })).toBe('');
  });
});
