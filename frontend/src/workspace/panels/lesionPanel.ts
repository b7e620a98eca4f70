// The side panel's lesion list (select, class, hide / show, delete with a second click) and
// "Add lesion" with a class; the lesions' colours and visibility in the views.

import type { LesionClass } from '../../api/types';
import { h } from '../../ui/dom';
import { errorBanner } from '../../ui/feedback';
import type { Refresh, WorkspaceState } from './state';

/** How long "Confirm delete" waits for the second click. */
const CONFIRM_DELETE_MS = 4000;

export interface LesionView {
  list: HTMLUListElement;
  classSelect: HTMLSelectElement;
  addButton: HTMLButtonElement;
  /** The class select and "Add lesion" (shown where the task is editable). */
  addRow: HTMLElement;
}

export function lesionView(classes: LesionClass[]): LesionView {
  const list = h('ul', { class: 'vw-lesions' });
  const classSelect = h('select', { 'aria-label': 'Lesion class' },
    classes.map((c) => h('option', { value: c.name }, c.name)));
  const addButton = h('button', { type: 'button', class: 'btn', 'data-action': 'add-lesion', disabled: true }, 'Add lesion');
  return { list, classSelect, addButton, addRow: h('div', { class: 'vw-add' }, classSelect, addButton) };
}

export interface LesionControls {
  render(): void;
  /** Each lesion's colour and visibility in the views; the selected one takes the brush. */
  style(): void;
  add(): void;
  /** "Add lesion" is enabled while the task can be edited. */
  update(): void;
}

export function wireLesions(
  state: WorkspaceState, view: LesionView, classes: LesionClass[], refresh: Refresh,
): LesionControls {
  const { viewer: ready, session: ses, ranges } = state;
  const { list, addButton } = view;
  const pendingDelete = new Set<number>();
  const render = (): void => {
    if (!ses) {
      list.replaceChildren(h('li', { class: 'muted' }, 'No labelmap for this series.'));
      return;
    }
    const selected = ses.lesions.selected;
    const rows = ses.lesions.entries.map((entry) => {
      const lesionId = entry.lesion.id;
      const row = h('li', {
        class: `vw-lesion${selected?.lesion.id === lesionId ? ' is-selected' : ''}`,
        'data-lesion': lesionId, 'data-segment': entry.segment,
      });
      const swatch = h('span', { class: 'vw-swatch', style: `background:${entry.css}` });
      const name = h('button', {
        type: 'button', class: 'btn-link vw-lesion-name', onclick: () => {
          ses.select(lesionId);
        },
      }, `${entry.name} (#${lesionId})`);
      const classSelect = h('select', { 'aria-label': `Class of lesion ${lesionId}`, disabled: !state.canEdit() },
        classes.map((c) => h('option', { value: c.name, selected: c.name === entry.lesion.lesion_class }, c.name)));
      classSelect.addEventListener('change', () => {
        ses.lesions.setClass(lesionId, classSelect.value).catch((err: unknown) => row.append(errorBanner(err, 'Could not change the class')));
      });
      const eye = h('button', {
        type: 'button', class: 'btn btn-small', 'data-action': 'toggle-visible', onclick: () => {
          ses.lesions.toggleVisible(lesionId);
        },
      }, entry.visible ? 'Hide' : 'Show');
      const del = h('button', {
        type: 'button', class: `btn btn-small${pendingDelete.has(lesionId) ? ' btn-danger' : ''}`,
        'data-action': 'delete-lesion', disabled: !state.canEdit(),
        onclick: () => {
          if (!pendingDelete.has(lesionId)) {
            pendingDelete.add(lesionId);
            render();
            window.setTimeout(() => {
              if (pendingDelete.delete(lesionId)) render();
            }, CONFIRM_DELETE_MS);
            return;
          }
          pendingDelete.delete(lesionId);
          ses.deleteLesion(lesionId)
            .then(() => ranges.clear(lesionId))
            .catch((err: unknown) => list.append(errorBanner(err, 'Could not delete the lesion')));
        },
      }, pendingDelete.has(lesionId) ? 'Confirm delete' : 'Delete');
      row.append(swatch, name, classSelect, eye, del);
      return row;
    });
    list.replaceChildren(...(rows.length ? rows : [h('li', { class: 'muted' }, 'No lesions yet.')]));
  };
  const style = (): void => {
    if (!ses) return;
    for (const entry of ses.lesions.entries) ready.setSegmentStyle(entry.segment, entry.color, entry.visible);
    const selected = ses.lesions.selected;
    if (selected) ready.setActiveSegment(selected.segment);
  };
  const add = (): void => {
    if (!ses || !state.canEdit()) return;
    addButton.disabled = true;
    ses.addLesion(view.classSelect.value || undefined)
      .then((entry) => {
        ranges.adoptPending(entry.lesion.id);
        ses.select(entry.lesion.id);
      })
      .catch((err: unknown) => list.append(errorBanner(err, 'Could not add the lesion')))
      .finally(() => refresh.tools());
  };
  addButton.addEventListener('click', add);
  const update = (): void => {
    addButton.disabled = !state.canEdit();
  };
  return { render, style, add, update };
}
