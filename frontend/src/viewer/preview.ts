// The key slice on screen before the viewer's chunk (Cornerstone, 4 MB of script) has loaded:
// its one frame fetched from WADO-RS, windowed with the project's first preset (or the slice's
// own 0.5-99.5 percentiles) and drawn into a plain 2D canvas over the views, fitted to the cell
// with its pixel aspect, as the axial view will show it. The viewer removes it when its views
// are ready. Grey volumes only (a colour image, a cine or a single image goes through the
// viewer's own stack view).

import { BULK_ACCEPT } from './download';
import { parseMultipart, boundaryOf } from './multipart';
import { framePlans, frameToFloat32 } from './pixels';
import { frameUrl, seriesFrames } from './series';
import type { DicomJson, SeriesUids, WindowPresetLike } from './types';

/** The window (lower, upper) to show `values` with: the preset, or their robust range. */
export function previewWindow(values: Float32Array, preset: WindowPresetLike | null): [number, number] {
  if (preset) return [preset.center - preset.width / 2, preset.center + preset.width / 2];
  const sorted = Float32Array.from(values).sort();
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  const [lower, upper] = [at(0.005), at(0.995)];
  return upper > lower ? [lower, upper] : [lower - 1, lower + 1];
}

/** Grey RGBA pixels of `values` in the window (lower, upper). */
export function windowed(values: Float32Array, [lower, upper]: [number, number]): Uint8ClampedArray<ArrayBuffer> {
  const out = new Uint8ClampedArray(values.length * 4);
  const scale = 255 / (upper - lower);
  for (let i = 0, j = 0; i < values.length; i++, j += 4) {
    const grey = ((values[i] as number) - lower) * scale;
    out[j] = grey;
    out[j + 1] = grey;
    out[j + 2] = grey;
    out[j + 3] = 255;
  }
  return out;
}

/**
 * Draws slice `keySlice` (volume order; null: the middle one) into a new canvas in `cell`;
 * resolves to that canvas once it has been painted, or to null where there is nothing to show
 * this way (the viewer's stack view shows the key slice then).
 */
export async function drawKeyPreview(
  cell: HTMLElement, uids: SeriesUids, instances: DicomJson[], keySlice: number | null,
  preset: WindowPresetLike | null, signal: AbortSignal,
): Promise<HTMLCanvasElement | null> {
  const { frames, multiFrame } = seriesFrames(instances);
  if (multiFrame || frames.length < 2) return null;
  const index = Math.min(Math.max(0, keySlice ?? Math.floor(frames.length / 2)), frames.length - 1);
  const frame = frames[index]!;
  let plan;
  try {
    plan = framePlans([frame.instance]).get(`${frame.sop}/${frame.frame}`);
  } catch {
    return null; // pixels only the image loader reads
  }
  if (!plan || plan.samples !== 1) return null;
  const response = await fetch(frameUrl(uids, frame), {
    credentials: 'same-origin', signal, headers: { Accept: BULK_ACCEPT },
  });
  if (!response.ok) return null; // e.g. 406 for a compressed series: the stack view decodes it
  const [part] = parseMultipart(new Uint8Array(await response.arrayBuffer()), boundaryOf(response.headers.get('Content-Type') ?? ''));
  if (!part) return null;
  const values = frameToFloat32(part.data, plan);
  const columns = Number(frame.instance['00280011']?.Value?.[0]);
  const rows = Number(frame.instance['00280010']?.Value?.[0]);
  const spacing = (frame.instance['00280030']?.Value ?? []).map(Number);
  const [rowSpacing, columnSpacing] = spacing.length === 2 && spacing.every((v) => v > 0) ? spacing as [number, number] : [1, 1];

  const image = new ImageData(windowed(values, previewWindow(values, preset)), columns, rows);
  const source = document.createElement('canvas');
  source.width = columns;
  source.height = rows;
  source.getContext('2d')?.putImageData(image, 0, 0);

  const canvas = document.createElement('canvas');
  canvas.className = 'vw-still';
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(cell.clientWidth * ratio));
  canvas.height = Math.max(1, Math.round(cell.clientHeight * ratio));
  const context = canvas.getContext('2d');
  if (!context) return null;
  context.fillStyle = '#000';
  context.fillRect(0, 0, canvas.width, canvas.height);
  // fit the slice's physical size (columns x column spacing by rows x row spacing) to the cell
  const widthMm = columns * columnSpacing;
  const heightMm = rows * rowSpacing;
  const scale = Math.min(canvas.width / widthMm, canvas.height / heightMm);
  const [w, h] = [widthMm * scale, heightMm * scale];
  context.drawImage(source, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
  signal.throwIfAborted();
  const element = cell.querySelector('.vw-element'); // under the cell's label
  if (element) element.after(canvas);
  else cell.append(canvas);
  await new Promise((resolve) => requestAnimationFrame(resolve));
  return canvas;
}
