// Helpers between per-lesion binary masks (what the API stores) and the viewer's labelmap
// (z*y*x uint8, value = the lesion's segment index, 0 = background).

/** z*y*x bytes, 1 where the labelmap holds `segment`, 0 elsewhere (the mask autosave sends). */
export function extractMask(labelmap: Uint8Array, segment: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(labelmap.length);
  for (let i = 0; i < labelmap.length; i++) if (labelmap[i] === segment) out[i] = 1;
  return out;
}

export function countSegment(labelmap: Uint8Array, segment: number): number {
  let n = 0;
  for (let i = 0; i < labelmap.length; i++) if (labelmap[i] === segment) n++;
  return n;
}

/**
 * Makes `segment`'s voxels exactly the non-zero voxels of `mask`, in place: voxels of the
 * segment outside the mask become 0, mask voxels become `segment` (taking them from any other
 * lesion unless `keepOthers`). Returns the changed indices (feed them to the history).
 */
export function replaceSegment(
  labelmap: Uint8Array,
  segment: number,
  mask: Uint8Array,
  { keepOthers = false }: { keepOthers?: boolean } = {},
): Uint32Array {
  if (mask.length !== labelmap.length) {
    throw new Error(`the mask has ${mask.length} voxels; the labelmap ${labelmap.length}`);
  }
  const changed: number[] = [];
  for (let i = 0; i < labelmap.length; i++) {
    const current = labelmap[i]!;
    if (mask[i] !== 0) {
      if (current !== segment && (current === 0 || !keepOthers)) {
        labelmap[i] = segment;
        changed.push(i);
      }
    } else if (current === segment) {
      labelmap[i] = 0;
      changed.push(i);
    }
  }
  return Uint32Array.from(changed);
}

/** Clears a segment (a deleted lesion); returns the changed indices. */
export function clearSegment(labelmap: Uint8Array, segment: number): Uint32Array {
  const changed: number[] = [];
  for (let i = 0; i < labelmap.length; i++) {
    if (labelmap[i] === segment) {
      labelmap[i] = 0;
      changed.push(i);
    }
  }
  return Uint32Array.from(changed);
}

/**
 * Builds the labelmap of a task from its lesions' masks. Where masks overlap the later one in
 * the list wins (the lesion order is by id, so a newer lesion covers an older one).
 */
export function composeLabelmap(
  voxelCount: number,
  masks: { segment: number; voxels: Uint8Array }[],
): Uint8Array<ArrayBuffer> {
  const labelmap = new Uint8Array(voxelCount);
  for (const { segment, voxels } of masks) {
    if (voxels.length !== voxelCount) {
      throw new Error(`segment ${segment}: the mask has ${voxels.length} voxels, not ${voxelCount}`);
    }
    for (let i = 0; i < voxelCount; i++) if (voxels[i] !== 0) labelmap[i] = segment;
  }
  return labelmap;
}

/** The labelmap values of the reviewer's difference view (above any lesion's segment). */
export const DIFFERENCE = { agree: 253, added: 254, removed: 255 } as const;

export interface LesionDifference {
  segment: number;
  /** Voxels in both the model's mask and the final one. */
  agree: number;
  /** In the final mask only: what the annotator added. */
  added: number;
  /** In the model's mask only: what the annotator removed. */
  removed: number;
  /** Dice of the two masks (1 when both are empty). */
  dice: number;
}

/**
 * The reviewer's difference view: for each lesion, its final voxels (segment in `final`) against
 * its model mask (none: an empty mask), as DIFFERENCE.agree / added / removed in a new labelmap,
 * with the counts and the Dice per lesion.
 */
export function differenceLabelmap(
  final: Uint8Array,
  models: { segment: number; mask: Uint8Array | null }[],
): { labelmap: Uint8Array<ArrayBuffer>; lesions: LesionDifference[] } {
  const labelmap = new Uint8Array(final.length);
  const lesions = models.map(({ segment, mask }) => {
    if (mask && mask.length !== final.length) {
      throw new Error(`segment ${segment}: the model mask has ${mask.length} voxels, not ${final.length}`);
    }
    let agree = 0;
    let added = 0;
    let removed = 0;
    for (let i = 0; i < final.length; i++) {
      const inFinal = final[i] === segment;
      const inModel = mask !== null && mask[i] !== 0;
      if (inFinal && inModel) {
        agree++;
        labelmap[i] = DIFFERENCE.agree;
      } else if (inFinal) {
        added++;
        labelmap[i] = DIFFERENCE.added;
      } else if (inModel) {
        removed++;
        labelmap[i] = DIFFERENCE.removed;
      }
    }
    const total = 2 * agree + added + removed;
    return { segment, agree, added, removed, dice: total ? (2 * agree) / total : 1 };
  });
  return { labelmap, lesions };
}
