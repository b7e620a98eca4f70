import { describe, expect, it } from 'vitest';
import type { Project } from '../api';
import { emptyProjectValues, projectPayload, projectValues, slugify, type ProjectFormValues } from './projectForm';

function values(over: Partial<ProjectFormValues> = {}): ProjectFormValues {
  return {
    ...emptyProjectValues(),
    name: ' Liver CT ',
    slug: 'liver-ct',
    lesion_classes: [{ name: 'tumour', color: '#e6194b' }, { name: ' cyst ', color: '#3cb44b' }],
    ...over,
  };
}

describe('slugify', () => {
  it.each([
    ['Liver CT 2024', 'liver-ct-2024'],
    ['  Über  Läsionen!! ', 'uber-lasionen'],
    ['---', ''],
    ['a'.repeat(100), 'a'.repeat(80)],
  ])('%j -> %j', (name, slug) => {
    expect(slugify(name)).toBe(slug);
  });
});

describe('projectPayload (create)', () => {
  it('maps the form to the POST body, trimming text and parsing numbers', () => {
    const { payload, errors } = projectPayload(values({
      description: ' Phase II ',
      window_presets: [{ name: 'Liver', center: '60', width: '160.5' }, { name: '', center: '', width: '' }],
      assignment: 'assigned',
      ordering: 'low_confidence',
      annotators_per_task: '3',
      reviewer_must_differ: false,
      deidentify: true,
      deidentify_clean_descriptors: true,
    }), 'create');
    expect(errors).toEqual({});
    expect(payload).toEqual({
      name: 'Liver CT',
      slug: 'liver-ct',
      modality: 'CT',
      description: 'Phase II',
      lesion_classes: [{ name: 'tumour', color: '#e6194b' }, { name: 'cyst', color: '#3cb44b' }],
      window_presets: [{ name: 'Liver', center: 60, width: 160.5 }],
      deidentify: true,
      deidentify_modified_dates: true,
      deidentify_clean_descriptors: true,
      assignment: 'assigned',
      ordering: 'low_confidence',
      annotators_per_task: 3,
      reviewer_must_differ: false,
    });
  });

  it('leaves window_presets out so the server gives the modality defaults', () => {
    const { payload } = projectPayload(values(), 'create');
    expect(payload).not.toHaveProperty('window_presets');
  });

  it('drops blank extra class rows and colours the server would not understand', () => {
    const { payload } = projectPayload(values({
      lesion_classes: [{ name: 'a', color: 'red' }, { name: '  ', color: '#000000' }],
    }), 'create');
    expect(payload?.lesion_classes).toEqual([{ name: 'a' }]);
  });

  it('reports every problem under the keys the API uses', () => {
    const { payload, errors } = projectPayload({
      ...emptyProjectValues(),
      slug: 'no spaces',
      modality: 'XR',
      window_presets: [{ name: '', center: 'abc', width: '0' }],
      annotators_per_task: '21',
    }, 'create');
    expect(payload).toBeNull();
    expect(Object.keys(errors).sort()).toEqual([
      'annotators_per_task', 'lesion_classes', 'modality', 'name', 'slug',
      'window_presets.0.center', 'window_presets.0.name', 'window_presets.0.width',
    ]);
  });

  it('flags a duplicate class name on the row that repeats it', () => {
    const { errors } = projectPayload(values({
      lesion_classes: [{ name: 'cyst', color: '#111111' }, { name: 'tumour', color: '#222222' }, { name: 'cyst ', color: '#333333' }],
    }), 'create');
    expect(errors).toEqual({ 'lesion_classes.2.name': ['“cyst” is already a class.'] });
  });
});

describe('projectPayload (update)', () => {
  const project: Project = {
    id: 1, slug: 'lung', name: 'Lung', description: '', modality: 'CT',
    lesion_classes: [{ name: 'nodule', color: '#4363d8' }],
    window_presets: [{ name: 'Lung', center: -600, width: 1500 }],
    deidentify: false, deidentify_modified_dates: true, deidentify_clean_descriptors: false, assignment: 'pool', ordering: 'priority', annotators_per_task: 1,
    reviewer_must_differ: true, active_model_version: null, my_role: 'manager', current_round: 0,
    created: '2026-01-01T00:00:00Z',
  };

  it('round-trips a project without slug or modality (they cannot change)', () => {
    const { payload, errors } = projectPayload(projectValues(project), 'update');
    expect(errors).toEqual({});
    expect(payload).toEqual({
      name: 'Lung', description: '', deidentify: false,
      deidentify_modified_dates: true, deidentify_clean_descriptors: false,
      lesion_classes: [{ name: 'nodule', color: '#4363d8' }],
      window_presets: [{ name: 'Lung', center: -600, width: 1500 }],
      assignment: 'pool', ordering: 'priority', annotators_per_task: 1, reviewer_must_differ: true,
    });
  });

  it('sends an empty preset list when every preset is removed', () => {
    const { payload } = projectPayload({ ...projectValues(project), window_presets: [] }, 'update');
    expect(payload?.window_presets).toEqual([]);
  });
});
