// Saved masks: GET /api/masks/{id}/data/ answers gzip of z*y*x uint8 (C order) with the shape in
// X-Mask-Shape. A local fetch: the typed API client (src/api/) has no mask-data call yet.

import { gunzip } from '../api/gzip';

export interface MaskVoxels {
  shape: [number, number, number];
  data: Uint8Array;
}

export function parseShape(header: string | null): [number, number, number] {
  const parts = (header ?? '').split(',').map((p) => Number(p.trim()));
  if (parts.length !== 3 || parts.some((n) => !Number.isInteger(n) || n <= 0)) {
    throw new Error(`bad X-Mask-Shape header: ${JSON.stringify(header)}`);
  }
  return parts as [number, number, number];
}

export async function fetchMask(maskId: number, signal?: AbortSignal): Promise<MaskVoxels> {
  const response = await fetch(`/api/masks/${maskId}/data/?encoding=raw-gzip`, {
    credentials: 'same-origin', signal,
  });
  if (!response.ok) throw new Error(`mask ${maskId}: HTTP ${response.status}`);
  const shape = parseShape(response.headers.get('X-Mask-Shape'));
  const data = await gunzip(new Uint8Array(await response.arrayBuffer()));
  if (data.length !== shape[0] * shape[1] * shape[2]) {
    throw new Error(`mask ${maskId}: ${data.length} voxels for shape ${shape.join('x')}`);
  }
  return { shape, data };
}

/** Writes `segment` wherever `mask` is non-zero into `target` (same z*y*x grid). */
export function paintSegment(target: Uint8Array, mask: Uint8Array, segment: number): number {
  if (target.length !== mask.length) throw new Error('mask and labelmap sizes differ');
  let count = 0;
  for (let i = 0; i < mask.length; i++) {
    if (mask[i]) {
      target[i] = segment;
      count++;
    }
  }
  return count;
}

/** Voxels equal to `segment`, or non-zero ones when it is omitted. */
export function countVoxels(data: ArrayLike<number>, segment?: number): number {
  let count = 0;
  if (segment === undefined) {
    for (let i = 0; i < data.length; i++) if (data[i]) count++;
  } else {
    for (let i = 0; i < data.length; i++) if (data[i] === segment) count++;
  }
  return count;
}
