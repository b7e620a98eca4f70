// The lesion list of the workspace: the task's lesions, which one is selected, which are
// shown, their classes and colours, and the segment index each one has in the labelmap.
//
// Segment indices are local to the open workspace (the server knows lesions, not segments):
// 1..255 (the labelmap is uint8), assigned in lesion order on load and the lowest free one to
// a new lesion; a deleted lesion's index is freed only after its voxels are cleared by the caller.

import { createLesion, deleteLesion, updateLesion } from '../api/endpoints';
import type { Box, Lesion, LesionClass, LesionWrite } from '../api/types';

export const MAX_SEGMENTS = 255;

/** The palette the server gives classes without a colour (projects.services.PALETTE). */
export const PALETTE = ['#e6194b', '#3cb44b', '#4363d8', '#f58231', '#911eb4', '#42d4f4', '#f032e6'];

export type Rgb = [number, number, number];
export type Rgba = [number, number, number, number];

export interface LesionEntry {
  lesion: Lesion;
  /** The value of this lesion's voxels in the labelmap. */
  segment: number;
  visible: boolean;
  /** The class colour as [r, g, b] 0..255. */
  color: Rgb;
  /** `color` as "#rrggbb" (for CSS swatches: never the project's own text, which lands in a style). */
  css: string;
  /** "tumour 2": the class and the lesion's rank among that class (for the list). */
  name: string;
}

export interface LesionsApi {
  create(taskId: number, data: LesionWrite): Promise<Lesion>;
  update(id: number, data: Partial<LesionWrite>): Promise<Lesion>;
  remove(id: number): Promise<unknown>;
}

export const defaultLesionsApi: LesionsApi = {
  create: (taskId, data) => createLesion(taskId, data),
  update: (id, data) => updateLesion(id, data),
  remove: (id) => deleteLesion(id),
};

/** "#rgb", "#rrggbb", "#rrggbbaa" or "rgb(r, g, b)"; null for anything else (e.g. "red"). */
export function parseColor(value: string): Rgb | null {
  const text = value.trim().toLowerCase();
  let m = /^#([0-9a-f]{3})$/.exec(text);
  if (m) return [...m[1]!].map((c) => parseInt(c + c, 16)) as Rgb;
  m = /^#([0-9a-f]{6})([0-9a-f]{2})?$/.exec(text);
  if (m) {
    const hex = m[1]!;
    return [0, 2, 4].map((i) => parseInt(hex.slice(i, i + 2), 16)) as Rgb;
  }
  m = /^rgba?\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*(?:,[^)]*)?\)$/.exec(text);
  if (m) return [m[1], m[2], m[3]].map((v) => Math.min(255, Number(v))) as Rgb;
  return null;
}

/** "#rrggbb" of an [r, g, b] colour. */
export function rgbToHex(rgb: Rgb): string {
  return `#${rgb.map((v) => Math.round(v).toString(16).padStart(2, '0')).join('')}`;
}

export interface LesionColorOptions {
  /** Alpha of a shown lesion (0..255); the selected one gets `selectedAlpha`. */
  alpha?: number;
  selectedAlpha?: number;
}

export class LesionStore {
  readonly taskId: number;
  private classes: LesionClass[];
  private readonly api: LesionsApi;
  private list: LesionEntry[] = [];
  private selectedId: number | null = null;
  private listeners = new Set<() => void>();

  constructor(taskId: number, classes: LesionClass[], api: LesionsApi = defaultLesionsApi) {
    this.taskId = taskId;
    this.classes = classes;
    this.api = api;
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(): void {
    this.renumberNames();
    for (const listener of [...this.listeners]) listener();
  }

  get classNames(): string[] {
    return this.classes.map((c) => c.name);
  }

  get entries(): readonly LesionEntry[] {
    return this.list;
  }

  get selected(): LesionEntry | null {
    return this.list.find((e) => e.lesion.id === this.selectedId) ?? null;
  }

  get(id: number): LesionEntry | null {
    return this.list.find((e) => e.lesion.id === id) ?? null;
  }

  bySegment(segment: number): LesionEntry | null {
    return this.list.find((e) => e.segment === segment) ?? null;
  }

  segmentOf(id: number): number | null {
    return this.get(id)?.segment ?? null;
  }

  private colorOfClass(name: string): { color: Rgb; css: string } {
    const index = this.classes.findIndex((c) => c.name === name);
    const written = index >= 0 ? this.classes[index]!.color : '';
    const fallback = PALETTE[(index >= 0 ? index : this.classes.length) % PALETTE.length]!;
    const color = parseColor(written) ?? parseColor(fallback)!;
    return { color, css: rgbToHex(color) };
  }

  private entry(lesion: Lesion, segment: number, visible = true): LesionEntry {
    return { lesion, segment, visible, ...this.colorOfClass(lesion.lesion_class), name: lesion.name || lesion.lesion_class };
  }

  /** "class n" for each class's lesions in order; an imported label keeps its own name (the
   * ROI or segment name in the file), which still counts in its class's numbering. */
  private renumberNames(): void {
    const seen = new Map<string, number>();
    for (const e of this.list) {
      const n = (seen.get(e.lesion.lesion_class) ?? 0) + 1;
      seen.set(e.lesion.lesion_class, n);
      e.name = e.lesion.name || `${e.lesion.lesion_class} ${n}`;
    }
  }

  /** Takes the task's lesions (GET /tasks/<id>/lesions/, id order): segments 1, 2, ... */
  load(lesions: Lesion[]): void {
    if (lesions.length > MAX_SEGMENTS) {
      throw new Error(`the task has ${lesions.length} lesions; the workspace shows at most ${MAX_SEGMENTS}`);
    }
    const sorted = [...lesions].sort((a, b) => a.id - b.id);
    this.list = sorted.map((lesion, i) => this.entry(lesion, i + 1));
    if (this.selectedId !== null && !this.get(this.selectedId)) this.selectedId = null;
    this.selectedId ??= this.list[0]?.lesion.id ?? null;
    this.emit();
  }

  /** Lesion classes changed (project settings): recolour. */
  setClasses(classes: LesionClass[]): void {
    this.classes = classes;
    this.list = this.list.map((e) => this.entry(e.lesion, e.segment, e.visible));
    this.emit();
  }

  private freeSegment(): number {
    const used = new Set(this.list.map((e) => e.segment));
    for (let s = 1; s <= MAX_SEGMENTS; s++) if (!used.has(s)) return s;
    throw new Error(`at most ${MAX_SEGMENTS} lesions fit in one workspace`);
  }

  /**
   * Creates a lesion on the server (default class: the project's first) and selects it.
   * A prompt (key slice + box) may come with it.
   */
  async add(lesionClass?: string, prompt: { key_slice?: number; box?: Box } = {}): Promise<LesionEntry> {
    const name = lesionClass ?? this.classes[0]?.name;
    if (!name) throw new Error('the project has no lesion classes');
    const segment = this.freeSegment();
    const lesion = await this.api.create(this.taskId, { lesion_class: name, ...prompt });
    const entry = this.entry(lesion, this.list.some((e) => e.segment === segment) ? this.freeSegment() : segment);
    this.list.push(entry);
    this.selectedId = lesion.id;
    this.emit();
    return entry;
  }

  async setClass(id: number, lesionClass: string): Promise<LesionEntry> {
    const current = this.require(id);
    if (!this.classNames.includes(lesionClass)) {
      throw new Error(`unknown lesion class ${JSON.stringify(lesionClass)}; this project has ${this.classNames.join(', ')}`);
    }
    const lesion = await this.api.update(id, { lesion_class: lesionClass });
    const entry = this.entry(lesion, current.segment, current.visible);
    this.replace(entry);
    return entry;
  }

  /**
   * Deletes the lesion on the server and drops it; returns its segment so the caller clears
   * those voxels (`clearSegment`). The selection moves to a neighbour.
   */
  async remove(id: number): Promise<number> {
    const entry = this.require(id);
    await this.api.remove(id);
    const index = this.list.indexOf(entry);
    this.list = this.list.filter((e) => e !== entry);
    if (this.selectedId === id) {
      this.selectedId = (this.list[index] ?? this.list[index - 1])?.lesion.id ?? null;
    }
    this.emit();
    return entry.segment;
  }

  /** The server's newer copy of a lesion (after a save, a segmentation, a prompt change). */
  update(lesion: Lesion): void {
    const current = this.get(lesion.id);
    if (!current) return;
    this.replace(this.entry(lesion, current.segment, current.visible));
  }

  private replace(entry: LesionEntry): void {
    this.list = this.list.map((e) => (e.lesion.id === entry.lesion.id ? entry : e));
    this.emit();
  }

  private require(id: number): LesionEntry {
    const entry = this.get(id);
    if (!entry) throw new Error(`lesion ${id} is not in this task`);
    return entry;
  }

  select(id: number | null): void {
    if (id !== null) this.require(id);
    if (this.selectedId === id) return;
    this.selectedId = id;
    this.emit();
  }

  /** Moves the selection by `delta` through the list, wrapping around. */
  selectNext(delta = 1): LesionEntry | null {
    if (this.list.length === 0) return null;
    const at = this.list.findIndex((e) => e.lesion.id === this.selectedId);
    const next = at < 0 ? (delta > 0 ? 0 : this.list.length - 1) : (((at + delta) % this.list.length) + this.list.length) % this.list.length;
    this.select(this.list[next]!.lesion.id);
    return this.list[next]!;
  }

  setVisible(id: number, visible: boolean): void {
    const entry = this.require(id);
    if (entry.visible === visible) return;
    this.replace({ ...entry, visible });
  }

  toggleVisible(id: number): boolean {
    const visible = !this.require(id).visible;
    this.setVisible(id, visible);
    return visible;
  }

  /** Shows every lesion, or hides all but the selected one (a "solo" toggle). */
  setAllVisible(visible: boolean): void {
    this.list = this.list.map((e) => ({ ...e, visible: visible || e.lesion.id === this.selectedId }));
    this.emit();
  }

  /**
   * The colour lookup table of the labelmap: index = segment, [r, g, b, a] 0..255; segment 0
   * and unused or hidden segments are transparent.
   */
  colorTable({ alpha = 128, selectedAlpha = 192 }: LesionColorOptions = {}): Rgba[] {
    const table: Rgba[] = Array.from({ length: MAX_SEGMENTS + 1 }, () => [0, 0, 0, 0] as Rgba);
    for (const e of this.list) {
      const a = !e.visible ? 0 : e.lesion.id === this.selectedId ? selectedAlpha : alpha;
      table[e.segment] = [...e.color, a];
    }
    return table;
  }
}
