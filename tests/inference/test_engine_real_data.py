"""The default backend on real lesions from ../shared/data (skipped where that folder is absent).

One lesion = one connected component of the reference label (``label > 0`` for BraTS whole
tumour); the box is its tight box on the slice where it is largest, as MedSAM2 is prompted.
The floors sit a little under what the backend scored when they were set (in the comments), so
that a regression fails while the classical method's known limits (a sarcoma as dense as the
muscle around it, a whole tumour whose edema is invisible on T1c) are recorded, not hidden.
"""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk

from inference.engine import (
    ClassicalBackend,
    ImageVolume,
    LesionPrompt,
    connected_components,
    dice,
    key_slice_and_box,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PAIRS = DATA / "pairs.json"

# (pair id, label value or None for "> 0", modality, CT window, Dice floor)  # measured
CASES = [
    ("sts_STS_001_CT", None, "CT", None, 0.65),  # 0.760, about as dense as muscle
    ("sts_STS_001_MR_T1", None, "MR", None, 0.50),  # 0.602
    ("sts_STS_001_PET", None, "PT", None, 0.55),  # 0.660
    ("nsclc_LUNG1-001_crop", 1, "CT", (40.0, 400.0), 0.60),  # 0.685, touches the mediastinum
    ("brats2021_01646_flair", None, "MR", None, 0.60),  # 0.690
    ("brats2015_brats_2013_pat0002_1_Flair", None, "MR", None, 0.85),  # 0.915
    ("brats2015_brats_2013_pat0003_1_Flair", None, "MR", None, 0.85),  # 0.914
    ("lu177_spect_scan2_crop", 1, "PT", None, 0.60),  # 0.707
    ("lu177_spect_scan2_crop", 2, "PT", None, 0.60),  # 0.736, 390 voxels
    ("pyradiomics_breast1", None, "MR", None, 0.70),  # 0.812, 143 voxels
]


@pytest.fixture(scope="module")
def pairs() -> dict[str, dict[str, Any]]:
    if not PAIRS.exists():
        pytest.skip(f"real data not available at {DATA}")
    return {pair["id"]: pair for pair in json.loads(PAIRS.read_text())["pairs"]}


@pytest.mark.parametrize(
    ("pair_id", "label", "modality", "window", "floor"),
    CASES,
    ids=[f"{c[0]}-{c[1] or 'all'}" for c in CASES],
)
def test_real_lesion_dice_floor(
    pairs: dict[str, dict[str, Any]],
    pair_id: str,
    label: int | None,
    modality: str,
    window: tuple[float, float] | None,
    floor: float,
) -> None:
    pair = pairs[pair_id]
    image = sitk.ReadImage(str(DATA / pair["image"]))
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(DATA / pair["label"])))
    reference = labels > 0 if label is None else labels == label
    # The largest component: stray specks of a few voxels are not lesions to prompt for.
    lesion = connected_components(reference, min_voxels=50)[0]
    k, box = key_slice_and_box(lesion)
    volume = ImageVolume(
        sitk.GetArrayFromImage(image), tuple(image.GetSpacing()), modality, window=window
    )
    result = ClassicalBackend().segment(volume, [LesionPrompt("lesion", k, box)])
    mask = result.masks["lesion"]
    score = dice(mask, lesion)
    print(
        f"{pair_id} label={label}: dice {score:.3f} ({int(mask.sum())} vs {int(lesion.sum())} "
        f"voxels) in {result.timings['total']:.3f} s {result.notes or ''}"
    )
    assert mask.shape == lesion.shape
    assert score >= floor
    # Whatever the score, the mask is one piece around the prompt.
    assert len(connected_components(mask)) == 1
    assert mask[k].any() and not np.logical_and(mask[k], ~_box(mask.shape[1:], box)).any()


def _box(shape: tuple[int, ...], box: tuple[int, int, int, int]) -> Any:
    x0, y0, x1, y1 = box
    out = np.zeros(shape, dtype=bool)
    out[y0 : y1 + 1, x0 : x1 + 1] = True
    return out
