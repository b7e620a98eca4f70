import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiError } from '../api/client';
import type { EffortBatch } from '../api/types';
import { EffortTracker, IDLE_CUTOFF_S, MAX_INTERACTIONS, MAX_INTERVALS, type EffortTargets } from './effort';

const T0 = Date.parse('2026-11-27T10:00:00Z');
const S = 1000;

function setup(options: { heartbeatMs?: number } = {}) {
  let t = T0;
  const batches: EffortBatch[] = [];
  const post = vi.fn(async (batch: EffortBatch, _opts: { keepalive?: boolean }) => {
    batches.push(batch);
    return batch;
  });
  const tracker = new EffortTracker(3, post, { now: () => t, ...options });
  return {
    tracker,
    post,
    batches,
    at: (seconds: number) => { t = T0 + seconds * S; },
  };
}

/** Seconds the server would count: it sums intervals (all pieces start with a signal). */
function seconds(batches: EffortBatch[]): number {
  return batches.flatMap((b) => b.intervals)
    .reduce((sum, i) => sum + (Date.parse(i.ended_at) - Date.parse(i.started_at)) / S, 0);
}

afterEach(() => vi.useRealTimers());

describe('EffortTracker', () => {
  it('uses the server idle cut-off (projects/effort.py DEFAULT_IDLE_CUTOFF_S)', () => {
    expect(IDLE_CUTOFF_S).toBe(120);
  });

  it('counts continuous activity fully, in pieces no longer than the heartbeat', async () => {
    const { tracker, batches, at } = setup({ heartbeatMs: 30 * S });
    at(0); tracker.activity();
    for (let s = 10; s <= 100; s += 10) { at(s); tracker.activity(); }
    at(100); await tracker.tick();
    expect(seconds(batches)).toBe(100);
    const pieces = batches.flatMap((b) => b.intervals);
    expect(pieces[0]).toEqual({ started_at: '2026-11-27T10:00:00.000Z', ended_at: '2026-11-27T10:00:30.000Z', lesion: null });
    expect(pieces.every((p) => Date.parse(p.ended_at) - Date.parse(p.started_at) <= 30 * S)).toBe(true);
  });

  it('stops counting the cut-off after the last activity', async () => {
    const { tracker, batches, at } = setup();
    at(0); tracker.activity();
    at(10); tracker.activity();
    at(1000); await tracker.tick(); // idle since 10 s: active until 10 + 120
    expect(seconds(batches)).toBe(130);
    expect(tracker.isIdle).toBe(true);
    at(1100); await tracker.tick();
    expect(seconds(batches)).toBe(130);
    at(2000); tracker.activity(); // back: a new interval starts at the activity
    at(2030); await tracker.tick();
    expect(seconds(batches)).toBe(160);
    expect(batches.at(-1)!.intervals[0]!.started_at).toBe(new Date(T0 + 2000 * S).toISOString());
  });

  it('does not count the idle gap when activity resumes after the cut-off (without a heartbeat)', async () => {
    const { tracker, batches, at } = setup();
    at(0); tracker.activity();
    at(500); tracker.activity(); // 500 s later: 0..120 counted, 120..500 not
    at(510); await tracker.tick();
    expect(seconds(batches)).toBe(130);
  });

  it('pauses when the page is hidden or loses focus', async () => {
    const { tracker, batches, at } = setup();
    at(0); tracker.activity();
    at(20); tracker.pause();
    at(80); await tracker.tick();
    expect(seconds(batches)).toBe(20);
    at(90); tracker.resume();
    at(100); await tracker.tick();
    expect(seconds(batches)).toBe(30);
  });

  it('splits intervals by the selected lesion', async () => {
    const { tracker, batches, at } = setup();
    at(0); tracker.setLesion(4);
    at(10); tracker.setLesion(5);
    at(25); tracker.setLesion(null);
    at(30); await tracker.tick();
    const byLesion = batches[0]!.intervals.map((i) => [i.lesion, (Date.parse(i.ended_at) - Date.parse(i.started_at)) / S]);
    expect(byLesion).toEqual([[4, 10], [5, 15], [null, 5]]);
  });

  it('records interactions per tool, with lesion and slice, as activity', async () => {
    const { tracker, batches, at, post } = setup();
    tracker.setLesion(7);
    at(1); tracker.interaction('box', { slice: 12 });
    at(2); tracker.interaction('brush', { slice: 12 });
    at(3); tracker.interaction('brush', { lesion: null });
    at(4); tracker.interaction('undo');
    expect(tracker.counts()).toMatchObject({ box: 1, brush: 2, undo: 1, redo: 0, 'point+': 0 });
    at(5); await tracker.tick();
    expect(post).toHaveBeenCalledTimes(1);
    expect(batches[0]!.interactions).toEqual([
      { tool: 'box', at: '2026-11-27T10:00:01.000Z', lesion: 7, slice_index: 12 },
      { tool: 'brush', at: '2026-11-27T10:00:02.000Z', lesion: 7, slice_index: 12 },
      { tool: 'brush', at: '2026-11-27T10:00:03.000Z', lesion: null, slice_index: null },
      { tool: 'undo', at: '2026-11-27T10:00:04.000Z', lesion: 7, slice_index: null },
    ]);
    // nothing pending: no empty request
    await tracker.flush();
    expect(post).toHaveBeenCalledTimes(1);
  });

  it('keeps a batch the server could not take and sends it with the next one', async () => {
    const { tracker, batches, at, post } = setup();
    post.mockRejectedValueOnce(new ApiError(0, 'offline'));
    at(0); tracker.interaction('box');
    at(10); await tracker.tick();
    expect(batches).toHaveLength(0);
    at(15); tracker.interaction('brush');
    at(20); await tracker.tick();
    expect(batches).toHaveLength(1);
    expect(batches[0]!.interactions.map((i) => i.tool)).toEqual(['box', 'brush']);
    expect(seconds(batches)).toBe(20);
  });

  it('sends a backlog in requests no larger than the server takes, in order', async () => {
    const { tracker, batches, at, post } = setup({ heartbeatMs: 30 * S });
    post.mockRejectedValueOnce(new ApiError(0, 'offline'));
    const backlog = MAX_INTERACTIONS + 10;
    for (let i = 0; i < backlog; i++) { at(i / 10); tracker.interaction('brush'); }
    at(MAX_INTERVALS * 30 + 45); tracker.activity(); // keep active: one piece every 30 s
    for (let i = 0; i < MAX_INTERVALS + 10; i++) { at(MAX_INTERVALS * 30 + 45 + i * 30); tracker.activity(); }
    await tracker.tick(); // offline: everything stays pending
    expect(batches).toHaveLength(0);
    at(MAX_INTERVALS * 60 + 400); await tracker.tick();
    expect(batches.length).toBeGreaterThan(1);
    expect(Math.max(...batches.map((b) => b.intervals.length))).toBeLessThanOrEqual(MAX_INTERVALS);
    expect(Math.max(...batches.map((b) => b.interactions.length))).toBeLessThanOrEqual(MAX_INTERACTIONS);
    const sent = batches.flatMap((b) => b.interactions.map((x) => Date.parse(x.at)));
    expect(sent).toHaveLength(backlog);
    expect(sent).toEqual([...sent].sort((x, y) => x - y));
    expect(batches.flatMap((b) => b.intervals).length).toBeGreaterThan(MAX_INTERVALS);
  });

  it('stops sending after a 403 (not the task annotator)', async () => {
    const { tracker, at, post } = setup();
    post.mockRejectedValueOnce(new ApiError(403, "only the task's annotator records effort on it"));
    at(0); tracker.interaction('box');
    at(5); await tracker.tick();
    expect(tracker.enabled).toBe(false);
    tracker.interaction('brush');
    at(10); await tracker.tick();
    expect(post).toHaveBeenCalledTimes(1);
  });

  it('resends without a deleted lesion the server refuses', async () => {
    const { tracker, batches, at, post } = setup();
    post.mockRejectedValueOnce(new ApiError(400, 'lesion 7 is not part of task 3'));
    tracker.setLesion(7);
    at(1); tracker.interaction('brush');
    at(2); await tracker.tick();
    at(3); await tracker.tick();
    expect(batches[0]!.interactions[0]!.lesion).toBeNull();
    expect(batches[0]!.intervals[0]!.lesion).toBeNull();
  });

  it('forgets a deleted lesion in pending items', () => {
    const { tracker, at } = setup();
    tracker.setLesion(7);
    at(1); tracker.interaction('brush');
    tracker.forgetLesion(7);
    expect(tracker.pending().interactions[0]!.lesion).toBeNull();
  });

  it('listens to activity, visibility and focus, sends on heartbeats and on pagehide', async () => {
    vi.useFakeTimers({ now: T0 });
    const win = new EventTarget();
    const doc = Object.assign(new EventTarget(), { visibilityState: 'visible' as DocumentVisibilityState, hasFocus: () => true });
    const post = vi.fn(async (batch: EffortBatch, _opts: { keepalive?: boolean }) => batch);
    const tracker = new EffortTracker(3, post, { heartbeatMs: 30 * S });
    tracker.start({ window: win, document: doc } as unknown as EffortTargets);
    await vi.advanceTimersByTimeAsync(10 * S);
    win.dispatchEvent(new Event('pointermove'));
    await vi.advanceTimersByTimeAsync(20 * S);
    expect(post).toHaveBeenCalledTimes(1);
    expect(seconds([post.mock.calls[0]![0]])).toBe(30);

    doc.visibilityState = 'hidden';
    await vi.advanceTimersByTimeAsync(5 * S);
    doc.dispatchEvent(new Event('visibilitychange'));
    await vi.advanceTimersByTimeAsync(0);
    expect(post).toHaveBeenCalledTimes(2);
    expect(post.mock.calls[1]![1]).toEqual({ keepalive: true });
    expect(seconds([post.mock.calls[1]![0]])).toBe(5);
    await vi.advanceTimersByTimeAsync(60 * S); // hidden: nothing counts
    expect(tracker.activeMs()).toBe(35 * S);

    doc.visibilityState = 'visible';
    doc.dispatchEvent(new Event('visibilitychange'));
    await vi.advanceTimersByTimeAsync(10 * S);
    win.dispatchEvent(new Event('blur'));
    await vi.advanceTimersByTimeAsync(10 * S);
    expect(tracker.activeMs()).toBe(45 * S);
    await tracker.stop();
    win.dispatchEvent(new Event('pointermove'));
    await vi.advanceTimersByTimeAsync(60 * S);
    expect(tracker.activeMs()).toBe(45 * S + 0); // listeners are gone
    expect(seconds(post.mock.calls.map((c) => c[0]))).toBe(45);
  });

  it('refuses a heartbeat as long as the cut-off', () => {
    expect(() => new EffortTracker(1, async () => null, { heartbeatMs: 120 * S })).toThrow(/shorter/);
  });
});
