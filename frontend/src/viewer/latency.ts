// Brush latency: for each pointer event of a brush drag, the time from the event's timeStamp to
// the completion of the first repaint of that viewport after the edit. A render event fires before
// the GPU has drawn anything, so a WebGL fence is inserted after the repaint and polled without
// blocking (never readPixels, which would force a sync and distort the figure).

import { Enums, type RenderingEngine } from '@cornerstonejs/core';

interface Pending {
  stamp: number;
  edited: boolean;
}

type GL = WebGL2RenderingContext;

function glFor(engine: RenderingEngine, viewportId: string): GL | null {
  // ContextPoolRenderingEngine (the default) keeps one offscreen vtk render window per context.
  const impl = (engine as unknown as { _implementation?: unknown })._implementation as
    | { contextPool?: { getContextIndexForViewport(id: string): number; getContextByIndex(i: number): { context: unknown } | null };
        offscreenMultiRenderWindow?: unknown }
    | undefined;
  let window: unknown = impl?.offscreenMultiRenderWindow;
  if (impl?.contextPool) {
    const index = impl.contextPool.getContextIndexForViewport(viewportId);
    window = impl.contextPool.getContextByIndex(index)?.context;
  }
  const gl = (window as { getOpenGLRenderWindow?: () => { getContext(): unknown } } | undefined)
    ?.getOpenGLRenderWindow?.()
    .getContext();
  return gl && typeof (gl as GL).fenceSync === 'function' ? (gl as GL) : null;
}

export class BrushLatency {
  readonly samples: number[] = [];
  private pending = new Map<string, Pending[]>();
  private stops: (() => void)[] = [];

  private engine: RenderingEngine;

  constructor(engine: RenderingEngine) {
    this.engine = engine;
  }

  /** Starts watching one viewport's element; `isBrushDrag(evt)` says whether a move paints. */
  watch(viewportId: string, element: HTMLElement, isBrushDrag: (evt: MouseEvent) => boolean): void {
    let dragging = false;
    const add = (evt: MouseEvent): void => {
      const list = this.pending.get(viewportId) ?? [];
      list.push({ stamp: evt.timeStamp, edited: false });
      this.pending.set(viewportId, list);
    };
    const onDown = (evt: MouseEvent): void => {
      if (!evt.isTrusted) return; // the synthetic press of paintImmediately()
      dragging = isBrushDrag(evt);
      if (dragging) add(evt);
    };
    const onMove = (evt: MouseEvent): void => {
      if (dragging && evt.isTrusted && isBrushDrag(evt)) add(evt);
    };
    const onUp = (): void => {
      dragging = false;
    };
    const onRendered = (): void => this.rendered(viewportId);
    element.addEventListener('mousedown', onDown, true);
    document.addEventListener('mousemove', onMove, true);
    document.addEventListener('mouseup', onUp, true);
    element.addEventListener(Enums.Events.IMAGE_RENDERED, onRendered);
    this.stops.push(() => {
      element.removeEventListener('mousedown', onDown, true);
      document.removeEventListener('mousemove', onMove, true);
      document.removeEventListener('mouseup', onUp, true);
      element.removeEventListener(Enums.Events.IMAGE_RENDERED, onRendered);
    });
  }

  /** Marks the inputs waiting on a viewport as edited (a labelmap change happened after them). */
  edited(): void {
    for (const list of this.pending.values()) for (const p of list) p.edited = true;
  }

  /** The inputs waiting on a viewport whose edit is now drawn (removed from the waiting list). */
  private take(viewportId: string): Pending[] {
    const list = this.pending.get(viewportId);
    if (!list?.length) return [];
    const done = list.filter((p) => p.edited);
    if (done.length) this.pending.set(viewportId, list.filter((p) => !p.edited));
    return done;
  }

  private finisher(done: Pending[]): () => void {
    return () => {
      const now = performance.now();
      for (const p of done) this.samples.push(now - p.stamp);
    };
  }

  /**
   * The edit was drawn straight onto the view's 2D canvas (strokeOverlay.ts), inside an animation
   * frame: no WebGL work to fence. It counts as on screen when the page starts the second frame
   * after it, that is once the frame holding it has been committed and the next one produced.
   */
  overlaid(viewportId: string): void {
    const done = this.take(viewportId);
    if (!done.length) return;
    const finish = this.finisher(done);
    requestAnimationFrame(() => requestAnimationFrame(finish));
  }

  private rendered(viewportId: string): void {
    const done = this.take(viewportId);
    if (!done.length) return;
    const gl = glFor(this.engine, viewportId);
    const finish = this.finisher(done);
    if (!gl) {
      requestAnimationFrame(finish);
      return;
    }
    const sync = gl.fenceSync(gl.SYNC_GPU_COMMANDS_COMPLETE, 0);
    if (!sync) {
      finish();
      return;
    }
    gl.flush();
    const poll = (): void => {
      const status = gl.getSyncParameter(sync, gl.SYNC_STATUS);
      if (status === gl.SIGNALED) {
        gl.deleteSync(sync);
        finish();
      } else {
        setTimeout(poll, 1);
      }
    };
    poll();
  }

  dispose(): void {
    for (const stop of this.stops) stop();
    this.stops = [];
  }
}
