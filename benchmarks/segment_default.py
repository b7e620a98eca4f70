"""Speed and accuracy of the default (classical) backend, one box-prompted lesion at a time.

    python benchmarks/segment_default.py [--data ../shared/data] [--phantoms 3]

Lesions: phantom lesions in full-size 64x512x512 CT phantoms, and the real lesion pairs of
``--data`` when it exists. The reference in the same run is SimpleITK's ConfidenceConnected
region growing from the box centre, restricted to the same box (the usual classical baseline).
Ends with ``RESULT segment_default ...``.
"""

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.engine import (
    ClassicalBackend,
    ImageVolume,
    LesionPrompt,
    connected_components,
    dice,
    key_slice_and_box,
    make_ct_phantom,
)
from inference.evaluation import DEFAULT_DATA, LESION_CASES, load_lesion, load_pairs


def reference_segment(volume: ImageVolume, prompt: LesionPrompt) -> np.ndarray:
    """ConfidenceConnected from the box centre, inside the box extended over nearby slices."""
    x0, y0, x1, y1 = prompt.box
    sx, sy, sz = volume.spacing
    reach = round(max((x1 - x0) * sx, (y1 - y0) * sy) / 2 / sz) + 1
    z0, z1 = max(0, prompt.key_slice - reach), min(volume.shape[0], prompt.key_slice + reach + 1)
    crop = volume.array[z0:z1, y0 : y1 + 1, x0 : x1 + 1].astype(np.float32)
    image = sitk.CurvatureFlow(sitk.GetImageFromArray(crop), timeStep=0.125, numberOfIterations=3)
    seed = ((x1 - x0) // 2, (y1 - y0) // 2, prompt.key_slice - z0)
    grown = sitk.ConfidenceConnected(
        image, seedList=[seed], numberOfIterations=3, multiplier=2.5, initialNeighborhoodRadius=2
    )
    out = np.zeros(volume.shape, dtype=bool)
    out[z0:z1, y0 : y1 + 1, x0 : x1 + 1] = sitk.GetArrayFromImage(grown) > 0
    parts = connected_components(out)
    return parts[0] if parts else out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--phantoms", type=int, default=3)
    args = parser.parse_args()

    lesions: list[tuple[str, ImageVolume, np.ndarray, LesionPrompt]] = []
    for seed in range(args.phantoms):
        phantom = make_ct_phantom(seed=seed, shape=(64, 512, 512), spacing=(0.7, 0.7, 2.5))
        volume = ImageVolume(phantom.image, phantom.spacing, "CT", window=(40.0, 400.0))
        for i, mask in enumerate(phantom.lesion_masks):
            k, box = key_slice_and_box(mask)
            lesions.append((f"phantom{seed}-{i}", volume, mask, LesionPrompt("x", k, box)))
    pairs = load_pairs(args.data)
    for case in LESION_CASES if pairs else []:
        assert pairs is not None
        loaded = load_lesion(case, pairs, args.data)
        lesions.append((case.name, loaded.volume, loaded.reference, loaded.prompt))

    backend = ClassicalBackend()
    rows = []
    print(f"{'lesion':45s} {'dice':>6s} {'ref':>6s} {'s':>7s} {'ref s':>7s}")
    for name, volume, reference, prompt in lesions:
        started = time.perf_counter()
        mask = backend.segment(volume, [prompt]).masks[prompt.lesion_id]
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        baseline = reference_segment(volume, prompt)
        ref_seconds = time.perf_counter() - started
        rows.append((dice(mask, reference), dice(baseline, reference), seconds, ref_seconds))
        print(f"{name:45s} {rows[-1][0]:6.3f} {rows[-1][1]:6.3f} {seconds:7.3f} {ref_seconds:7.3f}")

    dices, ref_dices, secs, ref_secs = (list(column) for column in zip(*rows, strict=True))
    print(f"machine: {platform.processor() or platform.machine()}, {platform.python_version()}")
    print(
        "RESULT segment_default "
        f"lesions={len(rows)} dice_mean={statistics.mean(dices):.3f} "
        f"dice_min={min(dices):.3f} ref_dice_mean={statistics.mean(ref_dices):.3f} "
        f"seconds_median={statistics.median(secs):.3f} seconds_max={max(secs):.3f} "
        f"ref_seconds_median={statistics.median(ref_secs):.3f} "
        f"time_ratio={statistics.median(secs) / statistics.median(ref_secs):.2f}"
    )


if __name__ == "__main__":
    main()
