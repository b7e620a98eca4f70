// What each view's overlay says: the slice out of the total, the lesion's marked slice range,
// the window / level. Plain functions (no Cornerstone): the overlay (viewOverlay.ts) shows them.
// Slices are shown 1-based ("Slice 1 / 59" is index 0); ranges and indices sent to the server
// stay 0-based.

import type { RangeMarks } from './types';

/** "Slice 37 / 134" for index 36 of 134 ("Frame" for a cine). */
export function sliceLabel(index: number, total: number, noun = 'Slice'): string {
  return `${noun} ${index + 1} / ${total}`;
}

/** "Range 30-45" (sorted), "Range 30-?" while one end is marked, null when none is. */
export function rangeLabel(marks: RangeMarks | null, prefix = 'Range'): string | null {
  if (!marks || (marks.first === null && marks.last === null)) return null;
  const shown = (z: number | null): string => (z === null ? '?' : String(z + 1));
  if (marks.first !== null && marks.last !== null) {
    const [a, b] = marks.first <= marks.last ? [marks.first, marks.last] : [marks.last, marks.first];
    return `${prefix} ${shown(a)}-${shown(b)}`;
  }
  return `${prefix} ${shown(marks.first)}-${shown(marks.last)}`;
}

/** Where a slice stands against the marks: on a marked end, inside, outside; null: no marks. */
export type RangeMark = 'first' | 'last' | 'only' | 'inside' | 'outside';

export function rangeMark(index: number, marks: RangeMarks | null): RangeMark | null {
  if (!marks || (marks.first === null && marks.last === null)) return null;
  const { first, last } = marks;
  if (first === index && last === index) return 'only';
  if (first === index) return 'first';
  if (last === index) return 'last';
  if (first === null || last === null) return 'outside';
  return index >= Math.min(first, last) && index <= Math.max(first, last) ? 'inside' : 'outside';
}

const MARK_TEXT: Record<RangeMark, string> = {
  first: 'First slice',
  last: 'Last slice',
  only: 'First and last slice',
  inside: 'In range',
  outside: 'Outside range',
};

export function rangeMarkText(mark: RangeMark | null): string {
  return mark ? MARK_TEXT[mark] : '';
}

/** A number as short as its size allows: 400, 40, 2.5, 0.35. */
function shortNumber(value: number, width: number): string {
  const digits = width >= 10 ? 0 : width >= 1 ? 1 : 2;
  const text = value.toFixed(digits);
  const trimmed = digits ? text.replace(/\.?0+$/, '') : text;
  return trimmed === '-0' ? '0' : trimmed;
}

/** "W 400 L 40" of a VOI range (lower, upper: the window's ends in modality units). */
export function windowLevelText(range: { lower: number; upper: number } | null | undefined): string {
  if (!range || !Number.isFinite(range.lower) || !Number.isFinite(range.upper)) return '';
  const width = range.upper - range.lower;
  const level = (range.upper + range.lower) / 2;
  return `W ${shortNumber(width, Math.abs(width))} L ${shortNumber(level, Math.abs(width))}`;
}
