// One voxel plane of an image-backed Cornerstone volume (the CT, the labelmap), in the order of
// strokePaint.ts's Plane: pixel u + v * width over the two axes other than `axis`.

import { cache, utilities, type Types } from '@cornerstonejs/core';
import type { Vec3 } from './strokePaint';

/** The live scalar data of slice k of `volume`, or null where it has no image of slice size. */
export function sliceData(volume: Types.IImageVolume, k: number): ArrayLike<number> | null {
  const imageId = volume.imageIds?.[k];
  const image = imageId ? cache.getImage(imageId) : undefined;
  const data = image?.voxelManager?.getScalarData?.() as ArrayLike<number> | undefined;
  const [nx, ny] = volume.dimensions;
  return data && data.length === nx * ny ? data : null;
}

export function readVolumePlane(
  volume: Types.IImageVolume,
  axis: 0 | 1 | 2,
  index: number,
  out: { [i: number]: number; length: number },
): void {
  const [nx, ny, nz] = volume.dimensions;
  const size = nx * ny;
  const voxel = (k: number, i: number): number => {
    const vm = volume.voxelManager;
    if (!vm) throw new Error(`volume ${volume.volumeId} has no voxel manager`);
    return Number(vm.getAtIndex(k * size + i)) || 0;
  };
  if (axis === 2) {
    const slice = sliceData(volume, index);
    for (let i = 0; i < size; i++) out[i] = slice ? (slice[i] ?? 0) : voxel(index, i);
    return;
  }
  for (let k = 0; k < nz; k++) {
    const slice = sliceData(volume, k);
    if (axis === 1) {
      for (let i = 0; i < nx; i++) out[k * nx + i] = slice ? (slice[index * nx + i] ?? 0) : voxel(k, index * nx + i);
    } else {
      for (let j = 0; j < ny; j++) out[k * ny + j] = slice ? (slice[j * nx + index] ?? 0) : voxel(k, j * nx + index);
    }
  }
}

/** World to continuous voxel index in `volume`'s grid. */
export function worldToIndex(volume: Types.IImageVolume): (world: Vec3) => Vec3 {
  return (world) =>
    utilities.transformWorldToIndexContinuous(volume.imageData as never, world as Types.Point3) as unknown as Vec3;
}
