// The autosave's state in the side panel, with the way out of each lesion's conflict ("Reload
// theirs" / "Overwrite with mine") or error ("Retry").

import { h } from '../../ui/dom';
import { errorBanner } from '../../ui/feedback';
import type { WorkspaceSession } from '../session';

const SAVE_LABELS: Record<string, string> = {
  saved: 'All changes saved',
  dirty: 'Unsaved changes',
  saving: 'Saving…',
  conflict: 'Conflict',
  error: 'Not saved',
};

export function saveView(): HTMLElement {
  return h('div', { class: 'vw-save', 'data-state': '', role: 'status', 'aria-live': 'polite' });
}

/** Answers the function that redraws `saveEl` from the session's autosave (nothing without one). */
export function saveStatus(saveEl: HTMLElement, ses: WorkspaceSession | null): () => void {
  return () => {
    if (!ses) return;
    const overall = ses.autosave.overall();
    saveEl.dataset.state = overall;
    const children: (HTMLElement | string)[] = [h('span', { class: `vw-save-label vw-save-${overall}` }, SAVE_LABELS[overall] ?? overall)];
    for (const state of ses.autosave.states()) {
      const name = ses.lesions.get(state.lesionId)?.name ?? `lesion ${state.lesionId}`;
      if (state.status === 'conflict') {
        children.push(h('div', { class: 'banner banner-error vw-conflict', role: 'alert' },
          h('p', null, `${name}: ${state.message}`),
          h('button', {
            type: 'button', class: 'btn btn-small', onclick: () => {
              ses.reloadTheirs(state.lesionId).catch((err: unknown) => saveEl.append(errorBanner(err, 'Reload failed')));
            },
          }, 'Reload theirs'),
          h('button', {
            type: 'button', class: 'btn btn-small', onclick: () => {
              ses.overwrite(state.lesionId).catch((err: unknown) => saveEl.append(errorBanner(err, 'Overwrite failed')));
            },
          }, 'Overwrite with mine')));
      } else if (state.status === 'error') {
        children.push(h('div', { class: 'banner banner-error vw-save-error', role: 'alert' },
          h('p', null, `${name}: ${state.message || 'could not be saved'}`),
          h('button', {
            type: 'button', class: 'btn btn-small', onclick: () => void ses.autosave.retry(state.lesionId).catch(() => undefined),
          }, 'Retry')));
      }
    }
    saveEl.replaceChildren(...children);
  };
}
