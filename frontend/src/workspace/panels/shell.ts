// The workspace page's frame: the heading, the views' grid (one cell per orientation and the
// key-slice cell), the side panel around the other panels' elements, and the sizing that keeps
// the views inside the window.

import type { Project, Task } from '../../api/types';
import { href } from '../../router';
import { h } from '../../ui/dom';
import { notice } from '../../ui/feedback';
import { breadcrumbs } from '../../ui/layout';
import { ORIENTATIONS } from '../../viewer/layout';
import type { Orientation } from '../../viewer/types';
import type { ViewerElements } from '../../viewer/viewer';

export function viewerElements(): ViewerElements {
  const cell = (label: string, cls: string): HTMLElement =>
    h('div', { class: `vw-cell ${cls}` },
      h('div', { class: 'vw-element', oncontextmenu: (e: Event) => e.preventDefault() }),
      h('span', { class: 'vw-label' }, label));
  const cells = Object.fromEntries(
    ORIENTATIONS.map((o) => [o, cell(o[0]!.toUpperCase() + o.slice(1), `vw-${o}`)]),
  ) as Record<Orientation, HTMLElement>;
  const keyCell = cell('Key slice (loading the volume…)', 'vw-key');
  const grid = h('div', { class: 'vw-grid', 'data-layout': '3x1' }, ...ORIENTATIONS.map((o) => cells[o]), keyCell);
  return { grid, cells, keyCell };
}

export function pageHead(task: Task, project: Pick<Project, 'name' | 'slug'>): HTMLElement {
  return h('div', { class: 'page-head vw-head' },
    breadcrumbs([
      { label: 'Projects', href: href.projects() },
      { label: project.name, href: href.project(project.slug) },
      { label: `Task #${task.id}`, href: href.task(task.id) },
      { label: 'Workspace' },
    ]),
    h('h1', null, task.series.description || `Series ${task.series.id}`,
      h('span', { class: 'muted small' }, ` · ${task.series.modality} · ${task.state}`)),
  );
}

/** The side panel's notes on top: the last rejection's comment, or why the views are read-only. */
export function taskMessages(task: Task, editable: boolean, reviewing: boolean): HTMLElement {
  const slot = h('div', { class: 'vw-messages' });
  if (task.state === 'rejected' && task.last_review) {
    slot.append(h('div', { class: 'banner banner-error vw-review-note', role: 'alert' },
      h('strong', null, `Rejected by ${task.last_review.reviewer}: `),
      h('span', { class: 'vw-review-comment' }, task.last_review.comment || 'No comment given.')));
  }
  if (!editable && !reviewing) {
    slot.append(notice(`Read-only: this task is ${task.state}${task.assignee ? `, assigned to ${task.assignee}` : ''}.`));
  }
  return slot;
}

/** The side panel, top to bottom; the parts given as null are left out (a read-only task). */
export function sidePanel(parts: {
  messages: HTMLElement;
  save: HTMLElement | null;
  lesions: HTMLElement;
  addLesion: HTMLElement | null;
  range: HTMLElement | null;
  segment: HTMLElement;
  actions: HTMLElement;
}): HTMLElement {
  return h('aside', { class: 'vw-side' },
    parts.messages,
    parts.save,
    h('h2', null, 'Lesions'),
    parts.lesions,
    parts.addLesion,
    parts.range,
    parts.segment,
    parts.actions,
  );
}

/** The page takes the window's whole width until it is left. */
export function widenMain(signal: AbortSignal): void {
  document.getElementById('main')?.classList.add('vw-wide');
  signal.addEventListener('abort', () => document.getElementById('main')?.classList.remove('vw-wide'));
}

/**
 * The views and the side panel fill the window below the toolbar, whose height changes as it
 * wraps: on a 1280 px wide window a fixed offset left the views' bottom 40 px off screen.
 */
export function fitToWindow(stage: HTMLElement, side: HTMLElement, signal: AbortSignal): void {
  const fit = (): void => {
    const top = stage.getBoundingClientRect().top + window.scrollY;
    const height = `${Math.max(360, Math.floor(window.innerHeight - top - 12))}px`;
    stage.style.height = height;
    side.style.maxHeight = height;
  };
  fit();
  const above = new ResizeObserver(fit); // the heading, toolbar and status above the views
  for (let el = stage.parentElement?.previousElementSibling; el; el = el.previousElementSibling) above.observe(el);
  window.addEventListener('resize', fit);
  signal.addEventListener('abort', () => {
    above.disconnect();
    window.removeEventListener('resize', fit);
  });
}
