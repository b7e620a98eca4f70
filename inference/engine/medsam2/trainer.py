"""MedSAM2's trainer: the project's MedSAM2 model fine-tuned on its accepted cases.

The cases are written as MedSAM2 npz files, one per group of cases annotated together on one
image (a task), as the export's ``medsam2-npz`` writes them (``imgs`` (z, y, x) uint8 mapped as
the backend maps the volume, ``gts`` the instance labels, ``spacing``; copies of the last slice
appended where the clip sampler needs them); the model continues from the current model's
checkpoint on the "train" side of the export's split (:func:`.finetune.finetune`, the published
recipe) and is evaluated on the "validation" side (Dice of box-prompted propagation, before and
after). A manager promotes the result.

Settings: ``MEDSAM2_TRAIN_CONFIG``, "recipe" (default: the published recipe, for the GPU
workers of the ``train`` queue) or "smoke" (two steps on 2-frame clips of small crops, batch 1:
seconds to minutes on a CPU; the tests use it); ``MEDSAM2_CHECKPOINT``, the file to start from
when the current model is the site's default backend. The device is ``MEDSAM2_DEVICE``, else
CUDA when available.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..base import ProgressCallback
from ..intensity import intensity_mapping
from ..training import CaseInfo, Cases, Trainer, TrainingError, TrainResult, progress_part
from .recipes import CONFIGS, FinetuneConfig

__all__ = ["DEFAULT_CT_WINDOW", "MedSAM2Trainer", "clip_padding", "finetune_config", "write_npz"]

# The window the export and the backend use for CT without a project preset.
DEFAULT_CT_WINDOW = (40.0, 400.0)


def finetune_config(name: object) -> FinetuneConfig:
    """The configuration ``MEDSAM2_TRAIN_CONFIG`` names ("recipe" or "smoke"; unset: "recipe")."""
    chosen = str(name or "recipe").lower()
    if chosen not in CONFIGS:
        raise TrainingError(
            f"MEDSAM2_TRAIN_CONFIG is {chosen!r}: use one of {', '.join(sorted(CONFIGS))}"
        )
    return CONFIGS[chosen]


def clip_padding(labels: np.ndarray, frames: int) -> int:
    """How many copies of the last slice the clip sampler needs appended to use a case: it
    takes ``frames`` consecutive slices whose first one holds an object."""
    depth = labels.shape[0]
    labelled = np.flatnonzero(labels.reshape(depth, -1).any(axis=1))
    first = int(labelled[0]) if labelled.size else 0
    return int(max(0, first + frames - depth))


def _repeat_last(array: np.ndarray, count: int) -> np.ndarray:
    return array if count == 0 else np.concatenate([array, np.repeat(array[-1:], count, axis=0)])


def write_npz(
    cases: Cases,
    infos: Sequence[CaseInfo],
    folder: Path,
    frames: int,
    progress: ProgressCallback | None = None,
) -> list[Path]:
    """One npz per group of ``infos`` (module docs) under ``folder``; the paths. Cases whose
    mask is empty are left out, and a group without any writes no file."""
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    loaded = cases.load(infos, progress=progress)
    for group, members in itertools.groupby(loaded, key=lambda case: case.info.group):
        first = next(members)
        volume = first.volume.grey()
        labels = np.zeros(volume.shape, dtype=np.uint16)
        for label, case in enumerate(itertools.chain([first], members), start=1):
            labels[case.reference] = label
        if labels.max() < 256:
            labels = labels.astype(np.uint8)
        padding = clip_padding(labels, frames)
        mapping = intensity_mapping(volume, DEFAULT_CT_WINDOW)
        path = folder / f"{group}.npz"
        np.savez_compressed(
            path,
            imgs=_repeat_last(mapping.to_uint8(volume.array), padding),
            gts=_repeat_last(labels, padding),
            spacing=np.asarray(volume.spacing, dtype=np.float64),
        )
        paths.append(path)
    return paths


class MedSAM2Trainer(Trainer):
    """Write the npz cases, fine-tune from the current model, evaluate (module docs)."""

    def train(
        self,
        cases: Cases,
        out_dir: Path,
        *,
        progress: ProgressCallback,
        should_stop: Callable[[], bool],
    ) -> TrainResult:
        from .finetune import evaluate, finetune

        context = self.context
        start = context.current
        config = finetune_config(context.setting("MEDSAM2_TRAIN_CONFIG"))
        checkpoint = start.checkpoint or str(context.setting("MEDSAM2_CHECKPOINT") or "")
        if not checkpoint:
            raise TrainingError(
                "no MedSAM2 checkpoint to fine-tune from: the current model version has none "
                "and MEDSAM2_CHECKPOINT is not set"
            )
        train_infos, validation_infos = cases.split()
        if not train_infos:
            groups = len({info.group for info in validation_infos})
            raise TrainingError(
                f"no training cases: {cases.origin} export no accepted case in the train "
                f"split ({groups} validation cases)"
            )
        base = Path(context.local_file(checkpoint))
        count = len(cases.infos)
        train = write_npz(
            cases,
            train_infos,
            out_dir / "npz" / "train",
            config.num_frames,
            progress_part(progress, tail=len(validation_infos)),
        )
        validation = write_npz(
            cases,
            validation_infos,
            out_dir / "npz" / "validation",
            config.num_frames,
            progress_part(progress, offset=len(train_infos)),
        )
        result = finetune(
            base,
            train,
            out_dir / "medsam2.pt",
            config,
            progress=progress_part(progress, offset=count),
            should_stop=should_stop,
        )
        offset = count + result.steps
        after = evaluate(
            result.checkpoint, validation, config, progress=progress_part(progress, offset=offset)
        )
        before = (
            evaluate(base, validation, config)
            if config.eval_baseline and after.get("dice_mean") is not None
            else None
        )
        metrics: dict[str, Any] = {
            "backend": "medsam2",
            "config": config.name,
            "started_from": {
                "model_version": start.version,
                "name": start.name if start.version is not None else "MEDSAM2_CHECKPOINT",
            },
            "train": result.metrics(),
            "validation": after,
            "cases": {"train": len(train), "validation": len(validation)},
        }
        if before is not None:
            metrics["validation_before"] = before
        return TrainResult(
            checkpoint=result.checkpoint,
            backend=start.backend,
            name=f"MedSAM2 {context.label}",
            metrics=metrics,
        )
