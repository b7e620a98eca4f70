import { describe, expect, it } from 'vitest';
import { LabelmapHistory } from './history';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Paints `value` on random voxels the way a brush does, reporting them to the history. */
function paint(map: Uint8Array, history: LabelmapHistory, rand: () => number, value: number, n: number): void {
  const touched: number[] = [];
  for (let i = 0; i < n; i++) {
    const index = Math.floor(rand() * map.length);
    map[index] = value;
    touched.push(index, index); // duplicates, as a brush reports overlapping dabs
  }
  history.record(touched, map);
}

describe('LabelmapHistory', () => {
  it('undoes and redoes random strokes exactly', () => {
    const rand = rng(42);
    const map = new Uint8Array(10 * 20 * 30);
    for (let i = 0; i < map.length; i += 7) map[i] = 1;
    const history = new LabelmapHistory(map);
    const states = [map.slice()];
    for (let s = 0; s < 25; s++) {
      history.beginStroke(`stroke ${s}`);
      for (let dab = 0; dab < 5; dab++) paint(map, history, rand, Math.floor(rand() * 4), 40);
      history.endStroke();
      states.push(map.slice());
    }
    expect(history.undoDepth).toBeGreaterThan(20);
    for (let s = states.length - 2; s >= 0; s--) {
      if (!history.canUndo) break;
      history.undo(map);
      expect(map).toEqual(states[s]);
    }
    expect(map).toEqual(states[0]);
    while (history.canRedo) history.redo(map);
    expect(map).toEqual(states.at(-1));
  });

  it('groups a stroke into one step and keeps the first old value of a voxel', () => {
    const map = new Uint8Array(8);
    const history = new LabelmapHistory(map);
    history.beginStroke('Brush');
    map[2] = 1; history.record([2], map);
    map[2] = 3; history.record([2], map);
    map[5] = 3; history.record([5, 5], map);
    expect(history.undoDepth).toBe(0);
    const change = history.endStroke();
    expect(change).toMatchObject({ label: 'Brush', segments: [3] });
    expect([...change!.indices]).toEqual([2, 5]);
    expect(history.undoDepth).toBe(1);
    const undone = history.undo(map);
    expect([...map]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect(undone?.segments).toEqual([3]);
    history.redo(map);
    expect([...map]).toEqual([0, 0, 3, 0, 0, 3, 0, 0]);
  });

  it('records nothing for voxels painted back to their old value', () => {
    const map = new Uint8Array(4);
    const history = new LabelmapHistory(map);
    history.beginStroke();
    map[1] = 2; history.record([1], map);
    map[1] = 0; history.record([1], map);
    expect(history.endStroke()).toBeNull();
    expect(history.record([0, 3], map)).toBeNull();
    expect(history.canUndo).toBe(false);
  });

  it('a new edit clears the redo stack', () => {
    const map = new Uint8Array(4);
    const history = new LabelmapHistory(map);
    map[0] = 1; history.record([0], map);
    map[1] = 1; history.record([1], map);
    history.undo(map);
    expect(history.canRedo).toBe(true);
    map[2] = 2; history.record([2], map);
    expect(history.canRedo).toBe(false);
    expect(history.redo(map)).toBeNull();
    history.undo(map);
    history.undo(map);
    expect([...map]).toEqual([0, 0, 0, 0]);
  });

  it('reports the segments a step touched (old and new values) for autosave', () => {
    const map = Uint8Array.from([1, 1, 2, 0]);
    const history = new LabelmapHistory(map);
    map[0] = 2; // lesion 1 loses a voxel to lesion 2
    expect(history.record([0], map)?.segments).toEqual([1, 2]);
    expect(history.undo(map)?.segments).toEqual([1, 2]);
  });

  it('stays under its memory cap by dropping the oldest steps', () => {
    const map = new Uint8Array(10_000);
    const cap = 3 * (1000 * 6 + 64);
    const history = new LabelmapHistory(map, { maxBytes: cap });
    for (let s = 0; s < 10; s++) {
      const indices = Array.from({ length: 1000 }, (_, i) => s * 1000 + i);
      for (const i of indices) map[i] = 1;
      history.record(indices, map);
      expect(history.memoryBytes).toBeLessThanOrEqual(cap);
    }
    expect(history.undoDepth).toBe(3);
    while (history.canUndo) history.undo(map);
    // the three newest strokes are undone, the seven older ones stay
    expect(map.subarray(0, 7000).every((v) => v === 1)).toBe(true);
    expect(map.subarray(7000).every((v) => v === 0)).toBe(true);
  });

  it('keeps a single step larger than the cap', () => {
    const map = new Uint8Array(5000);
    const history = new LabelmapHistory(map, { maxBytes: 100 });
    map.fill(1);
    history.record(Array.from(map.keys()), map);
    expect(history.undoDepth).toBe(1);
    history.undo(map);
    expect(map.every((v) => v === 0)).toBe(true);
  });

  it('closes an open stroke on undo, resets, and refuses a labelmap of another size', () => {
    const map = new Uint8Array(3);
    const history = new LabelmapHistory(map);
    let calls = 0;
    history.subscribe(() => calls++);
    history.beginStroke();
    map[0] = 1; history.record([0], map);
    history.undo(map);
    expect([...map]).toEqual([0, 0, 0]);
    expect(history.canRedo).toBe(true);
    history.reset(Uint8Array.from([1, 1, 1]));
    expect(history.canUndo || history.canRedo).toBe(false);
    expect(calls).toBeGreaterThanOrEqual(3);
    expect(() => history.record([0], new Uint8Array(4))).toThrow(/voxels/);
  });
});

describe('LabelmapHistory.forgetSegment', () => {
  it('never brings a deleted lesion back', () => {
    const map = Uint8Array.from([0, 0, 0, 0]);
    const history = new LabelmapHistory(map);
    map[0] = 3; map[1] = 3; history.record([0, 1], map);
    map[1] = 1; history.record([1], map);
    // lesion 3 deleted: its voxels cleared without a step, its segment forgotten
    map[0] = 0;
    history.sync([0], map);
    history.forgetSegment(3);
    history.undo(map); // voxel 1 goes back to what it was: lesion 3, now background
    expect([...map]).toEqual([0, 0, 0, 0]);
    history.undo(map);
    expect([...map]).toEqual([0, 0, 0, 0]);
    history.redo(map);
    history.redo(map);
    expect([...map]).toEqual([0, 1, 0, 0]);
  });
});
