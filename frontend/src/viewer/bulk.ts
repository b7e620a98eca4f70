// The volume the series' bulk data (download.ts) is written into, slice by slice as it arrives
// (rescaled to Float32, which the views' texture takes without another conversion), and uploaded
// to the views' texture while the rest downloads.

import { metaData, utilities, volumeLoader, type Types } from '@cornerstonejs/core';
import { frameKey } from './download';

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

interface PixelModule {
  bitsAllocated?: number;
  pixelRepresentation?: number;
  samplesPerPixel?: number;
}

/**
 * A local volume (Float32, modality LUT applied per slice) for `imageIds`, empty until fill()
 * writes each frame into its slice and marks it for the views' texture; upload() sends the slices
 * filled since the last call (once a view has drawn the volume: that creates the texture). The
 * local slices carry the image plane of the DICOM slice they stand for.
 */
export class SeriesVolume {
  readonly volume: Types.IImageVolume;
  private readonly slices = new Map<string, number>();
  private readonly filled: boolean[];
  private readonly scalars: Float32Array;
  private readonly sliceSize: number;
  private readonly sourceIds: string[];
  private readonly texture: StreamingTexture;

  /** `cine`: the frames of one multi-frame instance (no slice positions), in frame order. */
  constructor(volumeId: string, imageIds: string[], cine = false) {
    const props = cine ? cineProps(imageIds, volumeId) : utilities.generateVolumePropsFromImageIds(imageIds, volumeId);
    const [nx, ny, nz] = props.dimensions as [number, number, number];
    this.sliceSize = nx * ny;
    this.sourceIds = props.imageIds;
    this.sourceIds.forEach((imageId, k) => this.slices.set(frameKey(imageId) ?? imageId, k));
    this.filled = new Array<boolean>(nz).fill(false);
    this.scalars = new Float32Array(this.sliceSize * nz);
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

  /** Writes one frame (bytes as the bulk data carries them) into its slice. */
  fill = (key: string, data: Uint8Array): void => {
    const k = this.slices.get(key);
    if (k === undefined) return; // a frame of the series that is not in this volume
    const imageId = this.sourceIds[k] as string;
    const pixel = metaData.get('imagePixelModule', imageId) as PixelModule;
    const bits = pixel.bitsAllocated ?? 16;
    const samples = pixel.samplesPerPixel ?? 1;
    const size = this.sliceSize;
    if (data.length !== size * samples * (bits / 8)) {
      throw new Error(`slice ${k + 1} has ${data.length} bytes, expected ${size * samples * (bits / 8)}`);
    }
    const out = this.scalars.subarray(k * size, (k + 1) * size);
    if (samples === 3) {
      // colour (decoded to RGB by the server): its luminance, as the server's volume holds it
      for (let i = 0, j = 0; i < size; i++, j += 3) {
        out[i] = 0.299 * (data[j] as number) + 0.587 * (data[j + 1] as number) + 0.114 * (data[j + 2] as number);
      }
      this.filled[k] = true;
      this.texture.setUpdatedFrame(k);
      return;
    }
    const lut = (metaData.get('modalityLutModule', imageId) ?? {}) as { rescaleSlope?: number; rescaleIntercept?: number };
    const slope = Number(lut.rescaleSlope ?? 1) || 1;
    const intercept = Number(lut.rescaleIntercept ?? 0) || 0;
    // a 16-bit view needs an even offset: the part may start anywhere in the body
    const aligned = bits === 16 && data.byteOffset % 2 ? data.slice() : data;
    const stored = bits === 8
      ? aligned
      : pixel.pixelRepresentation === 1
        ? new Int16Array(aligned.buffer, aligned.byteOffset, size)
        : new Uint16Array(aligned.buffer, aligned.byteOffset, size);
    out.set(stored); // native conversion; the rescale then runs on one array type only
    if (slope !== 1 || intercept !== 0) rescale(out, slope, intercept);
    this.filled[k] = true;
    this.texture.setUpdatedFrame(k);
  };

  /**
   * Runs the views' first draw (it creates the texture, and marks every slice for upload) without
   * uploading the slices that have not arrived: meanwhile the volume names images that are not in
   * the cache for them, which the upload skips and leaves marked.
   */
  async firstDraw(draw: () => Promise<void>): Promise<void> {
    const volume = this.volume as unknown as { imageIds: string[] };
    const real = volume.imageIds;
    volume.imageIds = real.map((id, k) => (this.filled[k] ? id : `pending-slice-${k}`));
    try {
      await draw();
    } finally {
      volume.imageIds = real;
    }
  }

  /** Uploads the slices filled since the last call to the views' texture. */
  upload(): void {
    if (this.texture.getUpdatedFrames().some(Boolean)) this.texture.update3DFromRaw();
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

function rescale(values: Float32Array, slope: number, intercept: number): void {
  for (let i = 0; i < values.length; i++) values[i] = (values[i] as number) * slope + intercept;
}
