"""``nnunet``: the nnU-Net v2 raw layout ``nnunet/Dataset500_<Name>R<round>/`` with
``imagesTr/<case>_0000.nii.gz``, ``labelsTr/<case>.nii.gz`` and ``dataset.json``.

nnU-Net labels are semantic classes, so here the label value is the lesion class's index in the
project's lesion classes (from 1; classes no longer in the project follow, by name). Every case is
in ``imagesTr``; the manifest's ``split`` says which are for validation."""

import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from annotator.annotation.masks import to_image
from projects.export_formats.registry import (
    CaseExport,
    ExportFormat,
    label_dtype,
    register,
    write_nifti,
)
from projects.models import Round, Task

NNUNET_DATASET_ID = 500


def nnunet_name(round_: Round) -> str:
    name = "".join(part.title() for part in re.split(r"[^A-Za-z0-9]+", round_.project.slug))
    return f"Dataset{NNUNET_DATASET_ID:03d}_{name or 'Project'}R{round_.number:02d}"


def nnunet_classes(round_: Round, tasks: Sequence[Task]) -> dict[str, int]:
    """Lesion class -> nnU-Net label: the project's classes in order, then unknown ones by name."""
    names = list(round_.project.lesion_class_names)
    extra = sorted(
        {lesion.lesion_class for task in tasks for lesion in task.lesions.all()} - set(names)
    )
    return {name: index for index, name in enumerate(names + extra, start=1)}


@register
class NnUNet(ExportFormat):
    name = "nnunet"
    rank = 30
    write_rank = 20

    def __init__(self, round_: Round, tasks: Sequence[Task]) -> None:
        super().__init__(round_, tasks)
        self.classes = nnunet_classes(round_, tasks)
        self.dataset = nnunet_name(round_)

    def write_case(self, export: CaseExport) -> list[str]:
        name, volume = export.name, export.volume
        top = max(self.classes.values(), default=0)
        semantic = np.zeros(volume.shape_zyx, dtype=label_dtype(top))
        for lesion, _, mask in export.masks:
            semantic[mask] = self.classes[lesion.lesion_class]
        root = export.out / "nnunet" / self.dataset
        (root / "imagesTr").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(export.source, root / "imagesTr" / f"{name}_0000.nii.gz")
        write_nifti(to_image(semantic, volume), root / "labelsTr" / f"{name}.nii.gz")
        return [
            f"nnunet/{self.dataset}/imagesTr/{name}_0000.nii.gz",
            f"nnunet/{self.dataset}/labelsTr/{name}.nii.gz",
        ]

    def finish(self, out: Path, cases: list[dict[str, Any]]) -> list[str]:
        root = out / "nnunet" / self.dataset
        root.mkdir(parents=True, exist_ok=True)
        project = self.round.project
        description = {
            "name": self.dataset,
            "description": (
                f"{project.name}, round {self.round.number}: accepted cases. Labels are "
                "lesion classes (semantic); the instance labels are in the nifti export."
            ),
            "channel_names": {"0": project.modality},
            "labels": {"background": 0, **self.classes},
            "numTraining": len(cases),
            "file_ending": ".nii.gz",
        }
        (root / "dataset.json").write_text(json.dumps(description, indent=2) + "\n")
        return [f"nnunet/{self.dataset}/dataset.json"]
