"""LiteMedSAM's trainer: its decoder tuned on a project's accepted masks, promoted only when it
validates better than the model it would replace.

The training job comes here when the project's current model (its active one, else the
round's, else the site's default backend) is LiteMedSAM: :class:`.backend.LiteMedSAMBackend` or
a subclass (its ``trainer``), or a backend built around LiteMedSAM that takes the tuned file
through its ``checkpoint`` option and says so (``tunes_litemedsam = True``, and
``trainer = LiteMedSAMBackend.trainer``).

* Cases: one per lesion of the accepted tasks (its final mask as the reference, its key slice
  and box as the prompt), read one volume at a time.
* Split by patient (a patient's cases are never on both sides): the export's split (a stable
  hash of the patient); when that holds out nobody or everybody and there are two patients or
  more, the patients first in the same hash order are held out instead
  (``Cases.validation_percent``, at least one).
* Training: the base prompt encoder and mask decoder on the train side's lesion slices
  (:mod:`.finetune`), always from the base checkpoint on every accepted mask so far, so a
  refused version never compounds into the next one.
* Validation: the current model and the tuned one on the held-out lesions, box alone and box
  with the slice range (:mod:`..validation`); the gate's verdict and its reason go into the
  version's metrics (``promotion``) and :attr:`TrainResult.promote`.

Settings (the site's, else the environment): ``LITEMEDSAM_TUNE_STEPS`` (200),
``LITEMEDSAM_TUNE_BATCH`` (2), ``LITEMEDSAM_TUNE_LR`` (5e-5), ``LITEMEDSAM_TUNE_SECONDS``
(none: a time budget that stops training early), and the backend's own ``LITEMEDSAM_DEVICE``
and ``LITEMEDSAM_EMBEDDINGS_DIR`` (embeddings shared with the workers that pre-encode volumes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..base import ProgressCallback, backend_path, load_backend
from ..base import backend_class as _backend_class
from ..training import CaseInfo, Cases, Trainer, TrainingError, TrainResult
from ..training import progress_part as _part
from ..validation import gate, tuning_cases, validate
from .backend import LiteMedSAMBackend
from .finetune import TuneConfig, collect, finetune

__all__ = ["LiteMedSAMTrainer", "split_by_patient", "tune_config", "tunes_litemedsam"]


def tunes_litemedsam(backend: str) -> bool:
    """Whether the dotted path (or alias) names a backend whose model is LiteMedSAM's: the
    backend or a subclass, or one that declares
    ``tunes_litemedsam = True``."""
    cls = _backend_class(backend_path(backend))
    if cls is None:
        return False
    return issubclass(cls, LiteMedSAMBackend) or getattr(cls, "tunes_litemedsam", False) is True


def _setting(
    setting: Callable[[str], object], name: str, default: float, cast: Callable[[str], float]
) -> float:
    raw = setting(name)
    if raw is None:
        raw = os.environ.get(name, "").strip() or None
    if raw is None:
        return default
    try:
        return cast(str(raw))
    except ValueError as exc:
        raise TrainingError(f"{name}={raw!r} is not a number") from exc


def tune_config(setting: Callable[[str], object]) -> TuneConfig:
    """The :class:`TuneConfig` the settings name (module docs); a bad value is a
    :class:`TrainingError` that names it."""
    seconds = _setting(setting, "LITEMEDSAM_TUNE_SECONDS", 0, float)
    return TuneConfig(
        steps=int(_setting(setting, "LITEMEDSAM_TUNE_STEPS", TuneConfig.steps, int)),
        batch=int(_setting(setting, "LITEMEDSAM_TUNE_BATCH", TuneConfig.batch, int)),
        lr=_setting(setting, "LITEMEDSAM_TUNE_LR", TuneConfig.lr, float),
        max_seconds=seconds or None,
    )


def split_by_patient(
    infos: list[CaseInfo], validation_percent: int
) -> tuple[list[CaseInfo], list[CaseInfo], str]:
    """(train, validation, how it was split): never a patient on both sides (module docs)."""
    validation = [info for info in infos if info.split == "validation"]
    train = [info for info in infos if info.split != "validation"]
    if train and validation:
        return train, validation, "the export's split, by patient"
    patients = sorted(
        {info.patient for info in infos},
        key=lambda key: hashlib.sha256(key.encode()).hexdigest(),
    )
    if len(patients) < 2:
        return infos, [], "one patient: nothing can be held out by patient"
    count = min(len(patients) - 1, max(1, round(len(patients) * validation_percent / 100)))
    held = set(patients[:count])
    return (
        [info for info in infos if info.patient not in held],
        [info for info in infos if info.patient in held],
        f"by patient: the export's split holds out {'everybody' if validation else 'nobody'}, "
        f"so the first {count} of {len(patients)} patients in its hash order are held out",
    )


class LiteMedSAMTrainer(Trainer):
    """Split, tune, validate against ``context.current`` and judge (module docs)."""

    def train(
        self,
        cases: Cases,
        out_dir: Path,
        *,
        progress: ProgressCallback,
        should_stop: Callable[[], bool],
    ) -> TrainResult:
        current = self.context.current
        config = tune_config(self.context.setting)
        train, held_out, how = split_by_patient(list(cases.infos), cases.validation_percent)
        steps = config.steps
        progress(0, len(train) + steps + len(held_out))
        stats: dict[str, Any] = {"sources": {}, "skipped": []}
        base = LiteMedSAMBackend()
        training = collect(
            base,
            tuning_cases(
                cases.load(train, progress=_part(progress, tail=steps + len(held_out)), stats=stats)
            ),
            should_stop=should_stop,
        )
        try:
            result = finetune(
                training,
                out_dir / "litemedsam-tuned.pt",
                config,
                backend=base,
                progress=_part(progress, offset=len(train), tail=len(held_out)),
                should_stop=should_stop,
                metadata=dict(self.context.metadata),
            )
        finally:
            training.close()
        before_backend = self.context.load_model(current)
        after_backend = load_backend(current.backend, checkpoint=str(result.file))
        scores = validate(
            {"before": before_backend, "after": after_backend},
            tuning_cases(cases.load(held_out, progress=_part(progress, offset=len(train) + steps))),
            should_stop=should_stop,
        )
        decision = gate(scores["before"], scores["after"])
        if not held_out:
            decision = dataclasses.replace(decision, reason=f"{decision.reason} ({how})")
        patients = {"train": len({x.patient for x in train})}
        patients["validation"] = len({x.patient for x in held_out})
        metrics: dict[str, Any] = {
            "backend": "litemedsam",
            "tuned_from": "LiteMedSAM base checkpoint (the image encoder is never tuned)",
            "compared_with": {"model_version": current.version, "name": current.name},
            "train": {**result.metrics(), "encoded_slices": training.encoded},
            "validation": scores["after"].metrics(),
            "validation_before": scores["before"].metrics(),
            "cases": {"train": len(train), "validation": len(held_out)},
            "patients": patients,
            "split": how,
            "sources": stats["sources"],
            "skipped": stats["skipped"] + training.skipped,
            "promotion": decision.metrics(),
        }
        return TrainResult(
            checkpoint=result.file,
            backend=current.backend,
            name=f"LiteMedSAM {self.context.label}",
            metrics=metrics,
            promote=decision.promote,
        )
