"""The medsam2-npz export read by MedSAM2's own training loader: every case can be sampled."""

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from annotator.annotation.services import Author, mask_version_save
from annotator.models import Lesion
from inference.engine.medsam2.clips import load_cases
from projects.exports import export_round_files
from projects.intake.image_import import ImportedVolume
from projects.intake.ingest import studies_import
from projects.models import Project
from projects.services import current_round
from projects.task_services import task_claim_next, task_review, task_submit
from tests.annotator.test_dicom_reading import write_ct_series

pytestmark = pytest.mark.django_db

torch = pytest.importorskip("torch")
# sam2's training package (PyPI sam2 ships it): MedSAM2 uses this sampler unchanged.
vos_sampler = pytest.importorskip("training.dataset.vos_sampler")
vos_raw = pytest.importorskip("training.dataset.vos_raw_dataset")

NUM_FRAMES = 8  # MedSAM2's sam2.1_hiera_tiny_finetune512.yaml: scratch.num_frames
MAX_OBJECTS = 5  # scratch.max_num_objects


class NPZSegmentLoader:
    """MedSAM2's training/dataset/vos_segment_loader.py NPZSegmentLoader (PyPI sam2 lacks it)."""

    def __init__(self, masks: np.ndarray) -> None:
        self.masks = masks

    def load(self, frame_idx: int) -> dict[int, Any]:
        mask = self.masks[frame_idx]
        object_ids = np.unique(mask)
        object_ids = object_ids[object_ids != 0]
        return {int(i): torch.from_numpy(mask == i).bool() for i in object_ids}


def medsam2_get_video(path: Path) -> tuple[Any, NPZSegmentLoader]:
    """MedSAM2's NPZRawDataset.get_video (sample_rate 1, no truncation), as it is written there."""
    npz_data = np.load(path)
    frames = npz_data["imgs"] / 255.0
    frames = np.repeat(frames[:, np.newaxis, :, :], 3, axis=1)
    masks = npz_data["gts"]
    vos_frames = [
        vos_raw.VOSFrame(i, image_path=None, data=torch.from_numpy(frame))
        for i, frame in enumerate(frames)
    ]
    return vos_raw.VOSVideo(path.stem, 0, vos_frames), NPZSegmentLoader(masks)


def sample(video: Any, loader: NPZSegmentLoader, seed: int) -> Any:
    random.seed(seed)
    sampler = vos_sampler.RandomUniformSampler(num_frames=NUM_FRAMES, max_num_objects=MAX_OBJECTS)
    return sampler.sample(video, loader)


def test_every_exported_case_is_sampled_by_medsam2s_loader(
    make_project: Callable[..., Project],
    team: dict[str, Any],
    import_volume: Callable[[Project], ImportedVolume],
    tmp_path: Path,
) -> None:
    project = make_project(
        "npz", manager=team["manager"], annotator=team["annotator"], reviewer=team["reviewer"]
    )
    write_ct_series(tmp_path / "in" / "short", count=3, size=16, seed=1)
    write_ct_series(tmp_path / "in" / "late", count=10, size=16, seed=2)
    assert studies_import(project=project, paths=[tmp_path / "in"]).imported_series == 2
    import_volume(project)
    annotator = team["annotator"]
    cases: dict[int, np.ndarray] = {}
    for _ in range(3):
        task = task_claim_next(user=team["annotator"], project=project)
        assert task is not None
        shape = task.series.volume.shape_zyx
        mask = np.zeros(shape, dtype=bool)
        if shape[0] == 3:
            mask[1, 4:9, 5:11] = True  # a short case
        elif shape[0] == 10:
            mask[8:10, 2:7, 3:12] = True  # only in the last 7 slices: no clip could start on it
        else:
            mask[10:14, 40:60, 30:50] = True  # the 24-slice phantom: usable as it is
        lesion = Lesion.objects.create(task=task, lesion_class="tumour", created_by=annotator)
        mask_version_save(
            lesion=lesion, mask=mask, source="human", author=Author(user=annotator), parent=None
        )
        task_submit(task=task, user=annotator)
        task_review(task=task, reviewer=team["reviewer"], decision="accept")
        cases[task.pk] = mask
    round_ = current_round(project)
    assert round_ is not None
    manifest = export_round_files(round_, tmp_path / "out", formats=("medsam2-npz",))
    paths = []
    for case in manifest["cases"]:
        path = tmp_path / "out" / "medsam2" / f"{case['case']}.npz"
        paths.append(path)
        mask = cases[case["task"]]
        depth = mask.shape[0]
        video, loader = medsam2_get_video(path)
        assert len(video.frames) == depth + case["medsam2_padding"] >= NUM_FRAMES
        for seed in range(20):
            picked = sample(video, loader, seed)
            assert len(picked.frames) == NUM_FRAMES and picked.object_ids == [1]
            assert loader.load(picked.frames[0].frame_idx)[1].any()
        # The volume's own slices come first and unchanged; the padding repeats the last one.
        with np.load(path) as npz:
            np.testing.assert_array_equal(npz["gts"][:depth].astype(bool), mask)
            assert (npz["gts"][depth:] == npz["gts"][depth - 1]).all()
            assert (npz["imgs"][depth:] == npz["imgs"][depth - 1]).all()
            assert npz["direction"].shape == (9,) and npz["origin"].shape == (3,)
            if case["medsam2_padding"]:
                # Without it MedSAM2's loader refuses the case: the padding is what makes it work.
                np.savez(
                    tmp_path / "unpadded.npz", imgs=npz["imgs"][:depth], gts=npz["gts"][:depth]
                )
                with pytest.raises(Exception, match=r"Cannot sample 8 frames|No visible objects"):
                    sample(*medsam2_get_video(tmp_path / "unpadded.npz"), seed=0)
    assert sorted(c["medsam2_padding"] for c in manifest["cases"]) == [0, 6, 6]
    # The platform's own fine-tuning reads them all too.
    usable, skipped = load_cases(paths, NUM_FRAMES)
    assert skipped == [] and len(usable) == 3
