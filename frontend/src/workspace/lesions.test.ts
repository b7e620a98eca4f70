import { describe, expect, it, vi } from 'vitest';
import { ApiError } from '../api/client';
import type { Lesion, LesionWrite } from '../api/types';
import { clearSegment, composeLabelmap, countSegment, extractMask, replaceSegment } from './labelmap';
import { LesionStore, MAX_SEGMENTS, parseColor, type LesionsApi } from './lesions';

const classes = [
  { name: 'tumour', color: '#e6194b' },
  { name: 'cyst', color: '#0f0' },
  { name: 'node', color: 'teal' },
];

function lesion(id: number, lesion_class = 'tumour'): Lesion {
  return { id, task: 1, lesion_class, name: '', key_slice: null, box: null, latest_mask: null, created: '' };
}

function fakeApi(): LesionsApi & { created: LesionWrite[] } {
  let next = 100;
  const created: LesionWrite[] = [];
  return {
    created,
    create: vi.fn(async (_task: number, data: LesionWrite) => {
      created.push(data);
      return { ...lesion(next++, data.lesion_class), key_slice: data.key_slice ?? null, box: data.box ?? null };
    }),
    update: vi.fn(async (id: number, data: Partial<LesionWrite>) => lesion(id, data.lesion_class)),
    remove: vi.fn(async () => null),
  };
}

describe('parseColor', () => {
  it('reads hex and rgb() colours and refuses names', () => {
    expect(parseColor('#e6194b')).toEqual([230, 25, 75]);
    expect(parseColor('#0F0')).toEqual([0, 255, 0]);
    expect(parseColor('#11223344')).toEqual([17, 34, 51]);
    expect(parseColor('rgb(1, 2, 300)')).toEqual([1, 2, 255]);
    expect(parseColor('teal')).toBeNull();
  });
});

describe('LesionStore', () => {
  it('maps lesions to segments in id order and back', () => {
    const store = new LesionStore(1, classes, fakeApi());
    store.load([lesion(9, 'cyst'), lesion(4), lesion(6)]);
    expect(store.entries.map((e) => [e.lesion.id, e.segment])).toEqual([[4, 1], [6, 2], [9, 3]]);
    expect(store.bySegment(3)?.lesion.id).toBe(9);
    expect(store.segmentOf(6)).toBe(2);
    expect(store.entries.map((e) => e.name)).toEqual(['tumour 1', 'tumour 2', 'cyst 1']);
    expect(store.selected?.lesion.id).toBe(4);
  });

  it('shows an imported label under its own name (the ROI or segment name in the file)', () => {
    const store = new LesionStore(1, classes, fakeApi());
    store.load([lesion(4), { ...lesion(5), name: 'GTV-1' }, lesion(6)]);
    expect(store.entries.map((e) => e.name)).toEqual(['tumour 1', 'GTV-1', 'tumour 3']);
  });

  it('colours lesions by class, with the server palette for unreadable colours', () => {
    const store = new LesionStore(1, classes, fakeApi());
    store.load([lesion(1), lesion(2, 'cyst'), lesion(3, 'node')]);
    expect(store.get(1)?.color).toEqual([230, 25, 75]);
    expect(store.get(2)?.color).toEqual([0, 255, 0]);
    // "teal" is the third class: PALETTE[2], in the swatch too
    expect(store.get(3)).toMatchObject({ color: [0x43, 0x63, 0xd8], css: '#4363d8' });
    expect(store.get(2)?.css).toBe('#00ff00');
    const table = store.colorTable({ alpha: 100, selectedAlpha: 200 });
    expect(table).toHaveLength(MAX_SEGMENTS + 1);
    expect(table[0]).toEqual([0, 0, 0, 0]);
    expect(table[1]).toEqual([230, 25, 75, 200]); // selected
    expect(table[2]).toEqual([0, 255, 0, 100]);
    expect(table[4]).toEqual([0, 0, 0, 0]);
  });

  it('puts only a hex colour of its own in the swatch, whatever text the project holds', () => {
    const hostile = [{ name: 'x', color: '#000;background:url(https://example.org/)' }];
    const store = new LesionStore(1, hostile, fakeApi());
    store.load([lesion(1, 'x')]);
    expect(store.get(1)?.css).toMatch(/^#[0-9a-f]{6}$/);
  });

  it('adds a lesion on the server with its prompt, in the lowest free segment, selected', async () => {
    const api = fakeApi();
    const store = new LesionStore(7, classes, api);
    store.load([lesion(1), lesion(2), lesion(3)]);
    await store.remove(2);
    const entry = await store.add('cyst', { key_slice: 4, box: [1, 2, 3, 4] });
    expect(api.create).toHaveBeenCalledWith(7, { lesion_class: 'cyst', key_slice: 4, box: [1, 2, 3, 4] });
    expect(entry.segment).toBe(2);
    expect(store.selected?.lesion.id).toBe(entry.lesion.id);
    const first = await store.add();
    expect(first.lesion.lesion_class).toBe('tumour');
    expect(first.segment).toBe(4);
  });

  it('changes the class on the server and recolours', async () => {
    const api = fakeApi();
    const store = new LesionStore(1, classes, api);
    store.load([lesion(1)]);
    const listener = vi.fn();
    store.subscribe(listener);
    await store.setClass(1, 'cyst');
    expect(api.update).toHaveBeenCalledWith(1, { lesion_class: 'cyst' });
    expect(store.get(1)).toMatchObject({ segment: 1, color: [0, 255, 0], name: 'cyst 1' });
    expect(listener).toHaveBeenCalled();
    await expect(store.setClass(1, 'polyp')).rejects.toThrow(/unknown lesion class/);
  });

  it('keeps the lesion when the server refuses the delete', async () => {
    const api = fakeApi();
    api.remove = vi.fn(async () => { throw new ApiError(409, 'the task is submitted'); });
    const store = new LesionStore(1, classes, api);
    store.load([lesion(1)]);
    await expect(store.remove(1)).rejects.toThrow(/submitted/);
    expect(store.get(1)).not.toBeNull();
  });

  it('moves the selection to a neighbour on delete and wraps when cycling', async () => {
    const store = new LesionStore(1, classes, fakeApi());
    store.load([lesion(1), lesion(2), lesion(3)]);
    store.select(2);
    expect(await store.remove(2)).toBe(2);
    expect(store.selected?.lesion.id).toBe(3);
    expect(store.selectNext()?.lesion.id).toBe(1);
    expect(store.selectNext(-1)?.lesion.id).toBe(3);
    expect(() => store.select(99)).toThrow(/not in this task/);
  });

  it('hides and shows lesions (hidden ones are transparent)', () => {
    const store = new LesionStore(1, classes, fakeApi());
    store.load([lesion(1), lesion(2)]);
    expect(store.toggleVisible(2)).toBe(false);
    expect(store.colorTable()[2]![3]).toBe(0);
    store.setAllVisible(false); // solo the selected one
    expect(store.entries.map((e) => e.visible)).toEqual([true, false]);
    store.setAllVisible(true);
    expect(store.entries.every((e) => e.visible)).toBe(true);
  });

  it('refuses more lesions than a uint8 labelmap holds', () => {
    const store = new LesionStore(1, classes, fakeApi());
    expect(() => store.load(Array.from({ length: 256 }, (_, i) => lesion(i + 1)))).toThrow(/at most 255/);
  });
});

describe('labelmap helpers', () => {
  it('extracts, replaces and clears one segment', () => {
    const map = Uint8Array.from([0, 1, 1, 2, 2, 0]);
    expect([...extractMask(map, 2)]).toEqual([0, 0, 0, 1, 1, 0]);
    const changed = replaceSegment(map, 1, Uint8Array.from([1, 0, 1, 1, 0, 0]));
    expect([...map]).toEqual([1, 0, 1, 1, 2, 0]);
    expect([...changed]).toEqual([0, 1, 3]);
    const kept = Uint8Array.from([0, 2, 0]);
    replaceSegment(kept, 1, Uint8Array.from([1, 1, 0]), { keepOthers: true });
    expect([...kept]).toEqual([1, 2, 0]);
    expect([...clearSegment(map, 1)]).toEqual([0, 2, 3]);
    expect(countSegment(map, 2)).toBe(1);
  });

  it('composes a labelmap (later lesions on top)', () => {
    const map = composeLabelmap(4, [
      { segment: 1, voxels: Uint8Array.from([1, 1, 0, 0]) },
      { segment: 2, voxels: Uint8Array.from([0, 1, 1, 0]) },
    ]);
    expect([...map]).toEqual([1, 2, 2, 0]);
    expect(() => composeLabelmap(3, [{ segment: 1, voxels: new Uint8Array(2) }])).toThrow();
  });
});
