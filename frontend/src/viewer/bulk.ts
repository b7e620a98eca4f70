// A whole series' pixels in one DICOMweb request: the series resource asked for its bulk data
// (multipart/related; type="application/octet-stream", explicit VR little endian), every frame a
// part with its frame resource in Content-Location. The volume is built from it in one pass
// (rescaled to Float32, which the views' texture takes without another conversion), instead of
// one request, one decode-worker round trip and one image object per slice.

import { metaData, utilities, volumeLoader, type Types } from '@cornerstonejs/core';
import { DICOMWEB_ROOT } from './dicomweb';
import { boundaryOf, parseMultipart } from './multipart';
import type { SeriesUids } from './types';

const EXPLICIT_LE = '1.2.840.10008.1.2.1';
export const BULK_ACCEPT = `multipart/related; type="application/octet-stream"; transfer-syntax=${EXPLICIT_LE}`;

/** "sop/frame" of a wadors imageId or a frame resource URL. */
export function frameKey(url: string): string | null {
  const match = /\/instances\/([^/]+)\/frames\/(\d+)$/.exec(url);
  return match ? `${match[1]}/${match[2]}` : null;
}

/**
 * Downloads the series' bulk data; `onBytes(received)` as it arrives. Resolves to each frame's
 * bytes by frameKey(), or null when the server cannot send it so (406: the caller loads frame by
 * frame). Throws on a failed or malformed response.
 */
export async function fetchSeriesFrames(
  uids: SeriesUids, signal: AbortSignal, onBytes: (received: number) => void, expectedBytes = 0,
): Promise<Map<string, Uint8Array> | null> {
  const url = `${DICOMWEB_ROOT}/studies/${uids.study}/series/${uids.series}`;
  const response = await fetch(url, { credentials: 'same-origin', signal, headers: { Accept: BULK_ACCEPT } });
  if (response.status === 406) return null;
  if (!response.ok || !response.body) throw new Error(`series pixel data: HTTP ${response.status}`);
  const boundary = boundaryOf(response.headers.get('Content-Type') ?? '');
  // one growing buffer (no list of chunks to join at the end)
  let body = new Uint8Array(Math.max(expectedBytes + (1 << 20), 1 << 20));
  let received = 0;
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (received + value.length > body.length) {
      const grown = new Uint8Array(Math.max(body.length * 1.5, received + value.length));
      grown.set(body.subarray(0, received));
      body = grown;
    }
    body.set(value, received);
    received += value.length;
    onBytes(received);
  }
  const frames = new Map<string, Uint8Array>();
  for (const part of parseMultipart(body.subarray(0, received), boundary)) {
    const key = frameKey(part.headers['content-location'] ?? '');
    if (!key) throw new Error('series pixel data: a part without the Content-Location of its frame');
    frames.set(key, part.data);
  }
  return frames;
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
 * A local volume (Float32, modality LUT applied per slice) from the frames of `imageIds`. Its
 * slices carry the image plane of the DICOM slice they come from. Throws when a frame is
 * missing or not the expected size.
 */
export function buildVolume(volumeId: string, imageIds: string[], frames: Map<string, Uint8Array>): Types.IImageVolume {
  const props = utilities.generateVolumePropsFromImageIds(imageIds, volumeId);
  const [nx, ny, nz] = props.dimensions as [number, number, number];
  const size = nx * ny;
  const scalars = new Float32Array(size * nz);
  props.imageIds.forEach((imageId: string, k: number) => {
    const data = frames.get(frameKey(imageId) ?? '');
    if (!data) throw new Error(`slice ${k + 1} of ${nz} is missing from the series' pixel data`);
    const pixel = metaData.get('imagePixelModule', imageId) as PixelModule;
    const bits = pixel.bitsAllocated ?? 16;
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
    const out = scalars.subarray(k * size, (k + 1) * size);
    if (slope === 1 && intercept === 0) out.set(stored);
    else for (let i = 0; i < size; i++) out[i] = (stored[i] as number) * slope + intercept;
  });
  const volume = volumeLoader.createLocalVolume(volumeId, {
    scalarData: scalars,
    metadata: props.metadata,
    dimensions: props.dimensions,
    spacing: props.spacing,
    origin: props.origin,
    direction: props.direction,
    referencedImageIds: props.imageIds,
  } as never) as Types.IImageVolume;
  // Each local slice gets the plane of its DICOM slice (createLocalVolume gives all of them the
  // volume's origin): tools look up a slice by its position.
  (volume.imageIds ?? []).forEach((localId, k) => {
    const plane = metaData.get('imagePlaneModule', props.imageIds[k] as string);
    if (plane) utilities.genericMetadataProvider.add(localId, { type: 'imagePlaneModule', metadata: plane });
  });
  return volume;
}
