import { describe, expect, it } from 'vitest';
import { framePlans, frameToFloat32, type FramePlan } from './pixels';
import type { DicomJson } from './types';

function instance(tags: Record<string, unknown>): DicomJson {
  return Object.fromEntries(Object.entries(tags).map(([tag, value]) => [tag, { Value: [value] }]));
}

const ct = instance({
  '00080018': '1.2.3', '00280100': 16, '00280103': 1, '00280002': 1, '00280010': 2, '00280011': 3,
  '00281053': 2, '00281052': -1024,
});

describe('frame plans from the series metadata', () => {
  it('reads bits, sign, samples, size and the modality LUT of every frame', () => {
    const plans = framePlans([ct]);
    expect([...plans.keys()]).toEqual(['1.2.3/1']);
    expect(plans.get('1.2.3/1')).toEqual({ bits: 16, signed: true, samples: 1, pixels: 6, slope: 2, intercept: -1024 });
  });

  it('gives every frame of a multi-frame instance its plan, the LUT from the shared functional groups', () => {
    const shared = instance({ '00289145': instance({ '00281053': 0.5, '00281052': 10 }) });
    const enhanced = { ...instance({ '00080018': '9', '00280100': 8, '00280002': 1, '00280010': 4, '00280011': 4, '00280008': 3 }), '52009229': { Value: [shared] } };
    const plans = framePlans([enhanced]);
    expect([...plans.keys()]).toEqual(['9/1', '9/2', '9/3']);
    expect(plans.get('9/3')).toMatchObject({ bits: 8, signed: false, slope: 0.5, intercept: 10 });
  });

  it('refuses pixels the one-request download does not carry', () => {
    const twelve = { ...ct, '00280100': { Value: [32] } };
    expect(() => framePlans([twelve])).toThrow(/32-bit, 1-sample/);
  });
});

describe('a frame as Float32 values', () => {
  const plan: FramePlan = { bits: 16, signed: true, samples: 1, pixels: 3, slope: 2, intercept: -1024 };

  it('applies the modality LUT to signed 16-bit values, wherever the part starts in the body', () => {
    const values = new Int16Array([-5, 0, 700]);
    const body = new Uint8Array(7);
    body.set(new Uint8Array(values.buffer), 1); // an odd offset
    expect([...frameToFloat32(body.subarray(1), plan)]).toEqual([-1034, -1024, 376]);
  });

  it('reads unsigned 16-bit values above 32767 as such', () => {
    const bytes = new Uint8Array(new Uint16Array([40000, 1, 2]).buffer);
    expect([...frameToFloat32(bytes, { ...plan, signed: false, slope: 1, intercept: 0 })]).toEqual([40000, 1, 2]);
  });

  it('gives colour frames their luminance', () => {
    const rgb = new Uint8Array([255, 0, 0, 0, 255, 0, 10, 10, 10]);
    const out = frameToFloat32(rgb, { bits: 8, signed: false, samples: 3, pixels: 3, slope: 1, intercept: 0 });
    expect(out[0]).toBeCloseTo(76.245, 3);
    expect(out[1]).toBeCloseTo(149.685, 3);
    expect(out[2]).toBeCloseTo(10, 4);
  });

  it('throws on a frame of the wrong size', () => {
    expect(() => frameToFloat32(new Uint8Array(5), plan)).toThrow(/5 bytes, expected 6/);
  });
});
