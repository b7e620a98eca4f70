// The reviewer's side of a submitted task: Accept or "Reject with comment", and what to look
// at first: the submitted masks, the model's, or their difference (what the annotator added,
// what they removed, Dice per lesion).

import { acceptTask, fetchMaskData, listMaskVersions, rejectTask } from '../../api/endpoints';
import type { MaskData, MaskVersion, Review } from '../../api/types';
import { h } from '../../ui/dom';
import { errorBanner, isAbort, notice } from '../../ui/feedback';
import { DIFFERENCE, differenceLabelmap, replaceSegment } from '../labelmap';
import type { WorkspaceState } from './state';

export interface ReviewApi {
  accept(taskId: number, comment: string): Promise<Review>;
  reject(taskId: number, comment: string): Promise<Review>;
  maskVersions(lesionId: number, signal: AbortSignal): Promise<MaskVersion[]>;
  maskData(versionId: number, signal: AbortSignal): Promise<MaskData>;
}

export const defaultReviewApi: ReviewApi = {
  accept: (taskId, comment) => acceptTask(taskId, comment),
  reject: (taskId, comment) => rejectTask(taskId, comment),
  maskVersions: (lesionId, signal) => listMaskVersions(lesionId, { signal }),
  maskData: (versionId, signal) => fetchMaskData(versionId, { signal }),
};

const VIEWS = ['final', 'model', 'difference'] as const;
type ReviewView = (typeof VIEWS)[number];
const LABELS: Record<ReviewView, string> = { final: 'Submitted', model: "Model's", difference: 'Difference' };

// the difference's colours: as [r, g, b] for the views and as CSS for the legend's swatches
const AGREE = [150, 160, 175] as const;
const ADDED = [40, 200, 90] as const;
const REMOVED = [235, 70, 60] as const;

type ModelMasks = { segment: number; mask: Uint8Array | null }[];

/** Appends the review controls to `slot`. */
export function wireReview(
  state: WorkspaceState, slot: HTMLElement, signal: AbortSignal, api: ReviewApi = defaultReviewApi,
): void {
  const { task, viewer: ready, session: ses } = state;
  const comment = h('textarea', { rows: 3, 'aria-label': 'Review comment', placeholder: 'What should the annotator change?' });
  const accept = h('button', { type: 'button', class: 'btn btn-primary', 'data-action': 'accept' }, 'Accept');
  const reject = h('button', { type: 'button', class: 'btn', 'data-action': 'reject' }, 'Reject with comment');
  const result = h('div', { class: 'vw-review-result' });
  const decide = async (decision: 'accept' | 'reject'): Promise<void> => {
    if (decision === 'reject' && !comment.value.trim()) {
      result.replaceChildren(errorBanner(new Error('Say what the annotator should change.'), 'A rejection needs a comment'));
      comment.focus();
      return;
    }
    accept.disabled = true;
    reject.disabled = true;
    try {
      const review = decision === 'accept' ? await api.accept(task.id, comment.value) : await api.reject(task.id, comment.value);
      result.dataset.state = review.decision;
      result.replaceChildren(notice(review.decision === 'accept' ? 'Accepted.' : 'Rejected: the task goes back to its annotator.', 'success'));
    } catch (err) {
      accept.disabled = false;
      reject.disabled = false;
      result.replaceChildren(errorBanner(err, 'The review was not saved'));
    }
  };

  const radios = VIEWS.map((view) => h('input', {
    type: 'radio', name: 'vw-review-view', value: view, 'data-action': `show-${view}`, checked: view === 'final',
  }));
  const modelInfo = h('div', { class: 'muted small vw-model-info', 'data-state': 'final' }, 'Showing the submitted masks');
  // each lesion's latest model mask, fetched once (on the first look) and kept
  let models: Promise<ModelMasks> | null = null;
  const loadModels = (): Promise<ModelMasks> => {
    if (!ses) return Promise.resolve([]);
    models ??= Promise.all(ses.lesions.entries.map(async (entry) => {
      const versions = await api.maskVersions(entry.lesion.id, signal);
      const model = versions.filter((v) => v.source === 'model').sort((a, b) => b.id - a.id)[0];
      const mask = model ? (await api.maskData(model.id, signal)).voxels : null;
      return { segment: entry.segment, mask };
    }));
    models.catch(() => { models = null; }); // try again next time
    return models;
  };
  const restyle = (): void => {
    if (!ses) return;
    for (const entry of ses.lesions.entries) ready.setSegmentStyle(entry.segment, entry.color, entry.visible);
  };
  const showDifference = (masks: ModelMasks): void => {
    if (!ses) return;
    const diff = differenceLabelmap(ses.labelmapData, masks);
    ready.setLabelmap(diff.labelmap);
    ready.setSegmentStyle(DIFFERENCE.agree, [...AGREE], true);
    ready.setSegmentStyle(DIFFERENCE.added, [...ADDED], true);
    ready.setSegmentStyle(DIFFERENCE.removed, [...REMOVED], true);
    const total = diff.lesions.reduce((t, l) => ({
      agree: t.agree + l.agree, added: t.added + l.added, removed: t.removed + l.removed,
    }), { agree: 0, added: 0, removed: 0 });
    Object.assign(modelInfo.dataset, {
      agree: String(total.agree), added: String(total.added), removed: String(total.removed),
    });
    const swatch = (rgb: readonly number[]): HTMLElement => h('span', { class: 'vw-swatch', style: `background: rgb(${rgb.join(', ')})` });
    modelInfo.replaceChildren(
      h('div', null, swatch(ADDED), ` added by the annotator: ${total.added} voxels`),
      h('div', null, swatch(REMOVED), ` removed from the model's: ${total.removed}`),
      h('div', null, swatch(AGREE), ` in both: ${total.agree}`),
      ...diff.lesions.map((l) => {
        const name = ses.lesions.bySegment(l.segment)?.lesion.lesion_class ?? `lesion ${l.segment}`;
        return h('div', { class: 'vw-dice' }, `${name}: Dice model vs submitted ${l.dice.toFixed(3)}`);
      }),
    );
  };
  const show = async (view: ReviewView): Promise<void> => {
    if (!ses) return;
    if (view === 'final') {
      ready.setLabelmap(ses.labelmapData);
      modelInfo.dataset.state = 'final';
      modelInfo.replaceChildren('Showing the submitted masks');
      return;
    }
    for (const radio of radios) radio.disabled = true;
    modelInfo.replaceChildren('Loading the model masks…');
    try {
      const masks = await loadModels();
      const current = radios.find((r) => r.checked)?.value;
      if (current !== view) return; // switched meanwhile
      if (view === 'model') {
        const shown = ses.labelmapData.slice();
        for (const { segment, mask } of masks) replaceSegment(shown, segment, mask ?? new Uint8Array(shown.length));
        ready.setLabelmap(shown);
        restyle();
        const found = masks.filter((m) => m.mask).length;
        modelInfo.replaceChildren(`Model masks of ${found} of ${masks.length} lesions`);
      } else {
        showDifference(masks);
      }
      modelInfo.dataset.state = view;
    } catch (err) {
      if (isAbort(err)) return;
      modelInfo.replaceChildren(errorBanner(err, 'Could not load the model masks'));
    } finally {
      for (const radio of radios) radio.disabled = false;
    }
  };
  for (const radio of radios) {
    radio.addEventListener('change', () => {
      if (radio.checked) void show(radio.value as ReviewView);
    });
  }
  accept.addEventListener('click', () => void decide('accept'));
  reject.addEventListener('click', () => void decide('reject'));
  slot.append(h('h2', null, 'Review'), h('p', { class: 'muted' }, `Annotated by ${task.assignee ?? 'nobody'}.`),
    h('fieldset', { class: 'vw-review-view' }, h('legend', null, 'Show'),
      ...radios.map((radio) => h('label', { class: 'vw-control' }, radio, ` ${LABELS[radio.value as ReviewView]}`))),
    modelInfo,
    comment, h('div', { class: 'vw-review-buttons' }, accept, reject), result);
}
