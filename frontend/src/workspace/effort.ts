// Active time and tool use in the workspace, batched to POST /api/tasks/<id>/effort/.
//
// The server (projects/effort.py) counts a second of an interval only when it lies within
// EFFORT_IDLE_CUTOFF_S (120 s by default) after an activity signal: an interval start or an
// interaction. The tracker applies the same rule before sending: activity at t makes
// [t, t + cutoff] active while the page is visible and focused; an interval ends at the last
// activity + cutoff (or when the page is hidden / loses focus, or the selected lesion changes),
// and is sent in pieces no longer than the heartbeat, so every piece starts with a signal and
// the server counts exactly what the client measured.

import { ApiError } from '../api/client';
import { postEffort } from '../api/endpoints';
import type { EffortBatch, EffortInteraction, EffortInterval, EffortTool } from '../api/types';

/** projects/effort.py DEFAULT_IDLE_CUTOFF_S (the server's setting is not exposed by the API). */
export const IDLE_CUTOFF_S = 120;

/** The most intervals and interactions the server takes in one request (annotator/serializers.py
 * MAX_INTERVALS, MAX_INTERACTIONS): a longer backlog goes in several. */
export const MAX_INTERVALS = 500;
export const MAX_INTERACTIONS = 2000;

export const TOOLS: readonly EffortTool[] = [
  'box', 'point+', 'point-', 'brush', 'eraser', 'threshold', 'propagate', 'undo', 'redo',
];

export interface EffortOptions {
  idleCutoffMs?: number;
  /** Longest interval piece, and how often the batch is sent (must stay under the cut-off). */
  heartbeatMs?: number;
  /** Pending items kept while the server cannot be reached (oldest dropped beyond). */
  maxPending?: number;
  now?: () => number;
  /** A batch could not be sent (transient errors are retried on the next heartbeat). */
  onError?: (error: unknown) => void;
}

export type EffortPoster = (batch: EffortBatch, opts: { keepalive?: boolean }) => Promise<unknown>;

interface Span {
  start: number;
  end: number;
  lesion: number | null;
}

interface PendingInteraction {
  tool: EffortTool;
  at: number;
  lesion: number | null;
  slice: number | null;
}

/** What the tracker listens to (window and document by default). */
export interface EffortTargets {
  window: Pick<Window, 'addEventListener' | 'removeEventListener'>;
  document: Pick<Document, 'addEventListener' | 'removeEventListener'> & { visibilityState: DocumentVisibilityState; hasFocus?: () => boolean };
}

const ACTIVITY_EVENTS = ['pointerdown', 'pointermove', 'wheel', 'keydown', 'touchstart'] as const;

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

export class EffortTracker {
  readonly taskId: number;
  private readonly post: EffortPoster;
  private readonly cutoff: number;
  private readonly heartbeat: number;
  private readonly maxPending: number;
  private readonly now: () => number;
  private readonly onError: (error: unknown) => void;

  private open: { start: number; lesion: number | null } | null = null;
  private lastActivity = -Infinity;
  private lesion: number | null = null;
  private paused = false;
  private disabled = false;
  private spans: Span[] = [];
  private interactions: PendingInteraction[] = [];
  private toolCounts = new Map<EffortTool, number>();
  private closedMs = 0;
  private sending: Promise<void> | null = null;
  private timer: ReturnType<typeof setInterval> | null = null;
  private uninstall: (() => void) | null = null;

  constructor(taskId: number, post?: EffortPoster, options: EffortOptions = {}) {
    this.taskId = taskId;
    this.post = post ?? ((batch, opts) => postEffort(taskId, batch, opts));
    this.cutoff = options.idleCutoffMs ?? IDLE_CUTOFF_S * 1000;
    this.heartbeat = options.heartbeatMs ?? 30_000;
    if (this.heartbeat >= this.cutoff) throw new Error('the heartbeat must be shorter than the idle cut-off');
    this.maxPending = options.maxPending ?? 5000;
    this.now = options.now ?? (() => Date.now());
    this.onError = options.onError ?? (() => undefined);
  }

  // ---- signals ------------------------------------------------------------------------------

  /** The user did something (scroll, pan, zoom, window, pointer, key). */
  activity(at = this.now()): void {
    if (this.disabled) return;
    this.paused = false;
    if (this.open && at - this.lastActivity > this.cutoff) this.close(this.lastActivity + this.cutoff);
    if (!this.open) this.open = { start: at, lesion: this.lesion };
    this.lastActivity = Math.max(this.lastActivity, at);
  }

  /** A use of a tool: counted per tool, sent with the time, lesion and slice. */
  interaction(tool: EffortTool, { lesion = this.lesion, slice = null }: { lesion?: number | null; slice?: number | null } = {}): void {
    if (this.disabled) return;
    const at = this.now();
    this.activity(at);
    this.toolCounts.set(tool, (this.toolCounts.get(tool) ?? 0) + 1);
    this.interactions.push({ tool, at, lesion, slice });
    this.trimPending();
  }

  /** The selected lesion changed: time from now on is its time. */
  setLesion(lesion: number | null): void {
    if (lesion === this.lesion) return;
    const at = this.now();
    if (this.open) this.close(Math.min(at, this.lastActivity + this.cutoff));
    this.lesion = lesion;
    this.activity(at);
  }

  /** A lesion was deleted: pending items lose their reference to it (the server would refuse them). */
  forgetLesion(lesion: number): void {
    for (const s of this.spans) if (s.lesion === lesion) s.lesion = null;
    for (const i of this.interactions) if (i.lesion === lesion) i.lesion = null;
    if (this.open?.lesion === lesion) this.open.lesion = null;
    if (this.lesion === lesion) this.lesion = null;
  }

  /** The page is hidden or lost focus: active time stops now. */
  pause(at = this.now()): void {
    if (this.open) this.close(Math.min(at, this.lastActivity + this.cutoff));
    this.paused = true;
  }

  /** The page is visible and focused again: that counts as activity. */
  resume(at = this.now()): void {
    if (this.disabled) return;
    this.activity(at);
  }

  private close(end: number): void {
    const open = this.open;
    this.open = null;
    if (!open || end <= open.start) return;
    this.closedMs += end - open.start;
    for (let start = open.start; start < end; start += this.heartbeat) {
      this.spans.push({ start, end: Math.min(end, start + this.heartbeat), lesion: open.lesion });
    }
    this.trimPending();
  }

  private trimPending(): void {
    const excess = this.spans.length + this.interactions.length - this.maxPending;
    if (excess <= 0) return;
    // Oldest first, from whichever list holds the oldest item.
    for (let i = 0; i < excess; i++) {
      const span = this.spans[0];
      const inter = this.interactions[0];
      if (span && (!inter || span.start <= inter.at)) this.spans.shift();
      else this.interactions.shift();
    }
  }

  // ---- reading ------------------------------------------------------------------------------

  get isIdle(): boolean {
    return this.open === null || this.now() - this.lastActivity > this.cutoff;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  /** False after the server refused effort from this user (403: not the task's annotator). */
  get enabled(): boolean {
    return !this.disabled;
  }

  /** Active milliseconds measured in this session (closed intervals and the open one). */
  activeMs(at = this.now()): number {
    const open = this.open ? Math.max(0, Math.min(at, this.lastActivity + this.cutoff) - this.open.start) : 0;
    return this.closedMs + open;
  }

  /** Interactions per tool in this session (every tool, zero included). */
  counts(): Record<EffortTool, number> {
    return Object.fromEntries(TOOLS.map((t) => [t, this.toolCounts.get(t) ?? 0])) as Record<EffortTool, number>;
  }

  /** What the next send would post (the open interval is cut at `at`). */
  pending(): EffortBatch {
    return this.batch(this.spans, this.interactions);
  }

  private batch(spans: Span[], interactions: PendingInteraction[]): EffortBatch {
    return {
      intervals: spans.map((s): EffortInterval => ({ started_at: iso(s.start), ended_at: iso(s.end), lesion: s.lesion })),
      interactions: interactions.map((i): EffortInteraction => ({ tool: i.tool, at: iso(i.at), lesion: i.lesion, slice_index: i.slice })),
    };
  }

  // ---- sending ------------------------------------------------------------------------------

  /**
   * A heartbeat: cuts the open interval at now (it goes on if the user is still active) and
   * sends what is pending.
   */
  async tick({ keepalive = false }: { keepalive?: boolean } = {}): Promise<void> {
    const at = this.now();
    if (this.open) {
      const lesion = this.open.lesion;
      const end = Math.min(at, this.lastActivity + this.cutoff);
      this.close(end);
      if (!this.paused && at - this.lastActivity <= this.cutoff && end === at) this.open = { start: at, lesion };
    }
    await this.flush({ keepalive });
  }

  /** Sends the pending intervals and interactions (one request at a time, in requests no larger
   * than the server takes, until none is left or one fails). */
  async flush({ keepalive = false }: { keepalive?: boolean } = {}): Promise<void> {
    while (this.sending) await this.sending;
    if (this.disabled || (this.spans.length === 0 && this.interactions.length === 0)) return;
    this.sending = this.drain(keepalive).finally(() => {
      this.sending = null;
    });
    await this.sending;
  }

  private async drain(keepalive: boolean): Promise<void> {
    while (!this.disabled && (this.spans.length > 0 || this.interactions.length > 0)) {
      const spans = this.spans.slice(0, MAX_INTERVALS);
      const interactions = this.interactions.slice(0, MAX_INTERACTIONS);
      this.spans = this.spans.slice(spans.length);
      this.interactions = this.interactions.slice(interactions.length);
      if (!(await this.send(spans, interactions, keepalive))) return;
    }
  }

  /** Whether the batch was taken; a failed one is put back (or dropped, see below). */
  private async send(spans: Span[], interactions: PendingInteraction[], keepalive: boolean): Promise<boolean> {
    try {
      await this.post(this.batch(spans, interactions), { keepalive });
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.status === 403) {
        this.disabled = true; // effort is only recorded for the task's annotator
      } else if (err instanceof ApiError && err.status === 400) {
        // "lesion N is not part of task T": the lesion was deleted meanwhile; send without it.
        const match = /lesion (\d+) is not part of task/.exec(err.message);
        if (match) {
          const gone = Number(match[1]);
          const strip = <T extends { lesion: number | null }>(items: T[]): T[] =>
            items.map((item) => (item.lesion === gone ? { ...item, lesion: null } : item));
          this.requeue(strip(spans), strip(interactions));
        }
      } else {
        this.requeue(spans, interactions); // transient: retried on the next heartbeat
      }
      this.onError(err);
      return false;
    }
  }

  private requeue(spans: Span[], interactions: PendingInteraction[]): void {
    this.spans = [...spans, ...this.spans];
    this.interactions = [...interactions, ...this.interactions];
    this.trimPending();
  }

  // ---- wiring -------------------------------------------------------------------------------

  /** Listens to activity, visibility and focus, and sends on every heartbeat. Returns stop(). */
  start(targets: EffortTargets = { window, document }): () => Promise<void> {
    this.uninstall?.();
    const { window: win, document: doc } = targets;
    const onActivity = (): void => this.activity();
    const onVisibility = (): void => {
      if (doc.visibilityState === 'hidden') {
        this.pause();
        void this.flush({ keepalive: true });
      } else if (doc.hasFocus?.() ?? true) {
        this.resume();
      }
    };
    const onBlur = (): void => this.pause();
    const onFocus = (): void => this.resume();
    const onPageHide = (): void => {
      this.pause();
      void this.flush({ keepalive: true });
    };
    for (const name of ACTIVITY_EVENTS) win.addEventListener(name, onActivity, { passive: true, capture: true });
    doc.addEventListener('visibilitychange', onVisibility);
    win.addEventListener('blur', onBlur);
    win.addEventListener('focus', onFocus);
    win.addEventListener('pagehide', onPageHide);
    this.timer = setInterval(() => void this.tick(), this.heartbeat);
    if (doc.visibilityState === 'visible' && (doc.hasFocus?.() ?? true)) this.activity();
    this.uninstall = () => {
      for (const name of ACTIVITY_EVENTS) win.removeEventListener(name, onActivity, { capture: true });
      doc.removeEventListener('visibilitychange', onVisibility);
      win.removeEventListener('blur', onBlur);
      win.removeEventListener('focus', onFocus);
      win.removeEventListener('pagehide', onPageHide);
      if (this.timer !== null) clearInterval(this.timer);
      this.timer = null;
      this.uninstall = null;
    };
    return () => this.stop();
  }

  /** Stops listening, closes the open interval and sends what is left. */
  async stop(): Promise<void> {
    this.uninstall?.();
    this.pause();
    await this.flush({ keepalive: true });
  }
}
