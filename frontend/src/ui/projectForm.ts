// The project form shared by "New project" and the settings page: values <-> API payload.

import {
  type Assignment, type FieldErrors, type Ordering, type Project, type ProjectCreate, type ProjectUpdate,
} from '../api';
import { h } from './dom';
import {
  checkboxField, clearFormErrors, field, input, select, setBusy, showClientErrors, showFormErrors, uid,
  type ErrorTarget,
} from './forms';

type Modality = ProjectCreate['modality'];

export const MODALITIES: { value: Modality; label: string }[] = [
  { value: 'CT', label: 'CT' },
  { value: 'MR', label: 'MRI' },
  { value: 'US', label: 'Ultrasound' },
  { value: 'PT', label: 'PET' },
  { value: 'NM', label: 'SPECT / nuclear medicine' },
  { value: 'OT', label: 'Other' },
];

/** The server's palette for classes without a colour (projects.services.PALETTE). */
export const PALETTE = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#42d4f4', '#f032e6'];

export interface ClassRow { name: string; color: string }
export interface PresetRow { name: string; center: string; width: string }

/** What the form holds: text as typed, parsed when the payload is built. */
export interface ProjectFormValues {
  name: string;
  slug: string;
  description: string;
  modality: string;
  deidentify: boolean;
  deidentify_modified_dates: boolean;
  deidentify_clean_descriptors: boolean;
  lesion_classes: ClassRow[];
  window_presets: PresetRow[];
  assignment: Assignment;
  ordering: Ordering;
  annotators_per_task: string;
  reviewer_must_differ: boolean;
}

export type FormMode = 'create' | 'update';

export function emptyProjectValues(): ProjectFormValues {
  return {
    name: '', slug: '', description: '', modality: 'CT', deidentify: false,
    deidentify_modified_dates: true, deidentify_clean_descriptors: false,
    lesion_classes: [{ name: '', color: PALETTE[0] ?? '#e6194b' }],
    window_presets: [],
    assignment: 'pool', ordering: 'priority', annotators_per_task: '1', reviewer_must_differ: true,
  };
}

export function projectValues(project: Project): ProjectFormValues {
  return {
    name: project.name,
    slug: project.slug,
    description: project.description ?? '',
    modality: project.modality,
    deidentify: project.deidentify,
    deidentify_modified_dates: project.deidentify_modified_dates,
    deidentify_clean_descriptors: project.deidentify_clean_descriptors,
    lesion_classes: project.lesion_classes.map((c) => ({ name: c.name, color: c.color })),
    window_presets: project.window_presets.map((w) => ({
      name: w.name, center: String(w.center), width: String(w.width),
    })),
    assignment: project.assignment,
    ordering: project.ordering,
    annotators_per_task: String(project.annotators_per_task),
    reviewer_must_differ: project.reviewer_must_differ,
  };
}

/** A slug Django's SlugField accepts, from a project name ("Liver CT 2024" -> "liver-ct-2024"). */
export function slugify(name: string): string {
  return name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 80)
    .replace(/-+$/, '');
}

const SLUG = /^[-a-zA-Z0-9_]+$/;
const HEX6 = /^#[0-9a-f]{6}$/i;

function parseNumber(text: string): number | null {
  if (text.trim() === '') return null;
  const n = Number(text);
  return Number.isFinite(n) ? n : null;
}

function add(errors: FieldErrors, key: string, message: string): void {
  (errors[key] ??= []).push(message);
}

export interface PayloadResult<T> {
  payload: T | null;
  /** Keyed like the API's own 400 bodies (`lesion_classes.0.name`), so one display serves both. */
  errors: FieldErrors;
}

/** Checks the values and builds the POST (create) or PATCH (update) body. */
export function projectPayload(values: ProjectFormValues, mode: 'create'): PayloadResult<ProjectCreate>;
export function projectPayload(values: ProjectFormValues, mode: 'update'): PayloadResult<ProjectUpdate>;
export function projectPayload(values: ProjectFormValues, mode: FormMode): PayloadResult<ProjectCreate | ProjectUpdate> {
  const errors: FieldErrors = {};
  const name = values.name.trim();
  if (name === '') add(errors, 'name', 'Give the project a name.');

  const slug = values.slug.trim();
  if (mode === 'create') {
    if (slug === '') add(errors, 'slug', 'Give the project a short name for its address.');
    else if (!SLUG.test(slug)) add(errors, 'slug', 'Use letters, digits, - and _ only.');
    if (!MODALITIES.some((m) => m.value === values.modality)) add(errors, 'modality', 'Choose a modality.');
  }

  const classes = values.lesion_classes
    .map((c, i) => ({ i, name: c.name.trim(), color: c.color }))
    .filter((c, _, all) => c.name !== '' || all.length === 1);
  if (classes.length === 0 || (classes.length === 1 && classes[0]?.name === '')) {
    add(errors, 'lesion_classes', 'Add at least one lesion class.');
  }
  const seen = new Set<string>();
  for (const c of classes) {
    if (c.name === '') continue;
    if (seen.has(c.name)) add(errors, `lesion_classes.${c.i}.name`, `“${c.name}” is already a class.`);
    seen.add(c.name);
  }

  const presets: { name: string; center: number; width: number }[] = [];
  values.window_presets.forEach((w, i) => {
    if (w.name.trim() === '' && w.center.trim() === '' && w.width.trim() === '') return; // an empty row
    const center = parseNumber(w.center);
    const width = parseNumber(w.width);
    if (w.name.trim() === '') add(errors, `window_presets.${i}.name`, 'Name the preset.');
    if (center === null) add(errors, `window_presets.${i}.center`, 'A number (HU for CT).');
    if (width === null || width <= 0) add(errors, `window_presets.${i}.width`, 'A number above 0.');
    if (center !== null && width !== null && width > 0) presets.push({ name: w.name.trim(), center, width });
  });

  const perTask = Number(values.annotators_per_task);
  if (!Number.isInteger(perTask) || perTask < 1 || perTask > 20) {
    add(errors, 'annotators_per_task', 'A whole number from 1 to 20.');
  }

  if (Object.keys(errors).length > 0) return { payload: null, errors };

  const common = {
    name,
    description: values.description.trim(),
    lesion_classes: classes.map((c) => (HEX6.test(c.color) ? { name: c.name, color: c.color } : { name: c.name })),
    deidentify: values.deidentify,
    deidentify_modified_dates: values.deidentify_modified_dates,
    deidentify_clean_descriptors: values.deidentify_clean_descriptors,
    assignment: values.assignment,
    ordering: values.ordering,
    annotators_per_task: perTask,
    reviewer_must_differ: values.reviewer_must_differ,
  };
  if (mode === 'update') return { payload: { ...common, window_presets: presets }, errors };
  // No presets on a new project: the server gives the modality's defaults (CT: soft tissue, lung, bone).
  const modality = MODALITIES.find((m) => m.value === values.modality)?.value ?? 'OT';
  const create: ProjectCreate = { ...common, slug, modality };
  if (presets.length > 0) create.window_presets = presets;
  return { payload: create, errors };
}

// ---------------------------------------------------------------------------------------------
// The widget.

interface ListRow<T> {
  el: HTMLElement;
  read(): T;
  targets(index: number): [string, ErrorTarget][];
}

function removeButton(label: string, onClick: () => void): HTMLButtonElement {
  return h('button', { type: 'button', class: 'btn btn-ghost btn-small', 'aria-label': label, title: label, onclick: onClick }, 'Remove');
}

function listEditor<T>(opts: {
  rows: T[];
  make: (value: T, remove: () => void) => ListRow<T>;
  blank: (count: number) => T;
  addLabel: string;
  head: HTMLElement;
}): { el: HTMLElement; read(): T[]; targets(prefix: string): [string, ErrorTarget][] } {
  const list = h('div', { class: 'row-list' });
  const rows: ListRow<T>[] = [];
  const push = (value: T, focus: boolean): void => {
    const row = opts.make(value, () => {
      rows.splice(rows.indexOf(row), 1);
      row.el.remove();
    });
    rows.push(row);
    list.append(row.el);
    if (focus) row.el.querySelector<HTMLInputElement>('input[type=text], input:not([type])')?.focus();
  };
  opts.rows.forEach((r) => push(r, false));
  const addButton = h('button', { type: 'button', class: 'btn btn-small' }, `+ ${opts.addLabel}`);
  addButton.addEventListener('click', () => push(opts.blank(rows.length), true));
  return {
    el: h('div', { class: 'list-editor' }, opts.head, list, h('div', null, addButton)),
    read: () => rows.map((r) => r.read()),
    targets: (prefix) => rows.flatMap((r, i) => r.targets(i).map(([k, t]): [string, ErrorTarget] => [`${prefix}.${k}`, t])),
  };
}

function rowError(): HTMLElement {
  return h('p', { class: 'field-error', hidden: true, role: 'alert' });
}

function classRow(value: ClassRow, remove: () => void): ListRow<ClassRow> {
  const color = h('input', { type: 'color', value: HEX6.test(value.color) ? value.color : '#888888', 'aria-label': 'Colour', class: 'color-input' });
  const name = input({ value: value.name, 'aria-label': 'Class name', placeholder: 'e.g. liver lesion', maxlength: 100 });
  const error = rowError();
  const el = h('div', { class: 'list-row list-row-class' }, color, name, removeButton('Remove this class', remove), error);
  return {
    el,
    read: () => ({ name: name.value, color: color.value }),
    targets: (i) => [[`${i}`, { error, control: name }], [`${i}.name`, { error, control: name }], [`${i}.color`, { error, control: color }]],
  };
}

function presetRow(value: PresetRow, remove: () => void): ListRow<PresetRow> {
  const name = input({ value: value.name, 'aria-label': 'Preset name', placeholder: 'e.g. Soft tissue', maxlength: 100 });
  const center = input({ value: value.center, 'aria-label': 'Window centre', inputmode: 'decimal', placeholder: '40' });
  const width = input({ value: value.width, 'aria-label': 'Window width', inputmode: 'decimal', placeholder: '400' });
  const error = rowError();
  const el = h('div', { class: 'list-row list-row-preset' }, name, center, width, removeButton('Remove this preset', remove), error);
  return {
    el,
    read: () => ({ name: name.value, center: center.value, width: width.value }),
    targets: (i) => [
      [`${i}`, { error, control: name }], [`${i}.name`, { error, control: name }],
      [`${i}.center`, { error, control: center }], [`${i}.width`, { error, control: width }],
    ],
  };
}

function radios<V extends string>(name: string, legend: string, options: { value: V; label: string; hint: string }[], value: V): {
  el: HTMLElement; read(): V; error: HTMLElement; first: HTMLInputElement;
} {
  const groupName = uid(name);
  const inputs = options.map((o) => h('input', { type: 'radio', name: groupName, value: o.value, checked: o.value === value }));
  const error = rowError();
  const el = h('fieldset', { class: 'radio-group' },
    h('legend', null, legend),
    options.map((o, i) => h('label', { class: 'radio' }, inputs[i],
      h('span', null, h('span', { class: 'strong' }, o.label), h('span', { class: 'hint' }, o.hint)))),
    error,
  );
  return {
    el,
    error,
    first: inputs[0] as HTMLInputElement,
    read: () => (inputs.find((i) => i.checked)?.value ?? value) as V,
  };
}

export interface ProjectFormOptions {
  mode: FormMode;
  initial: ProjectFormValues;
  submitLabel: string;
  busyLabel: string;
  errorTitle: string;
  /** Sends the payload; a rejection is shown on the form (field errors next to fields). */
  submit: (payload: ProjectCreate | ProjectUpdate) => Promise<void>;
  signal: AbortSignal;
}

export function projectForm(opts: ProjectFormOptions): HTMLFormElement {
  const v = opts.initial;
  const create = opts.mode === 'create';

  const name = field('Name', input({ value: v.name, required: true, maxlength: 200, autocomplete: 'off' }));
  const slugInput = input({ value: v.slug, maxlength: 80, autocomplete: 'off', spellcheck: false });
  const slug = field('Address', slugInput, 'Letters, digits, - and _; used in links. It cannot change later.');
  let slugEdited = v.slug !== '';
  slugInput.addEventListener('input', () => { slugEdited = slugInput.value !== ''; });
  name.control.addEventListener('input', () => {
    if (create && !slugEdited) slugInput.value = slugify(name.control.value);
  });
  const modality = field('Modality', select(MODALITIES, v.modality), 'It cannot change later.');
  const description = field('Description', h('textarea', { rows: 3 }, v.description), 'Shown to the project’s members.');
  const deidInput = h('input', { checked: v.deidentify });
  const deid = checkboxField('De-identify DICOM on import', deidInput,
    'PS3.15 Basic Profile: names and IDs replaced by pseudonyms, identifying attributes removed. Applies to studies imported from now on.');
  const datesInput = h('input', { checked: v.deidentify_modified_dates });
  const dates = checkboxField('Keep intervals between dates (modified dates)', datesInput,
    'Dates and times moved by one offset per patient, so the time between a patient’s studies survives; off: dates and times removed.');
  const descriptorsInput = h('input', { checked: v.deidentify_clean_descriptors });
  const descriptors = checkboxField('Clean descriptors (empty free text)', descriptorsInput,
    'Study and series descriptions, protocol names and comments emptied: free text can name a patient.');
  const deidOptions = h('div', { class: 'indent' }, dates.el, descriptors.el);
  const showOptions = (): void => { deidOptions.hidden = !deidInput.checked; };
  deidInput.addEventListener('change', showOptions);
  showOptions();

  const classesError = rowError();
  const classes = listEditor<ClassRow>({
    rows: v.lesion_classes,
    make: classRow,
    blank: (n) => ({ name: '', color: PALETTE[n % PALETTE.length] ?? '#888888' }),
    addLabel: 'Add class',
    head: h('div', { class: 'list-head list-row-class' }, h('span', null, 'Colour'), h('span', null, 'Name'), h('span')),
  });
  const presetsError = rowError();
  const presets = listEditor<PresetRow>({
    rows: v.window_presets,
    make: presetRow,
    blank: () => ({ name: '', center: '', width: '' }),
    addLabel: 'Add preset',
    head: h('div', { class: 'list-head list-row-preset' }, h('span', null, 'Name'), h('span', null, 'Centre'), h('span', null, 'Width'), h('span')),
  });

  const assignment = radios<Assignment>('assignment', 'Who gets which task', [
    { value: 'pool', label: 'Open pool', hint: 'Annotators claim the next waiting task themselves.' },
    { value: 'assigned', label: 'Assigned by a manager', hint: 'A manager gives each task to an annotator (Tasks page).' },
  ], v.assignment);
  const ordering = radios<Ordering>('ordering', 'Order of the queue', [
    { value: 'priority', label: 'Priority', hint: 'Highest priority first, then oldest.' },
    { value: 'low_confidence', label: 'Low model confidence first', hint: 'Active learning: the cases the model is least sure of come first.' },
  ], v.ordering);
  const perTask = field('Annotators per series', input({ value: v.annotators_per_task, type: 'number', min: 1, max: 20, step: 1, class: 'input-narrow' }),
    'More than 1 makes an agreement study: each series gets that many independent tasks.');
  const mustDifferInput = h('input', { checked: v.reviewer_must_differ });
  const mustDiffer = checkboxField('The reviewer must not be the annotator', mustDifferInput);

  const errorSlot = h('div', { class: 'slot' });
  const submitButton = h('button', { type: 'submit', class: 'btn btn-primary' }, opts.submitLabel);

  const form = h('form', { class: 'project-form', novalidate: true },
    h('section', { class: 'card' },
      h('h2', null, 'General'),
      create ? h('div', { class: 'grid-2' }, name.el, slug.el) : name.el,
      create ? modality.el : null,
      description.el,
      deid.el,
      deidOptions,
    ),
    h('section', { class: 'card' },
      h('h2', null, 'Lesion classes'),
      h('p', { class: 'hint' }, create
        ? 'The labels annotators choose from. Colours are used for outlines and masks.'
        : 'Renaming a class does not rename the lesions already drawn with the old name.'),
      classes.el,
      classesError,
    ),
    h('section', { class: 'card' },
      h('h2', null, 'Window presets'),
      h('p', { class: 'hint' }, create
        ? 'Leave empty to get the modality’s defaults (CT: soft tissue, lung, bone).'
        : 'The grey-level windows the viewer offers, centre and width in image units (HU for CT).'),
      presets.el,
      presetsError,
    ),
    h('section', { class: 'card' },
      h('h2', null, 'Assignment rules'),
      h('div', { class: 'grid-2' }, assignment.el, ordering.el),
      perTask.el,
      mustDiffer.el,
    ),
    h('div', { class: 'form-actions' }, submitButton, errorSlot),
  );

  const targets = (): Map<string, ErrorTarget> => new Map<string, ErrorTarget>([
    ['name', name], ['slug', slug], ['modality', modality], ['description', description], ['deidentify', deid],
    ['deidentify_modified_dates', dates], ['deidentify_clean_descriptors', descriptors],
    ['lesion_classes', { error: classesError }], ...classes.targets('lesion_classes'),
    ['window_presets', { error: presetsError }], ...presets.targets('window_presets'),
    ['assignment', { error: assignment.error, control: assignment.first }],
    ['ordering', { error: ordering.error, control: ordering.first }],
    ['annotators_per_task', perTask], ['reviewer_must_differ', mustDiffer],
  ]);

  const read = (): ProjectFormValues => ({
    name: name.control.value,
    slug: slugInput.value,
    description: description.control.value,
    modality: modality.control.value,
    deidentify: deidInput.checked,
    deidentify_modified_dates: datesInput.checked,
    deidentify_clean_descriptors: descriptorsInput.checked,
    lesion_classes: classes.read(),
    window_presets: presets.read(),
    assignment: assignment.read(),
    ordering: ordering.read(),
    annotators_per_task: perTask.control.value,
    reviewer_must_differ: mustDifferInput.checked,
  });

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (submitButton.disabled) return;
    const all = targets();
    clearFormErrors(all, errorSlot);
    const { payload, errors } = opts.mode === 'create'
      ? projectPayload(read(), 'create')
      : projectPayload(read(), 'update');
    if (!payload) {
      showClientErrors(errors, 'Check the highlighted fields.', all, errorSlot, 'Not saved')?.focus();
      return;
    }
    setBusy(submitButton, true, opts.busyLabel);
    try {
      await opts.submit(payload);
    } catch (err) {
      if (opts.signal.aborted) return;
      showFormErrors(err, all, errorSlot, opts.errorTitle)?.focus();
    } finally {
      if (!opts.signal.aborted) setBusy(submitButton, false);
    }
  });
  return form;
}
