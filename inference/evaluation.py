"""Real lesions with reference masks (``../shared/data`` layout) for tests and benchmarks.

The data folder holds ``pairs.json``: image/label pairs with their modality. One lesion is the
largest connected component of a label (``label > 0`` when no label is named, as for BraTS whole
tumour); its prompt is the tight box on the slice where it is largest, as MedSAM2 is prompted.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from inference.engine import ImageVolume, LesionPrompt, connected_components, key_slice_and_box

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class LesionCase:
    """(pair id, label value or None for "> 0", modality, CT window or None)."""

    pair_id: str
    label: int | None
    modality: str
    window: tuple[float, float] | None = None

    @property
    def name(self) -> str:
        return f"{self.pair_id}-{self.label or 'all'}"


# Lesion pairs of ../shared/data the default backend is evaluated on.
LESION_CASES = [
    LesionCase("sts_STS_001_CT", None, "CT"),
    LesionCase("sts_STS_001_MR_T1", None, "MR"),
    LesionCase("sts_STS_001_PET", None, "PT"),
    LesionCase("nsclc_LUNG1-001_crop", 1, "CT", (40.0, 400.0)),
    LesionCase("brats2021_01646_flair", None, "MR"),
    LesionCase("brats2015_brats_2013_pat0002_1_Flair", None, "MR"),
    LesionCase("brats2015_brats_2013_pat0003_1_Flair", None, "MR"),
    LesionCase("lu177_spect_scan2_crop", 1, "PT"),
    LesionCase("lu177_spect_scan2_crop", 2, "PT"),
    LesionCase("pyradiomics_breast1", None, "MR"),
]


def load_pairs(data: Path = DEFAULT_DATA) -> dict[str, dict[str, Any]] | None:
    """The pairs listed in ``data/pairs.json`` by id; None when the folder is absent."""
    index = data / "pairs.json"
    if not index.exists():
        return None
    return {pair["id"]: pair for pair in json.loads(index.read_text())["pairs"]}


@dataclass(frozen=True)
class LoadedLesion:
    volume: ImageVolume
    reference: np.ndarray
    prompt: LesionPrompt


def load_lesion(case: LesionCase, pairs: dict[str, dict[str, Any]], data: Path) -> LoadedLesion:
    pair = pairs[case.pair_id]
    image = sitk.ReadImage(str(data / pair["image"]))
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(data / pair["label"])))
    reference = labels > 0 if case.label is None else labels == case.label
    # The largest component: stray specks of a few voxels are not lesions to prompt for.
    lesion = connected_components(reference, min_voxels=50)[0]
    k, box = key_slice_and_box(lesion)
    volume = ImageVolume(
        sitk.GetArrayFromImage(image), tuple(image.GetSpacing()), case.modality, window=case.window
    )
    return LoadedLesion(volume, lesion, LesionPrompt(case.name, k, box))
