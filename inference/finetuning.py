"""Fine-tuning the project's MedSAM2 model as a training job (the ``train`` queue).

:func:`inference.training.training_run` comes here when the project's current model is a
MedSAM2 one (:func:`finetune_start`): every round 0..N of the project is exported as MedSAM2
npz (``projects.exports.export_round_files``), the model continues from the current version's
checkpoint on the "train" cases (:func:`inference.engine.medsam2.finetune.finetune`, the
published recipe), and is evaluated on the "validation" cases (Dice of box-prompted
propagation, before and after). The result becomes a new ModelVersion; a manager promotes it
(``model_version_promote``) and the next round pre-annotates with it.

Settings: ``MEDSAM2_TRAIN_CONFIG`` (environment), "recipe" (default: the published recipe, for
the GPU workers of the ``train`` queue) or "smoke" (two steps on 2-frame clips of small crops,
batch 1: seconds to minutes on a CPU; the tests use it). The device is ``MEDSAM2_DEVICE``, else
CUDA when available.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils.module_loading import import_string

from inference.engine import EngineError
from inference.engine.base import backend_path
from inference.engine.medsam2 import MedSAM2Backend
from inference.jobs import fail, progress_writer
from inference.models import ModelVersion, TrainingJob
from projects.models import Round

if TYPE_CHECKING:
    from inference.engine.medsam2.finetune import FinetuneConfig

log = logging.getLogger(__name__)

MEDSAM2_BACKEND = "inference.engine.medsam2.MedSAM2Backend"
NPZ_FORMAT = "medsam2-npz"


def is_medsam2(backend: str) -> bool:
    """Whether the dotted path (or alias) names the MedSAM2 backend or a subclass of it."""
    path = backend_path(backend)
    try:
        cls = import_string(path)
    except ImportError:
        return False
    return isinstance(cls, type) and issubclass(cls, MedSAM2Backend)


@dataclass(frozen=True)
class Start:
    """What a MedSAM2 fine-tune continues from: a ModelVersion (None: the site's default
    MedSAM2 backend) and its checkpoint (a storage key or a path on the workers)."""

    version: ModelVersion | None
    backend: str
    checkpoint: str


def finetune_start(round_: Round) -> Start | None:
    """The MedSAM2 model a training job on ``round_`` continues from; None when the project's
    current model is not MedSAM2 (the learned model is trained instead).

    The current model is the project's active one (the last a manager promoted: the recipe
    continues from the last checkpoint), else the round's, else the site's default backend."""
    project = round_.project
    version = project.active_model_version or round_.model_version
    backend = version.backend if version is not None else settings.INFERENCE_BACKEND
    if not is_medsam2(backend):
        return None
    checkpoint = (version.checkpoint if version is not None else "") or os.environ.get(
        "MEDSAM2_CHECKPOINT", ""
    )
    return Start(version=version, backend=backend, checkpoint=checkpoint)


def finetune_config() -> FinetuneConfig:
    """The configuration ``MEDSAM2_TRAIN_CONFIG`` names ("recipe" or "smoke")."""
    from inference.engine.medsam2.finetune import CONFIGS

    name = str(getattr(settings, "MEDSAM2_TRAIN_CONFIG", "recipe") or "recipe").lower()
    if name not in CONFIGS:
        raise EngineError(
            f"MEDSAM2_TRAIN_CONFIG is {name!r}: use one of {', '.join(sorted(CONFIGS))}"
        )
    return CONFIGS[name]


def export_cases(round_: Round, out: Path) -> tuple[list[Path], list[Path], dict[str, Any]]:
    """Rounds 0..``round_.number`` of the project as MedSAM2 npz files under ``out``: the
    "train" cases, the "validation" cases and what was exported per round.

    The one place that knows the export's contract (``export_round_files(round_, out,
    formats=...)`` writing ``out/medsam2/<case>.npz`` and returning a manifest whose cases carry
    ``case`` and ``split``)."""
    from projects.exports import export_round_files

    train: list[Path] = []
    validation: list[Path] = []
    per_round: dict[str, Any] = {}
    rounds = Round.objects.filter(project_id=round_.project_id, number__lte=round_.number)
    for r in rounds.order_by("number"):
        folder = out / f"round-{r.number}"
        manifest = export_round_files(r, folder, formats=(NPZ_FORMAT,))
        counts = {"train": 0, "validation": 0, "missing": 0}
        for case in manifest["cases"]:
            path = folder / "medsam2" / f"{case['case']}.npz"
            if not path.exists():
                counts["missing"] += 1
                continue
            split = "validation" if case.get("split") == "validation" else "train"
            (validation if split == "validation" else train).append(path)
            counts[split] += 1
        per_round[str(r.number)] = counts
    return train, validation, per_round


@dataclass
class Trained:
    """A model file written by a training run, and what to record about it."""

    file: Path
    backend: str
    name: str
    metrics: dict[str, Any]
    promote: bool = False  # validated better than the current model: promote it at once


def medsam2_train(job: TrainingJob, start: Start, tmp: Path) -> Trained | None:
    """Export, fine-tune from ``start``, evaluate; None when the job was failed with the reason
    (nothing to start from, no case). A :class:`FinetuneError` (no usable case) propagates."""
    from inference.engine.medsam2.finetune import evaluate, finetune
    from inference.services import checkpoint_path

    round_ = job.round
    config = finetune_config()
    if not start.checkpoint:
        fail(
            job,
            "no MedSAM2 checkpoint to fine-tune from: the current model version has none and "
            "MEDSAM2_CHECKPOINT is not set",
        )
        return None
    base = Path(checkpoint_path(start.checkpoint))
    train, validation, exported = export_cases(round_, tmp / "export")
    if not train:
        fail(
            job,
            f"no training cases: rounds 0..{round_.number} export no accepted case in the "
            f"train split ({len(validation)} validation cases)",
        )
        return None
    result = finetune(
        base, train, tmp / "medsam2.pt", config, progress=progress_writer(job, tail=1)
    )
    offset = result.steps
    after = evaluate(
        result.checkpoint, validation, config, progress=progress_writer(job, offset=offset, tail=1)
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
            "model_version": start.version.pk if start.version else None,
            "name": start.version.name if start.version else "MEDSAM2_CHECKPOINT",
        },
        "train": result.metrics(),
        "validation": after,
        "exported": exported,
        "cases": {"train": len(train), "validation": len(validation)},
    }
    if before is not None:
        metrics["validation_before"] = before
    return Trained(
        file=result.checkpoint,
        backend=start.backend,
        name=f"MedSAM2 r{round_.number} (job {job.pk})",
        metrics=metrics,
    )
