"""Fine-tuning a project's LiteMedSAM model as a training job (the ``train`` queue), promoted
automatically only when it validates better than the model it would replace.

:func:`inference.training.training_run` comes here when the project's current model (its
active one, else the round's, else the site's default backend) is LiteMedSAM: the backend class
is :class:`LiteMedSAMBackend` or a subclass, or declares ``tunes_litemedsam = True`` (a backend
built around LiteMedSAM that takes the tuned file through its ``checkpoint`` option).

* Cases: one per lesion of the accepted tasks of rounds 0..N (its final mask as the reference,
  its key slice and box as the prompt), read one volume at a time.
* Split by patient (a patient's cases are never on both sides): the export's split
  (``projects.exports.case_split``, a stable hash of the patient); when that holds out nobody
  or everybody and there are two patients or more, the patients first in the same hash order
  are held out instead (20 %, at least one).
* Training: the base prompt encoder and mask decoder on the train side's lesion slices
  (:mod:`inference.engine.litemedsam.finetune`), always from the base checkpoint on every
  accepted mask so far, so a refused version never compounds into the next one.
* Validation: the current model and the tuned one on the held-out lesions, box alone and box
  with the slice range (:mod:`inference.engine.litemedsam.validation`); the gate's verdict and
  its reason go into the version's metrics (``promotion``). Promoted versions become the
  project's active model at once (audited as an automatic ``model.promoted``); refused ones
  stay for a manager to look at and are never picked by ``round_open`` on their own.

Settings (environment when the settings module lacks them): ``LITEMEDSAM_TUNE_STEPS`` (200),
``LITEMEDSAM_TUNE_BATCH`` (2), ``LITEMEDSAM_TUNE_LR`` (5e-5), ``LITEMEDSAM_TUNE_SECONDS``
(none: a time budget that stops training early), and the backend's own ``LITEMEDSAM_DEVICE``
and ``LITEMEDSAM_EMBEDDINGS_DIR`` (embeddings shared with the workers that pre-encode volumes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from annotator.models import Lesion
from inference.engine import EngineError
from inference.engine.base import backend_path
from inference.engine.litemedsam import LiteMedSAMBackend
from inference.engine.litemedsam.finetune import TuneConfig, TuningCase
from inference.finetuning import Trained
from inference.jobs import fail, progress_writer, still_mine
from inference.models import ModelVersion, TrainingJob
from projects.audit import audit_record
from projects.exports import VALIDATION_PERCENT, case_split
from projects.models import Project, Round

log = logging.getLogger(__name__)

LITEMEDSAM_BACKEND = "inference.engine.litemedsam.LiteMedSAMBackend"


def tunes_litemedsam(backend: str) -> bool:
    """Whether the dotted path (or alias) names a backend whose model is LiteMedSAM's: the
    class or a subclass, or one that declares ``tunes_litemedsam = True``."""
    path = backend_path(backend)
    try:
        cls = import_string(path)
    except ImportError:
        return False
    if not isinstance(cls, type):
        return False
    return issubclass(cls, LiteMedSAMBackend) or getattr(cls, "tunes_litemedsam", False) is True


@dataclass(frozen=True)
class Current:
    """The LiteMedSAM model a project pre-annotates with now: a ModelVersion (None: the site's
    default backend) and its backend path."""

    version: ModelVersion | None
    backend: str

    @property
    def name(self) -> str:
        return self.version.name if self.version is not None else f"site default ({self.backend})"


def litemedsam_current(round_: Round) -> Current | None:
    """The project's current model when it is LiteMedSAM (module docs), else None."""
    version = round_.project.active_model_version or round_.model_version
    backend = version.backend if version is not None else settings.INFERENCE_BACKEND
    return Current(version, backend) if tunes_litemedsam(backend) else None


def _setting(name: str, default: float, cast: Callable[[str], float]) -> float:
    raw = getattr(settings, name, None)
    if raw is None:
        raw = os.environ.get(name, "").strip() or None
    if raw is None:
        return default
    try:
        return cast(str(raw))
    except ValueError as exc:
        raise EngineError(f"{name}={raw!r} is not a number") from exc


def tune_config() -> TuneConfig:
    """The :class:`TuneConfig` the settings name (module docs); a bad value is an EngineError
    that names it."""
    seconds = _setting("LITEMEDSAM_TUNE_SECONDS", 0, float)
    return TuneConfig(
        steps=int(_setting("LITEMEDSAM_TUNE_STEPS", TuneConfig.steps, int)),
        batch=int(_setting("LITEMEDSAM_TUNE_BATCH", TuneConfig.batch, int)),
        lr=_setting("LITEMEDSAM_TUNE_LR", TuneConfig.lr, float),
        max_seconds=seconds or None,
    )


def _patient_key(lesion: Lesion) -> str:
    """The patient as ``case_split`` hashes it (the study when the patient is unknown)."""
    study = lesion.task.series.study
    return (
        f"patient:{study.patient_id}" if study.patient_id else f"study:{study.study_instance_uid}"
    )


def split_by_patient(lesions: list[Lesion]) -> tuple[list[Lesion], list[Lesion], str]:
    """(train, validation, how it was split): never a patient on both sides (module docs)."""
    validation = [lesion for lesion in lesions if case_split(lesion.task) == "validation"]
    train = [lesion for lesion in lesions if case_split(lesion.task) != "validation"]
    if train and validation:
        return train, validation, "the export's split, by patient"
    patients = sorted(
        {_patient_key(lesion) for lesion in lesions},
        key=lambda key: hashlib.sha256(key.encode()).hexdigest(),
    )
    if len(patients) < 2:
        return lesions, [], "one patient: nothing can be held out by patient"
    count = min(len(patients) - 1, max(1, round(len(patients) * VALIDATION_PERCENT / 100)))
    held = set(patients[:count])
    return (
        [lesion for lesion in lesions if _patient_key(lesion) not in held],
        [lesion for lesion in lesions if _patient_key(lesion) in held],
        f"by patient: the export's split holds out {'everybody' if validation else 'nobody'}, "
        f"so the first {count} of {len(patients)} patients in its hash order are held out",
    )


def _should_stop(job: TrainingJob, every: float = 10.0) -> Callable[[], bool]:
    """True once another attempt owns the job (checked at most every ``every`` seconds)."""
    last = time.monotonic()
    lost = False

    def check() -> bool:
        nonlocal last, lost
        if not lost and time.monotonic() - last > every:
            last = time.monotonic()
            lost = not still_mine(job).exists()
        return lost

    return check


def tuning_cases(
    job: TrainingJob,
    lesions: list[Lesion],
    stats: dict[str, Any],
    progress: Callable[[int, int], None],
) -> Iterator[TuningCase]:
    """The lesions as tuning cases, one volume in memory at a time (``training._cases``)."""
    from inference.training import _cases  # training imports this module

    for case in _cases(job, lesions, stats, progress=progress):
        yield TuningCase(
            case.volume,
            case.reference,
            patient=case.patient,
            name=case.prompt.lesion_id,
            prompt=case.prompt,
        )


def litemedsam_train(job: TrainingJob, current: Current, tmp: Path) -> Trained | None:
    """Split, tune, validate against ``current`` and judge; None when the job was failed with
    the reason (no accepted lesion). The verdict is ``Trained.promote`` and the metrics'
    ``promotion``."""
    from inference.engine import load_backend as engine_load_backend
    from inference.engine.litemedsam.finetune import collect, finetune
    from inference.engine.litemedsam.validation import gate, validate
    from inference.services import load_backend
    from inference.training import training_lesions

    round_ = job.round
    lesions = list(training_lesions(round_))
    if not lesions:
        fail(
            job,
            f"no training cases: no accepted task of rounds 0..{round_.number} has a lesion "
            "with a mask",
        )
        return None
    config = tune_config()
    train, held_out, how = split_by_patient(lesions)
    steps = config.steps
    still_mine(job).update(progress_total=len(train) + steps + len(held_out) + 1)
    should_stop = _should_stop(job)
    stats: dict[str, Any] = {"sources": {}, "skipped": []}
    base = LiteMedSAMBackend()
    training = collect(
        base,
        tuning_cases(job, train, stats, progress_writer(job, tail=steps + len(held_out) + 1)),
        should_stop=should_stop,
    )
    try:
        result = finetune(
            training,
            tmp / "litemedsam-tuned.pt",
            config,
            backend=base,
            progress=progress_writer(job, offset=len(train), tail=len(held_out) + 1),
            should_stop=should_stop,
            metadata={"project": round_.project.slug, "rounds": round_.number, "job": job.pk},
        )
    finally:
        training.close()
    before_backend = load_backend(
        current.backend, current.version.checkpoint if current.version else ""
    )
    after_backend = engine_load_backend(current.backend, checkpoint=str(result.file))
    scores = validate(
        {"before": before_backend, "after": after_backend},
        tuning_cases(
            job,
            held_out,
            {"sources": {}, "skipped": []},
            progress_writer(job, offset=len(train) + steps, tail=1),
        ),
        should_stop=should_stop,
    )
    decision = gate(scores["before"], scores["after"])
    if not held_out:
        decision = dataclasses.replace(decision, reason=f"{decision.reason} ({how})")
    patients = {"train": len({_patient_key(x) for x in train})}
    patients["validation"] = len({_patient_key(x) for x in held_out})
    metrics: dict[str, Any] = {
        "backend": "litemedsam",
        "tuned_from": "LiteMedSAM base checkpoint (the image encoder is never tuned)",
        "compared_with": {
            "model_version": current.version.pk if current.version else None,
            "name": current.name,
        },
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
    return Trained(
        file=result.file,
        backend=current.backend,
        name=f"LiteMedSAM r{round_.number} (job {job.pk})",
        metrics=metrics,
        promote=decision.promote,
    )


def litemedsam_promote(job: TrainingJob, version: ModelVersion) -> bool:
    """Make ``version`` the project's active model, inside the caller's transaction, unless
    the project's model changed while it trained (then it stays unpromoted, and its metrics
    say why). Audited as an automatic ``model.promoted``."""
    project = Project.objects.select_for_update().get(pk=job.project_id)
    compared = version.metrics.get("compared_with", {}).get("model_version")
    now = project.active_model_version_id or job.round.model_version_id
    if now != compared:
        version.metrics["promotion"] = {
            **version.metrics.get("promotion", {}),
            "promoted": False,
            "reason": (
                f"the project's model changed while this one trained (validated against "
                f"{compared}, now {now}): promote it by hand after comparing"
            ),
        }
        version.save(update_fields=["metrics"])
        return False
    previous = project.active_model_version_id
    project.active_model_version = version
    project.save(update_fields=["active_model_version"])
    audit_record(
        project=project,
        action="model.promoted",
        data={
            "model_version": version.pk,
            "name": version.name,
            "previous": previous,
            "automatic": True,
            "reason": version.metrics.get("promotion", {}).get("reason", ""),
        },
    )
    return True
