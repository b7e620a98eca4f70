// A whole series' pixels in one DICOMweb request: the series resource asked for its bulk data
// (multipart/related; type="application/octet-stream", explicit VR little endian), every frame a
// part with its frame resource in Content-Location. Each frame is written into the volume as it
// arrives (rescaled to Float32, which the views' texture takes without another conversion) and
// uploaded to the texture while the rest downloads, instead of one request, one decode-worker
// round trip and one image object per slice.

import { metaData, utilities, volumeLoader, type Types } from '@cornerstonejs/core';
import { DICOMWEB_ROOT } from './dicomweb';
import { boundaryOf, MultipartReader } from './multipart';
import type { SeriesUids } from './types';

const EXPLICIT_LE = '1.2.840.10008.1.2.1';
export const BULK_ACCEPT = `multipart/related; type="application/octet-stream"; transfer-syntax=${EXPLICIT_LE}`;

/** "sop/frame" of a wadors imageId or a frame resource URL. */
export function frameKey(url: string): string | null {
  const match = /\/instances\/([^/]+)\/frames\/(\d+)$/.exec(url);
  return match ? `${match[1]}/${match[2]}` : null;
}

/**
 * The series' bulk data, downloading: `accepted` says (once the response starts) whether the
 * server sends it so (false on 406: load frame by frame instead); each frame goes to the sink
 * given to drainTo() (frames that came before are kept until then); `finished` resolves when the
 * body ended well, and rejects on a failed, cut-short or malformed response.
 */
export class SeriesDownload {
  readonly accepted: Promise<boolean>;
  readonly finished: Promise<void>;
  received = 0;
  private early = new Map<string, Uint8Array>();
  private sink: ((key: string, data: Uint8Array) => void) | null = null;

  constructor(uids: SeriesUids, signal: AbortSignal, expectedBytes: number, onBytes: (received: number) => void) {
    const url = `${DICOMWEB_ROOT}/studies/${uids.study}/series/${uids.series}`;
    const response = fetch(url, { credentials: 'same-origin', signal, headers: { Accept: BULK_ACCEPT } });
    this.accepted = response.then((r) => r.status !== 406, () => true); // a failure shows in `finished`
    this.finished = response.then(async (r) => {
      if (r.status === 406) return;
      if (!r.ok || !r.body) throw new Error(`series pixel data: HTTP ${r.status}`);
      const reader = new MultipartReader(boundaryOf(r.headers.get('Content-Type') ?? ''), Math.min(expectedBytes, 4 << 20));
      const stream = r.body.getReader();
      for (;;) {
        const { done, value } = await stream.read();
        if (done) break;
        for (const part of reader.push(value)) this.take(part.headers['content-location'] ?? '', part.data);
        this.received = reader.received;
        onBytes(this.received);
      }
      reader.end();
    });
    this.accepted.catch(() => undefined);
    this.finished.catch(() => undefined); // awaited (and reported) by the caller
  }

  /** From now on every frame goes to `sink`, the ones already here first. */
  drainTo(sink: (key: string, data: Uint8Array) => void): void {
    for (const [key, data] of this.early) sink(key, data);
    this.early.clear();
    this.sink = sink;
  }

  private take(location: string, data: Uint8Array): void {
    const key = frameKey(location);
    if (!key) throw new Error('series pixel data: a part without the Content-Location of its frame');
    if (this.sink) this.sink(key, data);
    else this.early.set(key, data);
  }
}

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

/** Bytes of one frame of `imageId` as the bulk data carries it, or null where it is not a plain
 * one-sample 8- or 16-bit frame (the caller loads such series frame by frame). */
export function frameBytes(imageId: string): number | null {
  const pixel = metaData.get('imagePixelModule', imageId) as PixelModule | undefined;
  const plane = metaData.get('imagePlaneModule', imageId) as { rows?: number; columns?: number } | undefined;
  if (!pixel || !plane?.rows || !plane.columns) return null;
  if ((pixel.samplesPerPixel ?? 1) !== 1 || ![8, 16].includes(pixel.bitsAllocated ?? 0)) return null;
  return plane.rows * plane.columns * ((pixel.bitsAllocated ?? 16) / 8);
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
