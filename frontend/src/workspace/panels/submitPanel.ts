// "Submit for review" for the task's annotator: saves what is pending, then submits; editing
// ends on this page once the server took it.

import { h } from '../../ui/dom';
import { errorBanner, notice } from '../../ui/feedback';
import type { WorkspaceState } from './state';

/**
 * Appends the submit button to `slot` and answers the submit action (for its shortcut), or null
 * where the task is not this user's to submit. `onSubmitted` lets the other panels end editing.
 */
export function wireSubmit(state: WorkspaceState, slot: HTMLElement, onSubmitted: () => void): (() => void) | null {
  const ses = state.session;
  if (!state.editable || !ses) return null;
  const submit = h('button', { type: 'button', class: 'btn btn-primary', 'data-action': 'submit' }, 'Submit for review');
  const result = h('div', { class: 'vw-submit-result' });
  const doSubmit = async (): Promise<void> => {
    if (submit.disabled || !state.canEdit()) return;
    submit.disabled = true;
    result.replaceChildren(notice('Saving and submitting…'));
    try {
      state.viewer.flushEdits();
      const done = await ses.submit();
      state.submitted = true;
      onSubmitted();
      result.replaceChildren(notice(`Submitted for review (${done.state}).`, 'success'));
      result.dataset.state = done.state;
    } catch (err) {
      submit.disabled = false;
      result.replaceChildren(errorBanner(err, 'Could not submit'));
      result.dataset.state = 'error';
    }
  };
  submit.addEventListener('click', () => void doSubmit());
  slot.append(submit, result);
  return () => void doSubmit();
}
