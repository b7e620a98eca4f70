// The lesion's slice range as a prompt: the annotator marks the first and the last slice of a
// lesion (one key each, while scrolling the axial view), and every segmentation request of that
// lesion carries `z_range: [z0, z1]` (slice indices of the volume's axis 0, inclusive: the
// server's convention, the same index as `key_slice`).
//
// The two marks are kept as marked: a volume may run head to foot or foot to head, so the
// "first" slice of a scroll may have the higher index; the range is their sorted pair. A range
// is sent only once both ends are marked. The server refuses a prompt whose slices lie outside
// the range, so a request widens the range to its key slice, corrected slice and positive clicks
// (the lesion is there: the annotator drew or clicked on it) and says so; a negative click
// outside the range is left out (nothing is segmented there anyway).

import type { Point, SegmentRequest } from '../api/types';
import type { RangeMarks } from '../viewer/types';

export type { RangeMarks };

export type RangeEnd = 'first' | 'last';

export const NO_MARKS: RangeMarks = Object.freeze({ first: null, last: null });

/** The marks with one end set to `slice`. */
export function markEnd(marks: RangeMarks, end: RangeEnd, slice: number): RangeMarks {
  if (!Number.isInteger(slice) || slice < 0) throw new Error(`slice ${slice} is not a slice index`);
  return { ...marks, [end]: slice };
}

/** [z0, z1] (sorted, inclusive) once both ends are marked; null before. */
export function zRangeOf(marks: RangeMarks): [number, number] | null {
  if (marks.first === null || marks.last === null) return null;
  return marks.first <= marks.last ? [marks.first, marks.last] : [marks.last, marks.first];
}

/** The marks of `range`, keeping which end was marked at the higher slice. */
function marksOf(range: [number, number], previous: RangeMarks): RangeMarks {
  const descending = previous.first !== null && previous.last !== null && previous.first > previous.last;
  return descending ? { first: range[1], last: range[0] } : { first: range[0], last: range[1] };
}

export interface FittedPrompt {
  /** The request to send: `z_range` set when the lesion has a complete range. */
  prompt: SegmentRequest;
  /** The lesion's marks after the request (widened, or as they were). */
  marks: RangeMarks;
  widened: boolean;
  /** Negative clicks outside the range, left out of the request. */
  dropped: Point[];
  /** What the annotator is told ("The slice range 30-45 was widened to 30-52 ..."), or null. */
  message: string | null;
}

/** "slice 52" / "slices 12 and 52" / "slices 3, 12 and 52" (1-based, as the views show them). */
function slicesText(slices: number[]): string {
  const shown = [...new Set(slices)].sort((a, b) => a - b).map((z) => String(z + 1));
  if (shown.length === 1) return `slice ${shown[0]}`;
  return `slices ${shown.slice(0, -1).join(', ')} and ${shown[shown.length - 1]}`;
}

/** "30-45": a range as the views show it (1-based). */
export function rangeText(range: [number, number]): string {
  return `${range[0] + 1}-${range[1] + 1}`;
}

/**
 * The request with the lesion's range: `z_range` added (the caller's own `z_range` is replaced),
 * widened to the slices the prompt needs, negative clicks outside it left out.
 */
export function fitPromptToRange(prompt: SegmentRequest, marks: RangeMarks): FittedPrompt {
  const range = zRangeOf(marks);
  const base: SegmentRequest = { ...prompt };
  delete base.z_range;
  if (!range) return { prompt: base, marks, widened: false, dropped: [], message: null };

  const needed: { slice: number; why: string }[] = [];
  if (prompt.key_slice !== undefined) needed.push({ slice: prompt.key_slice, why: 'the key slice' });
  if (prompt.mask_slice !== undefined) needed.push({ slice: prompt.mask_slice, why: 'the corrected slice' });
  for (const p of prompt.positive_points ?? []) needed.push({ slice: p[2], why: 'a positive click' });
  const outside = needed.filter((n) => n.slice < range[0] || n.slice > range[1]);
  const fitted: [number, number] = [
    Math.min(range[0], ...needed.map((n) => n.slice)),
    Math.max(range[1], ...needed.map((n) => n.slice)),
  ];
  const dropped = (prompt.negative_points ?? []).filter((p) => p[2] < fitted[0] || p[2] > fitted[1]);
  if (prompt.negative_points) {
    const kept = prompt.negative_points.filter((p) => !dropped.includes(p));
    if (kept.length) base.negative_points = kept;
    else delete base.negative_points;
  }
  base.z_range = fitted;

  const lines: string[] = [];
  if (outside.length) {
    const whys = [...new Set(outside.map((n) => n.why))].join(' and ');
    lines.push(
      `The slice range ${rangeText(range)} was widened to ${rangeText(fitted)} to include ${whys} `
      + `(${slicesText(outside.map((n) => n.slice))}).`,
    );
  }
  if (dropped.length) {
    lines.push(
      `${dropped.length === 1 ? 'A negative click' : `${dropped.length} negative clicks`} outside the slice range `
      + `(${slicesText(dropped.map((p) => p[2]))}) ${dropped.length === 1 ? 'was' : 'were'} left out.`,
    );
  }
  return {
    prompt: base,
    marks: outside.length ? marksOf(fitted, marks) : marks,
    widened: outside.length > 0,
    dropped,
    message: lines.length ? lines.join(' ') : null,
  };
}

/**
 * The marks of every lesion of the open workspace (kept in the page, not on the server). Marks
 * made while no lesion is selected wait under `null` and go to the next lesion created.
 */
export class SliceRanges {
  private readonly marks = new Map<number | null, RangeMarks>();
  private readonly listeners = new Set<() => void>();

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(): void {
    for (const listener of [...this.listeners]) listener();
  }

  get(lesionId: number | null): RangeMarks {
    return this.marks.get(lesionId) ?? NO_MARKS;
  }

  range(lesionId: number | null): [number, number] | null {
    return zRangeOf(this.get(lesionId));
  }

  mark(lesionId: number | null, end: RangeEnd, slice: number): RangeMarks {
    const next = markEnd(this.get(lesionId), end, slice);
    this.marks.set(lesionId, next);
    this.emit();
    return next;
  }

  set(lesionId: number | null, marks: RangeMarks): void {
    if (marks.first === null && marks.last === null) this.marks.delete(lesionId);
    else this.marks.set(lesionId, { ...marks });
    this.emit();
  }

  clear(lesionId: number | null): void {
    if (!this.marks.delete(lesionId)) return;
    this.emit();
  }

  /** A new lesion takes the marks made while none was selected. */
  adoptPending(lesionId: number): void {
    const pending = this.marks.get(null);
    if (!pending || this.marks.has(lesionId)) return;
    this.marks.delete(null);
    this.marks.set(lesionId, pending);
    this.emit();
  }

  /** `fitPromptToRange` with the lesion's marks; a widened range is kept. */
  fit(lesionId: number, prompt: SegmentRequest): FittedPrompt {
    const fitted = fitPromptToRange(prompt, this.get(lesionId));
    if (fitted.widened) this.set(lesionId, fitted.marks);
    return fitted;
  }
}
