"""nnU-Net v2's own dataset check (``verify_dataset_integrity``) on the platform's nnU-Net export.

The check is the one ``nnUNetv2_plan_and_preprocess --verify_dataset_integrity`` runs before it
plans anything: dataset.json keys and label values, one image per channel and one label per case,
matching geometry (shape, spacing, origin, direction) between images and labels, labels within the
declared values. A round exported by the platform must pass it unchanged.
"""

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from projects.exports import export_round_files
from tests.projects.test_export import World, world  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db


def _verify(folder: Path) -> None:
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(folder), num_processes=1)


def test_the_nnunet_export_passes_nnunets_own_check(world: World, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "export"
    manifest = export_round_files(world.round, out, formats=["nnunet"])
    dataset = out / "nnunet" / "Dataset500_ExpR00"
    assert len(list((dataset / "labelsTr").iterdir())) == len(manifest["cases"]) == 2
    _verify(dataset)


def test_the_check_catches_a_broken_export(world: World, tmp_path: Path) -> None:  # noqa: F811
    """The check is not a formality: a label value the dataset does not declare fails it."""
    out = tmp_path / "export"
    export_round_files(world.round, out, formats=["nnunet"])
    dataset = out / "nnunet" / "Dataset500_ExpR00"
    label_path = sorted((dataset / "labelsTr").iterdir())[0]
    labels = sitk.ReadImage(str(label_path))
    array = sitk.GetArrayFromImage(labels)
    array[np.nonzero(array)] = 7  # no class 7 in dataset.json
    broken = sitk.GetImageFromArray(array)
    broken.CopyInformation(labels)
    sitk.WriteImage(broken, str(label_path))
    with pytest.raises(RuntimeError, match="unexpected labels"):
        _verify(dataset)
