// Progress bars: determinate (a fraction) or indeterminate (the server is working).

import { h } from './dom';
import { formatNumber } from './format';

/** A fraction in [0, 1], or null when the total is unknown. */
export function fraction(done: number, total: number): number | null {
  if (!(total > 0)) return null;
  return Math.min(1, Math.max(0, done / total));
}

export function formatPercentOf(done: number, total: number): string {
  const f = fraction(done, total);
  return f === null ? '' : `${Math.floor(f * 100)}%`;
}

const UNITS = ['B', 'KB', 'MB', 'GB', 'TB'];

export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const digits = unit === 0 || value >= 100 ? 0 : 1;
  return `${value.toFixed(digits)} ${UNITS[unit]}`;
}

/** "1.2 MB of 3.4 MB (35%)" while sending; "" before anything is known. */
export function uploadText(loaded: number, total: number): string {
  if (!(total > 0)) return loaded > 0 ? `${formatBytes(loaded)} sent` : '';
  return `${formatBytes(loaded)} of ${formatBytes(total)} (${formatPercentOf(loaded, total)})`;
}

/** Minutes and seconds since `start` (ms), e.g. "1:05". */
export function elapsed(start: number, now: number): string {
  const s = Math.max(0, Math.floor((now - start) / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

export function formatCount(n: number, of: number): string {
  return `${formatNumber(n)} / ${formatNumber(of)}`;
}

export interface ProgressBar {
  el: HTMLElement;
  /** A fraction in [0, 1], or null for "working, no known end". */
  set(value: number | null, text?: string): void;
  setTone(tone: 'normal' | 'success' | 'error'): void;
}

export function progressBar(label: string): ProgressBar {
  const fill = h('div', { class: 'progress-fill' });
  const track = h('div', {
    class: 'progress-track', role: 'progressbar', 'aria-label': label,
    'aria-valuemin': 0, 'aria-valuemax': 100,
  }, fill);
  const text = h('span', { class: 'progress-text', 'aria-live': 'polite' });
  const el = h('div', { class: 'progress' }, track, text);
  const bar: ProgressBar = {
    el,
    set(value, message) {
      track.classList.toggle('indeterminate', value === null);
      if (value === null) {
        track.removeAttribute('aria-valuenow');
        fill.style.transform = '';
      } else {
        const pct = Math.round(value * 100);
        track.setAttribute('aria-valuenow', String(pct));
        // a transform, not a width: no layout or repaint, and no transition: every frame of an
        // animation costs a composite (tens of ms each where the page is composited in software)
        fill.style.transform = `scaleX(${pct / 100})`;
      }
      if (message !== undefined) text.textContent = message;
    },
    setTone(tone) {
      el.classList.toggle('progress-success', tone === 'success');
      el.classList.toggle('progress-error', tone === 'error');
    },
  };
  bar.set(0, '');
  return bar;
}
