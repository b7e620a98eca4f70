"""Real lesions with reference masks (``../shared/data`` layout) for tests and benchmarks.

The data folder holds ``pairs.json``: image/label pairs with their modality. One lesion is the
largest connected component of a label (``label > 0`` when no label is named, as for BraTS whole
tumour); its prompt is the tight box on the slice where it is largest, as MedSAM2 is prompted.
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from inference.engine import ImageVolume, LesionPrompt, connected_components, key_slice_and_box

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class LesionCase:
    """(pair id, label value or None for "> 0", modality, CT window or None, component).

    ``component`` indexes the label's connected components, largest first (0: the largest).
    """

    pair_id: str
    label: int | None
    modality: str
    window: tuple[float, float] | None = None
    component: int = 0

    @property
    def name(self) -> str:
        suffix = f"-c{self.component}" if self.component else ""
        return f"{self.pair_id}-{self.label or 'all'}{suffix}"

    @property
    def patient(self) -> str:
        """The subject a case comes from: cases of one patient (the same tumour in CT, MR and
        PET, two SPECT time points) must never be split between training and scoring."""
        return patient_of(self.pair_id)

    @property
    def collection(self) -> str:
        """The collection a case comes from, the pair id's first word (``brats2015``,
        ``lu177``): cases of one collection share a protocol and a kind of lesion."""
        return self.pair_id.split("_", 1)[0]


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


# Pair-id endings that name a sequence, modality, time point or crop rather than a subject.
_NOT_SUBJECT = re.compile(r"(_(t1c|flair|ct|mr_t1|mr|pet|crop|scan\d+))+$", re.IGNORECASE)


def patient_of(pair_id: str) -> str:
    """``sts_STS_001_MR_T1`` -> ``sts_STS_001``, ``lu177_spect_scan2_crop`` -> ``lu177_spect``."""
    return _NOT_SUBJECT.sub("", pair_id)


# Label names that are anatomy, not lesions, in the "lesion+organs" pairs.
_LESION_NAME = re.compile(r"gtv|tumou?r|lesion|metasta|nodule|edema", re.IGNORECASE)


def _modality(text: str) -> str:
    upper = text.upper()
    if "PET" in upper or "SPECT" in upper or upper.startswith("PT"):
        return "PT"
    return upper.split()[0] if upper.split() else "OT"


def all_lesion_cases(
    pairs: dict[str, dict[str, Any]], data: Path = DEFAULT_DATA, *, min_voxels: int = 100
) -> list[LesionCase]:
    """Every lesion of every lesion pair: each connected component of at least ``min_voxels``
    of each lesion label (``label > 0``, whole tumour, for BraTS; only the lesion labels of
    "lesion+organs" pairs), with the window of :data:`LESION_CASES` where that names it."""
    windows = {(c.pair_id, c.label): c.window for c in LESION_CASES}
    cases: list[LesionCase] = []
    for pair_id, pair in sorted(pairs.items()):
        kind = str(pair.get("kind", ""))
        if not kind.startswith("lesion"):
            continue
        names: dict[str, str] = pair.get("label_names") or {}
        if pair_id.startswith("brats"):
            labels: list[int | None] = [None]
        else:
            labels = [
                int(value)
                for value, name in names.items()
                if kind == "lesion" or _LESION_NAME.search(name)
            ] or [None]
        label_image = sitk.GetArrayFromImage(sitk.ReadImage(str(data / pair["label"])))
        modality = _modality(str(pair.get("modality", "")))
        for label in labels:
            reference = label_image > 0 if label is None else label_image == label
            count = len(connected_components(reference, min_voxels=min_voxels))
            window = windows.get((pair_id, label))
            cases.extend(LesionCase(pair_id, label, modality, window, i) for i in range(count))
    return cases


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
    # The largest component by default: stray specks of a few voxels are not lesions.
    lesion = connected_components(reference, min_voxels=50)[case.component]
    k, box = key_slice_and_box(lesion)
    volume = ImageVolume(
        sitk.GetArrayFromImage(image), tuple(image.GetSpacing()), case.modality, window=case.window
    )
    return LoadedLesion(volume, lesion, LesionPrompt(case.name, k, box))
