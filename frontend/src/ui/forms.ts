// Form fields with their own error line, and the mapping of API 400 bodies onto them.

import { ApiError, type FieldErrors } from '../api';
import { h, type Child } from './dom';
import { errorBanner } from './feedback';

let ids = 0;
/** A unique element id (labels and aria-describedby need one). */
export function uid(prefix = 'f'): string {
  ids += 1;
  return `${prefix}-${ids}`;
}

export type Control = HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement;

/** Where an error message for one key of the payload is shown. */
export interface ErrorTarget {
  error: HTMLElement;
  control?: Control | null;
}

export interface FieldRow extends ErrorTarget {
  el: HTMLElement;
  control: Control;
}

/** A labelled control with an optional hint and an error line (hidden while empty). */
export function field(label: string, control: Control, hint?: Child): FieldRow {
  control.id ||= uid('field');
  const error = h('p', { class: 'field-error', id: `${control.id}-error`, hidden: true, role: 'alert' });
  const hintEl = hint ? h('p', { class: 'hint', id: `${control.id}-hint` }, hint) : null;
  control.setAttribute('aria-describedby', [hintEl?.id, error.id].filter(Boolean).join(' '));
  const el = h('div', { class: 'field' }, h('label', { for: control.id }, label), control, hintEl, error);
  return { el, control, error };
}

/** A checkbox with its label to the right. */
export function checkboxField(label: string, input: HTMLInputElement, hint?: Child): FieldRow {
  input.type = 'checkbox';
  input.id ||= uid('check');
  const error = h('p', { class: 'field-error', id: `${input.id}-error`, hidden: true, role: 'alert' });
  const el = h('div', { class: 'field field-check' },
    h('label', { for: input.id, class: 'check' }, input, h('span', null, label)),
    hint ? h('p', { class: 'hint' }, hint) : null,
    error,
  );
  return { el, control: input, error };
}

export function setFieldError(target: ErrorTarget, messages: string[] | null): void {
  const text = messages && messages.length > 0 ? messages.join(' ') : null;
  target.error.textContent = text ?? '';
  target.error.hidden = text === null;
  if (target.control) {
    target.control.classList.toggle('invalid', text !== null);
    if (text === null) target.control.removeAttribute('aria-invalid');
    else target.control.setAttribute('aria-invalid', 'true');
  }
}

export interface RoutedErrors {
  /** Target key -> messages (a nested key lands on its closest known parent). */
  byField: Map<string, string[]>;
  /** Messages no field shows: non_field_errors and unknown fields (with their name). */
  general: string[];
}

/**
 * Sends each field error of an API answer to the closest key the form knows:
 * `lesion_classes.0.name` goes to that input if the form has it, else to `lesion_classes.0`,
 * else to `lesion_classes`; what has no home is general.
 */
export function routeFieldErrors(fields: FieldErrors, known: (key: string) => boolean): RoutedErrors {
  const byField = new Map<string, string[]>();
  const general: string[] = [];
  for (const [key, messages] of Object.entries(fields)) {
    if (key === '' || key === 'non_field_errors' || key === 'detail') {
      general.push(...messages);
      continue;
    }
    const parts = key.split('.');
    let target: string | null = null;
    for (let n = parts.length; n > 0 && target === null; n -= 1) {
      const candidate = parts.slice(0, n).join('.');
      if (known(candidate)) target = candidate;
    }
    if (target === null) {
      general.push(`${key.replace(/_/g, ' ')}: ${messages.join(' ')}`);
    } else {
      byField.set(target, [...(byField.get(target) ?? []), ...messages]);
    }
  }
  return { byField, general };
}

/** The sentence for the banner above a form whose fields show the details. */
export function errorSummary(err: unknown, routed: RoutedErrors | null): string {
  if (!(err instanceof ApiError)) return err instanceof Error ? err.message : String(err);
  const body = err.body;
  const detail = body !== null && typeof body === 'object' && 'detail' in body &&
    typeof (body as { detail: unknown }).detail === 'string' ? (body as { detail: string }).detail : null;
  if (routed === null) return err.message;
  const parts = [detail, ...routed.general].filter((p): p is string => Boolean(p));
  if (parts.length > 0) return parts.join(' ');
  if (routed.byField.size > 0) return 'Check the highlighted fields.';
  return err.message;
}

/**
 * Shows errors on a form: field messages next to their fields, the rest in a banner in `slot`.
 * Returns the first control with an error (to focus), if any.
 */
/** Shows the form's own checks (nothing was sent): the same display as an API 400. */
export function showClientErrors(
  fields: FieldErrors,
  message: string,
  targets: Map<string, ErrorTarget>,
  slot: HTMLElement,
  title: string,
): Control | null {
  return showFormErrors(new ApiError(0, message, fields), targets, slot, title);
}

export function showFormErrors(
  err: unknown,
  targets: Map<string, ErrorTarget>,
  slot: HTMLElement,
  title: string,
): Control | null {
  for (const target of targets.values()) setFieldError(target, null);
  const fields = err instanceof ApiError ? err.fields : {};
  const routed = routeFieldErrors(fields, (key) => targets.has(key));
  let first: Control | null = null;
  for (const [key, messages] of routed.byField) {
    const target = targets.get(key);
    if (!target) continue;
    setFieldError(target, messages);
    first ??= target.control ?? null;
  }
  const banner = errorBanner(err, title);
  const text = banner.querySelector('p');
  if (text) text.textContent = errorSummary(err, routed);
  slot.replaceChildren(banner);
  return first;
}

export function clearFormErrors(targets: Map<string, ErrorTarget>, slot: HTMLElement): void {
  for (const target of targets.values()) setFieldError(target, null);
  slot.replaceChildren();
}

/** Disables a button while its request runs and says what is happening. */
export function setBusy(button: HTMLButtonElement, busy: boolean, busyLabel?: string): void {
  if (busy) {
    button.dataset.label ??= button.textContent ?? '';
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
    if (busyLabel) button.textContent = busyLabel;
  } else {
    button.disabled = false;
    button.removeAttribute('aria-busy');
    if (button.dataset.label !== undefined) button.textContent = button.dataset.label;
    delete button.dataset.label;
  }
}

export function input(attrs: Record<string, string | number | boolean | null | undefined> = {}): HTMLInputElement {
  return h('input', { type: 'text', ...attrs });
}

export function select<V extends string>(options: { value: V; label: string }[], value: V | ''): HTMLSelectElement {
  const el = h('select', null, options.map((o) => h('option', { value: o.value }, o.label)));
  el.value = value;
  return el;
}
