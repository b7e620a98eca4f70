// The volume the series' bulk data (download.ts) is written into, slice by slice as it arrives
// (already Float32, which the views' texture takes without another conversion), and uploaded
// to the views' texture while the rest downloads.

import { metaData, utilities, volumeLoader, type Types } from '@cornerstonejs/core';
import { frameKey, type FrameSink } from './download';

interface StreamingTexture {
  setUpdatedFrame(frame: number): void;
  getUpdatedFrames(): (boolean | null)[];
  update3DFromRaw(): unknown;
}

/** Volume geometry for the frames of one multi-frame instance: frame k is slice k, 1 mm apart
 * (no slice positions), pixels at the instance's spacing (1 mm where it gives none), grey. */
function cineProps(imageIds: string[], volumeId: string) {
  const plane = (metaData.get('imagePlaneModule', imageIds[0] as string) ?? {}) as {
    rows?: number; columns?: number; pixelSpacing?: number[]; frameOfReferenceUID?: string;
  };
  if (!plane.rows || !plane.columns) throw new Error('the series metadata gives no image size');
  const [rowSpacing, columnSpacing] = plane.pixelSpacing?.every((v) => v > 0) ? plane.pixelSpacing : [1, 1];
  const spacing = [columnSpacing ?? 1, rowSpacing ?? 1, 1];
  const direction = [1, 0, 0, 0, 1, 0, 0, 0, 1];
  return {
    dimensions: [plane.columns, plane.rows, imageIds.length],
    spacing,
    origin: [0, 0, 0],
    direction,
    imageIds,
    volumeId,
    metadata: {
      ...utilities.makeVolumeMetadata(imageIds),
      SamplesPerPixel: 1,
      PhotometricInterpretation: 'MONOCHROME2',
      ImageOrientationPatient: direction.slice(0, 6),
      PixelSpacing: [rowSpacing, columnSpacing],
      FrameOfReferenceUID: plane.frameOfReferenceUID ?? '',
    },
  };
}

/**
 * A local volume (Float32, modality LUT applied per slice) for `imageIds`, empty until fill()
 * writes each frame into its slice and marks it for the views' texture; upload() sends the slices
 * filled since the last call (once createTexture() has run). The
 * local slices carry the image plane of the DICOM slice they stand for.
 *
 * `prefill(fill)` runs before Cornerstone wraps the array (it scans every slice for its range):
 * the frames already downloaded go in first, so that scan reads their pixels rather than fresh
 * zero pages, each of which the kernel maps on the read and again on the write (0.1-0.3 s more
 * for a 140 MB volume here).
 */
export class SeriesVolume {
  readonly volume: Types.IImageVolume;
  private readonly slices = new Map<string, number>();
  private readonly filled: boolean[];
  private readonly scalars: Float32Array;
  private readonly sliceSize: number;
  private readonly texture: StreamingTexture | null = null;

  /** `cine`: the frames of one multi-frame instance (no slice positions), in frame order. */
  constructor(volumeId: string, imageIds: string[], cine = false, prefill?: (fill: FrameSink) => void) {
    const props = cine ? cineProps(imageIds, volumeId) : utilities.generateVolumePropsFromImageIds(imageIds, volumeId);
    const [nx, ny, nz] = props.dimensions as [number, number, number];
    this.sliceSize = nx * ny;
    props.imageIds.forEach((imageId, k) => this.slices.set(frameKey(imageId) ?? imageId, k));
    this.filled = new Array<boolean>(nz).fill(false);
    this.scalars = new Float32Array(this.sliceSize * nz);
    prefill?.(this.fill);
    this.volume = volumeLoader.createLocalVolume(volumeId, {
      scalarData: this.scalars,
      metadata: props.metadata,
      dimensions: props.dimensions,
      spacing: props.spacing,
      origin: props.origin,
      direction: props.direction,
      referencedImageIds: props.imageIds,
    } as never) as Types.IImageVolume;
    const texture = (this.volume as unknown as { vtkOpenGLTexture?: StreamingTexture }).vtkOpenGLTexture;
    if (!texture) throw new Error('the local volume has no texture');
    this.texture = texture;
    // createLocalVolume gives every slice the volume's origin: tools look slices up by position
    const { origin, spacing, direction } = props as { origin: number[]; spacing: number[]; direction: number[] };
    const normal = direction.slice(6, 9);
    (this.volume.imageIds ?? []).forEach((localId, k) => {
      const plane = {
        frameOfReferenceUID: props.metadata.FrameOfReferenceUID,
        rows: ny,
        columns: nx,
        imageOrientationPatient: direction.slice(0, 6),
        rowCosines: direction.slice(0, 3),
        columnCosines: direction.slice(3, 6),
        imagePositionPatient: origin.map((o, i) => o + k * (spacing[2] as number) * (normal[i] as number)),
        pixelSpacing: [spacing[1], spacing[0]],
        rowPixelSpacing: spacing[1],
        columnPixelSpacing: spacing[0],
      };
      utilities.genericMetadataProvider.add(localId, { type: 'imagePlaneModule', metadata: plane });
    });
  }

  /** Writes one frame (Float32 values, modality LUT applied: pixels.ts) into its slice. */
  fill = (key: string, data: Float32Array): void => {
    const k = this.slices.get(key);
    if (k === undefined) return; // a frame of the series that is not in this volume
    if (data.length !== this.sliceSize) {
      throw new Error(`slice ${k + 1} has ${data.length} pixels, expected ${this.sliceSize}`);
    }
    this.scalars.set(data, k * this.sliceSize);
    this.filled[k] = true;
    this.texture?.setUpdatedFrame(k); // before the texture exists, its first draw marks them all
  };

  /**
   * Runs the views' first draw, which creates the texture (and marks every slice for upload),
   * without uploading any slice: upload() sends them.
   */
  async createTexture(draw: () => Promise<void>): Promise<void> {
    const restore = this.hide(() => true);
    try {
      await draw();
    } finally {
      restore();
    }
  }

  /** Uploads the slices filled since the last call to the views' texture (not the empty ones:
   * they stay marked until filled). */
  upload(): void {
    const texture = this.texture;
    if (!texture?.getUpdatedFrames().some(Boolean)) return;
    const restore = this.hide((k) => !this.filled[k]);
    try {
      texture.update3DFromRaw();
    } finally {
      restore();
    }
  }

  /** Until the returned function runs, the volume names images that are not in the cache for
   * the slices `hidden` picks: the texture's upload skips those and leaves them marked. */
  private hide(hidden: (k: number) => boolean): () => void {
    const volume = this.volume as unknown as { imageIds: string[] };
    const real = volume.imageIds;
    volume.imageIds = real.map((id, k) => (hidden(k) ? `pending-slice-${k}` : id));
    return () => {
      volume.imageIds = real;
    };
  }

  /**
   * A display window for a volume without window presets: its 0.5th to 99.5th percentile (of a
   * sample of about a million voxels, through a 4096-bin histogram).
   */
  robustRange(): { lower: number; upper: number } {
    const values = this.scalars;
    const step = Math.max(1, Math.floor(values.length / 1_000_000));
    let min = Infinity;
    let max = -Infinity;
    for (let i = 0; i < values.length; i += step) {
      const v = values[i] as number;
      if (v < min) min = v;
      if (v > max) max = v;
    }
    if (!(max > min)) return { lower: min - 1, upper: min + 1 };
    const bins = new Uint32Array(4096);
    const scale = (bins.length - 1) / (max - min);
    let n = 0;
    for (let i = 0; i < values.length; i += step, n++) bins[Math.floor(((values[i] as number) - min) * scale)]! += 1;
    const at = (fraction: number): number => {
      let seen = 0;
      for (let b = 0; b < bins.length; b++) {
        seen += bins[b] as number;
        if (seen >= fraction * n) return min + b / scale;
      }
      return max;
    };
    const lower = at(0.005);
    const upper = at(0.995);
    return upper > lower ? { lower, upper } : { lower: min, upper: max };
  }

  /** Throws unless every slice was filled. */
  checkComplete(): void {
    const missing = this.filled.flatMap((done, k) => (done ? [] : [k + 1]));
    if (missing.length) {
      throw new Error(`${missing.length} of ${this.filled.length} slices are missing from the series' pixel data (${missing.slice(0, 5).join(', ')}…)`);
    }
  }
}
