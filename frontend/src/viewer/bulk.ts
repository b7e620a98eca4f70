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

  constructor(volumeId: string, imageIds: string[]) {
    const props = utilities.generateVolumePropsFromImageIds(imageIds, volumeId);
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
    (this.volume.imageIds ?? []).forEach((localId, k) => {
      const plane = metaData.get('imagePlaneModule', this.sourceIds[k] as string);
      if (plane) utilities.genericMetadataProvider.add(localId, { type: 'imagePlaneModule', metadata: plane });
    });
  }

  /** Writes one frame (bytes as the bulk data carries them) into its slice. */
  fill = (key: string, data: Uint8Array): void => {
    const k = this.slices.get(key);
    if (k === undefined) return; // a frame of the series that is not in this volume
    const imageId = this.sourceIds[k] as string;
    const pixel = metaData.get('imagePixelModule', imageId) as PixelModule;
    const bits = pixel.bitsAllocated ?? 16;
    const size = this.sliceSize;
    if (data.length !== size * (bits / 8)) {
      throw new Error(`slice ${k + 1} has ${data.length} bytes, expected ${size * (bits / 8)}`);
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
    const out = this.scalars.subarray(k * size, (k + 1) * size);
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
