import { describe, expect, it } from 'vitest';
import { ApiError, parseApiError } from '../api';
import { errorSummary, routeFieldErrors } from './forms';

const known = (keys: string[]) => (key: string): boolean => keys.includes(key);

describe('routeFieldErrors', () => {
  it('sends nested errors to the closest field the form has', () => {
    const routed = routeFieldErrors({
      'lesion_classes.1.name': ['This field may not be blank.'],
      'window_presets.0.width': ['Ensure this value is greater than or equal to 0.001.'],
      slug: ['already taken'],
    }, known(['slug', 'lesion_classes', 'lesion_classes.1.name', 'window_presets']));
    expect(Object.fromEntries(routed.byField)).toEqual({
      'lesion_classes.1.name': ['This field may not be blank.'],
      window_presets: ['Ensure this value is greater than or equal to 0.001.'],
      slug: ['already taken'],
    });
    expect(routed.general).toEqual([]);
  });

  it('keeps non-field errors and unknown fields (named) for the banner', () => {
    const routed = routeFieldErrors({
      non_field_errors: ['Task is not submitted.'],
      some_field: ['bad'],
      name: ['required'],
    }, known(['name']));
    expect(Object.fromEntries(routed.byField)).toEqual({ name: ['required'] });
    expect(routed.general).toEqual(['Task is not submitted.', 'some field: bad']);
  });
});

describe('errorSummary', () => {
  it('uses the detail of a domain error whose fields are shown next to the fields', () => {
    const err = parseApiError(400, { detail: "a project with the slug 'x' exists", slug: ['already taken'] });
    const routed = routeFieldErrors(err.fields, known(['slug']));
    expect(routed.byField.get('slug')).toEqual(['already taken']);
    expect(errorSummary(err, routed)).toBe("a project with the slug 'x' exists");
  });

  it('points at the fields when a DRF validation body has nothing else to say', () => {
    const err = parseApiError(400, { name: ['This field is required.'] });
    expect(errorSummary(err, routeFieldErrors(err.fields, known(['name'])))).toBe('Check the highlighted fields.');
  });

  it('falls back to the message for other errors', () => {
    expect(errorSummary(new ApiError(409, 'a project keeps at least one manager'), null))
      .toBe('a project keeps at least one manager');
    expect(errorSummary(new Error('boom'), null)).toBe('boom');
  });
});
