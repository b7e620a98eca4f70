"""LiteMedSAM's speed for an annotator: the image encoder per slice (eager PyTorch against the
chosen runtime, in the same run, with their masks' agreement) and a prompt on an encoded volume.

    python benchmarks/litemedsam_speed.py [--data ../shared/data] [--slices 64]
                                          [--runtime auto|onnx|eager] [--device cpu|cuda]

The volume: ``--slices`` slices of 512 x 512 of the real chest CT LUNG1-001 (DICOM, from
``--data``/mirp/ct_images_seg_nsclc) around its tumour (GTV-1, 19 slices of 3 mm, from the
RTSTRUCT's label map beside it); without the data, a CT phantom of the same size and its largest
lesion. CT window 40 / 400, as the evaluation uses.

1. Pre-encoding, as the batch queue does it (``LiteMedSAMBackend.encode``): every slice with the
   chosen runtime (``--runtime``, default the backend's "auto": ONNX Runtime on a CPU), and the
   slices of the prompt's range with eager PyTorch too, in alternating batches of two so that
   both see the same load; ``encoder_ms`` and ``eager_ms``: milliseconds a slice (frame
   preparation included; the runtime's one-time set-up, export or compilation, is not, and is
   printed apart). ``speedup`` = eager_ms / encoder_ms.
2. The prompt: the tumour's tight box on its largest slice with a slice range (``z_range``) of 30
   slices around it, propagated both ways on the encoded volume: the chosen runtime's decoder
   only (the result's ``encoded_slices`` must be 0). ``prompt_s``: the median of 3, in seconds
   (the eager runtime's is printed too).
3. ``agreement``: the Dice of the prompt's masks from the two runtimes (each with its own
   embeddings and decoder), over the 30 slices of the range.
4. ``peak_rss_mb``: the peak resident memory (``VmHWM``; not ``getrusage``'s maxrss, which a
   child process inherits from its parent at fork on Linux) of a worker's path with the
   chosen runtime (model, the whole volume encoded into memory, the prompt), run in a process of
   its own after the above; this process's own peak (both runtimes, two stores, and the one-time
   ONNX export when this run made it) is printed beside it.

Prints the machine's load average beside the figures (the CPU is shared). Ends with ``RESULT
litemedsam_speed encoder_ms=E eager_ms=B speedup=S prompt_s=P agreement=A peak_rss_mb=M``.
Targets: prompt_s <= 2.0, agreement >= 0.995, peak_rss_mb <= 2000.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from inference.engine import ImageVolume, LesionPrompt, dice, key_slice_and_box  # noqa: E402
from inference.evaluation import DEFAULT_DATA  # noqa: E402

CT_WINDOW = (40.0, 400.0)
RANGE = 30  # slices of the prompt's z_range
LUNG1 = Path("mirp") / "ct_images_seg_nsclc" / "LUNG1-001" / "image"
LUNG1_LABELS = Path("mirp") / "nifti" / "LUNG1-001_rtstruct_labels.nii.gz"


def real_ct(data: Path, depth: int) -> tuple[str, ImageVolume, np.ndarray] | None:
    """``depth`` slices of LUNG1-001 centred on its tumour, and the tumour's mask there."""
    series, labels = data / LUNG1, data / LUNG1_LABELS
    if not series.is_dir() or not labels.is_file():
        return None
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(series)))
    image = reader.Execute()
    array = sitk.GetArrayFromImage(image)
    tumour = sitk.GetArrayFromImage(sitk.ReadImage(str(labels))) == 1
    if tumour.shape != array.shape:
        raise SystemExit(f"LUNG1-001: labels {tumour.shape} do not match the CT {array.shape}")
    zs = np.nonzero(tumour.any(axis=(1, 2)))[0]
    start = int(np.clip((zs[0] + zs[-1]) // 2 - depth // 2, 0, max(0, len(array) - depth)))
    kept = slice(start, start + depth)
    # Copies: the whole series is not kept alive by a view (a worker reads only its volume).
    volume = ImageVolume(array[kept].copy(), tuple(image.GetSpacing()), "CT", window=CT_WINDOW)
    return f"LUNG1-001 slices {start}-{start + depth - 1}", volume, tumour[kept].copy()


def phantom_ct(depth: int) -> tuple[str, ImageVolume, np.ndarray]:
    from inference.engine import make_ct_phantom

    phantom = make_ct_phantom(seed=0, shape=(depth, 512, 512), spacing=(0.7, 0.7, 2.5))
    lesion = max(phantom.lesion_masks, key=lambda m: int(m.sum()))
    volume = ImageVolume(phantom.image, phantom.spacing, "CT", window=CT_WINDOW)
    return "CT phantom", volume, lesion


def encode_both(
    chosen: Any, eager: Any, volume: ImageVolume, in_range: set[int]
) -> tuple[float, float]:
    """Every slice with ``chosen``, the range's with ``eager``, two at a time in turn; each
    backend's encoder milliseconds a slice."""
    for z in range(0, volume.shape[0], 2):
        batch = [k for k in (z, z + 1) if k < volume.shape[0]]
        chosen.encode(volume, batch, batch=2)
        if mine := [k for k in batch if k in in_range]:
            eager.encode(volume, mine, batch=2)
    return tuple(  # type: ignore[return-value]
        1000 * b.encoder_seconds / max(1, b.encoder_calls) for b in (chosen, eager)
    )


def load_case(data: Path, depth: int) -> tuple[ImageVolume, np.ndarray, LesionPrompt]:
    """The volume, its lesion and the prompt: the tight box on the lesion's largest slice and a
    slice range of RANGE slices around it."""
    found = real_ct(data, depth)
    name, volume, lesion = found if found is not None else phantom_ct(depth)
    key, box = key_slice_and_box(lesion)
    z0 = int(np.clip(key - RANGE // 2, 0, volume.shape[0] - RANGE))
    prompt = LesionPrompt("tumour", key, box, z_range=(z0, z0 + RANGE - 1))
    lesion_slices = np.nonzero(lesion.any(axis=(1, 2)))[0]
    print(
        f"volume: {name}, {volume.shape[0]}x{volume.shape[1]}x{volume.shape[2]} (z, y, x); "
        f"lesion on slices {lesion_slices[0]}-{lesion_slices[-1]}, key slice {key}, box {box}, "
        f"z_range {prompt.z_range}",
        flush=True,
    )
    return volume, lesion, prompt


def prompt_seconds(backend: Any, volume: ImageVolume, prompt: LesionPrompt) -> tuple[float, Any]:
    started = time.perf_counter()
    result = backend.segment(volume, [prompt])
    assert result.timings["encoded_slices"] == 0, "the volume was not encoded"
    return time.perf_counter() - started, result


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def worker_peak(args: argparse.Namespace) -> None:
    """What a worker does with the chosen runtime alone, in a process of its own: encode the
    volume, then the prompt; prints its peak resident memory in MiB."""
    from inference.engine.litemedsam import LiteMedSAMBackend

    volume, _, prompt = load_case(args.data, args.slices)
    backend = LiteMedSAMBackend(
        device=args.device, runtime=args.runtime, cache_mb=4 * (args.slices + 8)
    )
    backend.encode(volume)
    prompt_seconds(backend, volume, prompt)
    print(f"PEAK {peak_rss_mb():.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--slices", type=int, default=64)
    parser.add_argument("--runtime", default="auto", choices=["auto", "onnx", "eager"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--peak-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ["LITEMEDSAM_EMBEDDINGS_DIR"] = ""  # memory only: nothing left on this disk
    warnings.simplefilter("ignore", FutureWarning)  # timm's notes on the vendored TinyViT
    if args.peak_only:
        worker_peak(args)
        return
    import torch

    from inference.engine.litemedsam import LiteMedSAMBackend

    load_before = os.getloadavg()
    volume, lesion, prompt = load_case(args.data, args.slices)
    assert prompt.z_range is not None
    z0 = prompt.z_range[0]

    # Two stores (their memory budgets differ): each backend runs its own encoder.
    store_mb = 4 * (args.slices + 8)
    chosen = LiteMedSAMBackend(device=args.device, runtime=args.runtime, cache_mb=store_mb)
    eager = LiteMedSAMBackend(device=args.device, runtime="eager", cache_mb=store_mb + 1)
    warm = torch.zeros((1, 3, 256, 256))
    for backend in (chosen, eager):
        started = time.perf_counter()
        backend._image_encoder(warm)  # export, session, first-call costs: once per process
        print(f"{backend.runtime} encoder: set-up {time.perf_counter() - started:.1f} s")
    encoder_ms, eager_ms = encode_both(chosen, eager, volume, set(range(z0, z0 + RANGE)))
    print(
        f"encoder: {chosen.runtime} {encoder_ms:.0f} ms a slice ({chosen.encoder_calls} "
        f"slices), eager {eager_ms:.0f} ms a slice ({eager.encoder_calls} slices)",
        flush=True,
    )
    for backend in (chosen, eager):
        started = time.perf_counter()
        backend.decode(backend.prepare(volume), prompt.key_slice, prompt.box)
        print(f"{backend.runtime} decoder: first call {time.perf_counter() - started:.1f} s")

    runs = [prompt_seconds(chosen, volume, prompt) for _ in range(3)]
    eager_s, reference = prompt_seconds(eager, volume, prompt)
    seconds = [s for s, _ in runs]
    mask, eager_mask = runs[0][1].masks["tumour"], reference.masks["tumour"]
    decoded = int(mask.any(axis=(1, 2)).sum())
    zr = slice(z0, z0 + RANGE)
    agreement = dice(mask[zr], eager_mask[zr])
    prompt_s = statistics.median(seconds)
    print(
        f"prompt: {', '.join(f'{s:.2f}' for s in seconds)} s, eager {eager_s:.2f} s ({decoded} "
        f"slices with a mask; Dice against the reference {dice(mask, lesion):.3f}); agreement "
        f"with eager {agreement:.4f}",
        flush=True,
    )
    process_mb = peak_rss_mb()
    load_after = os.getloadavg()

    child = subprocess.run(
        [sys.executable, __file__, "--peak-only", *sys.argv[1:]],
        capture_output=True,
        text=True,
        check=True,
    )
    peak_mb = float(child.stdout.rsplit("PEAK", 1)[1])
    print(
        f"peak resident memory: {peak_mb:.0f} MiB for a worker's path alone ({chosen.runtime}: "
        f"encode the volume, then the prompt, in a process of its own); {process_mb:.0f} MiB for "
        f"this process (both runtimes, two stores, the ONNX export if it was made here)"
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__} ({torch.get_num_threads()} threads), device {args.device}; load "
        f"average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print(
        f"RESULT litemedsam_speed encoder_ms={encoder_ms:.0f} eager_ms={eager_ms:.0f} "
        f"speedup={eager_ms / encoder_ms:.2f} prompt_s={prompt_s:.2f} "
        f"agreement={agreement:.4f} peak_rss_mb={peak_mb:.0f}"
    )


if __name__ == "__main__":
    main()
