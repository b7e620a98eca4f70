"""The engine's training contract: each backend has its trainer, the neutral cases load
lazily (one image read per run of its cases, empty masks skipped and counted)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from inference.engine import ImageVolume
from inference.engine.learned_training import LEARNED_BACKEND, LearnedDraftTrainer, learned_host
from inference.engine.litemedsam.trainer import LiteMedSAMTrainer, split_by_patient
from inference.engine.medsam2.trainer import MedSAM2Trainer, clip_padding
from inference.engine.trainers import trainer_for
from inference.engine.training import (
    CaseInfo,
    Cases,
    ModelRef,
    TrainingContext,
    TrainingError,
)


def context(backend: str, round_backend: str = "default") -> TrainingContext:
    def unused(*args: Any) -> Any:
        raise AssertionError("not used here")

    return TrainingContext(
        current=ModelRef(backend),
        round_model=ModelRef(round_backend),
        label="r0 (job 1)",
        load_model=unused,
        local_file=unused,
        setting=lambda name: None,
    )


@pytest.mark.parametrize(
    ("backend", "trainer"),
    [
        ("default", LearnedDraftTrainer),
        ("classical", LearnedDraftTrainer),
        (LEARNED_BACKEND, LearnedDraftTrainer),
        ("litemedsam", LiteMedSAMTrainer),
        ("medsam2", MedSAM2Trainer),
        ("no.such.Backend", LearnedDraftTrainer),  # no trainer of its own: the learned draft
    ],
)
def test_each_backend_has_its_trainer(backend: str, trainer: type) -> None:
    assert type(trainer_for(context(backend))) is trainer


def test_the_learned_draft_is_trained_for_the_round_s_hybrid_or_alone() -> None:
    assert learned_host(ModelRef("default")) == "default"
    assert learned_host(ModelRef("classical")) == LEARNED_BACKEND


def info(lesion: int, image: str, patient: str = "p", split: str = "train") -> CaseInfo:
    return CaseInfo(
        lesion, image, group=f"task {image}", patient=patient, split=split, source="human"
    )


def test_cases_load_lazily_one_image_at_a_time_and_skip_empty_masks() -> None:
    reads: list[str] = []
    mask = np.zeros((3, 8, 8), dtype=bool)
    mask[1, 2:5, 2:6] = True

    def read_image(found: CaseInfo) -> ImageVolume:
        reads.append(found.image)
        return ImageVolume(np.zeros((3, 8, 8), dtype=np.int16))

    infos = [info(1, "a"), info(2, "a"), info(3, "b", split="validation")]
    cases = Cases(infos, read_image, lambda found: mask if found.lesion != 2 else mask & False)
    progress: list[tuple[int, int]] = []
    stats: dict[str, Any] = {}
    loaded = list(cases.load(infos, progress=lambda d, t: progress.append((d, t)), stats=stats))
    assert [case.prompt.lesion_id for case in loaded] == ["1", "3"]
    assert loaded[0].prompt.key_slice == 1 and loaded[0].prompt.box == (2, 2, 5, 4)
    assert reads == ["a", "b"] and progress == [(1, 3), (2, 3), (3, 3)]
    assert stats == {"sources": {"human": 2}, "skipped": [{"lesion": 2, "reason": "empty mask"}]}
    assert cases.split() == (infos[:2], infos[2:])


def test_litemedsam_holds_out_whole_patients_when_the_export_holds_out_nobody() -> None:
    infos = [info(i, str(i), patient=f"patient:{i % 3}") for i in range(6)]
    train, held, how = split_by_patient(infos, 20)
    assert held and {x.patient for x in train}.isdisjoint({x.patient for x in held})
    assert how.startswith("by patient: the export's split holds out nobody")


def test_medsam2_needs_a_checkpoint_and_pads_for_its_clips(tmp_path: Any) -> None:
    empty = np.zeros((2, 4, 4))
    cases = Cases([info(1, "a")], lambda _: ImageVolume(empty), lambda _: empty)
    with pytest.raises(TrainingError, match="no MedSAM2 checkpoint to fine-tune from"):
        MedSAM2Trainer(context("medsam2")).train(
            cases, tmp_path, progress=lambda d, t: None, should_stop=lambda: False
        )
    labels = np.zeros((5, 2, 2), dtype=np.uint8)
    labels[3] = 1
    assert clip_padding(labels, 8) == 6 and clip_padding(labels, 2) == 0
