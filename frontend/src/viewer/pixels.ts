// How each frame of the series' bulk data becomes a slice of the viewer's Float32 volume: the
// stored values (8 or 16 bits, signed or not, grey or colour) with the modality LUT applied, as
// Cornerstone's volume holds them. Computed from the DICOM JSON metadata alone (no Cornerstone),
// so the download worker can convert each frame as it arrives and the page only copies it.

import type { DicomJson } from './types';

/** How to read one frame's bytes. */
export interface FramePlan {
  bits: 8 | 16;
  signed: boolean;
  samples: 1 | 3;
  pixels: number;
  slope: number;
  intercept: number;
}

function first(dataset: DicomJson | undefined, tag: string): unknown {
  return dataset?.[tag]?.Value?.[0];
}

/** Rescale slope and intercept: the instance's own, or those its shared functional groups give
 * (enhanced multi-frame); 1 and 0 without either. */
function modalityLut(instance: DicomJson): { slope: number; intercept: number } {
  const shared = first(instance, '52009229') as DicomJson | undefined;
  const transform = first(shared, '00289145') as DicomJson | undefined;
  const pick = (tag: string, fallback: number): number => {
    const value = Number(first(instance, tag) ?? first(transform, tag));
    return Number.isFinite(value) ? value : fallback;
  };
  return { slope: pick('00281053', 1) || 1, intercept: pick('00281052', 0) };
}

/** "sop/frame" (as frameKey() names a frame resource) -> its plan, for every frame of every
 * instance; throws on pixels the bulk download does not carry (see seriesPixelBytes()). */
export function framePlans(instances: DicomJson[]): Map<string, FramePlan> {
  const plans = new Map<string, FramePlan>();
  for (const instance of instances) {
    const sop = String(first(instance, '00080018') ?? '');
    const bits = Number(first(instance, '00280100'));
    const samples = Number(first(instance, '00280002') ?? 1);
    const pixels = Number(first(instance, '00280010')) * Number(first(instance, '00280011'));
    if ((bits !== 8 && bits !== 16) || (samples !== 1 && samples !== 3) || !(pixels > 0)) {
      throw new Error(`instance ${sop}: ${bits}-bit, ${samples}-sample pixels are not loaded in one download`);
    }
    const plan: FramePlan = {
      bits, samples, pixels, signed: Number(first(instance, '00280103') ?? 0) === 1, ...modalityLut(instance),
    };
    const frames = Number(first(instance, '00280008') ?? 1) || 1;
    for (let f = 1; f <= frames; f++) plans.set(`${sop}/${f}`, plan);
  }
  return plans;
}

/** One frame's bytes as the bulk data carries them (explicit VR little endian) -> Float32 values
 * (colour: its luminance, as the server's volume holds it). */
export function frameToFloat32(data: Uint8Array, plan: FramePlan): Float32Array {
  const { pixels, samples, bits } = plan;
  const expected = pixels * samples * (bits / 8);
  if (data.length !== expected) throw new Error(`a frame has ${data.length} bytes, expected ${expected}`);
  const out = new Float32Array(pixels);
  if (samples === 3) {
    for (let i = 0, j = 0; i < pixels; i++, j += 3) {
      out[i] = 0.299 * (data[j] as number) + 0.587 * (data[j + 1] as number) + 0.114 * (data[j + 2] as number);
    }
    return out;
  }
  if (bits === 8) {
    out.set(plan.signed ? new Int8Array(data.buffer, data.byteOffset, pixels) : data);
  } else {
    // a 16-bit view needs an even offset: the part may start anywhere in the body
    const aligned = data.byteOffset % 2 ? data.slice() : data;
    const { buffer, byteOffset } = aligned;
    out.set(plan.signed ? new Int16Array(buffer, byteOffset, pixels) : new Uint16Array(buffer, byteOffset, pixels));
  }
  const { slope, intercept } = plan;
  if (slope !== 1 || intercept !== 0) for (let i = 0; i < pixels; i++) out[i] = (out[i] as number) * slope + intercept;
  return out;
}
