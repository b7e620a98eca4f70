"""Training the project's model on its accepted masks, as a job on the ``train`` queue; promoting
a trained version to the project's active model.

When the project's current model is MedSAM2, the job fine-tunes it (``inference.finetuning``);
when it is LiteMedSAM, it fine-tunes its decoder and promotes the result only when it validates
better (``inference.litemedsam_tuning``); otherwise it trains the per-project learned model, as
follows (for the hybrid default, the learned draft becomes its classical part: the version's
backend is the hybrid, its file the draft model). Where the export holds lesions out for
validation, the new version is scored there against the round's model with the LiteMedSAM
tuning's gate (better by more than 0.01 mean Dice, box alone and with the slice range, no lesion
0.10 worse, at least three lesions): a version the gate refuses is kept with its reason and
never pre-annotates a round on its own. A manager asks for it after a round
(``training_request``); a worker runs it (``training_run``): every accepted task of the
project's rounds up to the chosen one gives one training case per lesion (the lesion's final
mask version, the one the reviewer accepted, as the reference; its key slice and box as the
prompt). The model file goes to the file storage
under ``models/<project>/``, and a new :class:`ModelVersion` names it; the next round opened
uses the project's active model, else its newest trained one that no gate refused
(``projects.services.round_open``); ``model_version_promote`` makes a version the active one.
"""

import logging
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Exists, OuterRef, Prefetch, QuerySet
from django.utils import timezone

from annotator import storage
from annotator.errors import Conflict, InvalidInput
from annotator.models import Lesion, MaskVersion, Volume
from annotator.services import mask_version_load
from annotator.volumes import volume_read
from inference.engine import EngineError, ImageVolume, LesionPrompt, key_slice_and_box
from inference.engine.base import SegmentationBackend, backend_path
from inference.engine.learned import MIN_VALIDATION_LESIONS
from inference.engine.litemedsam.validation import Decision
from inference.finetuning import Trained, finetune_start, medsam2_train
from inference.jobs import claim, fail, heartbeat, progress_writer, still_mine
from inference.litemedsam_tuning import (
    litemedsam_current,
    litemedsam_promote,
    litemedsam_train,
    tuning_cases,
)
from inference.models import ModelVersion, TrainingJob
from inference.services import project_window
from projects.access import require_role
from projects.audit import audit_record
from projects.exports import case_split
from projects.models import Project, Role, Round, Task

log = logging.getLogger(__name__)

TRAIN_QUEUE = "train"
LEARNED_BACKEND = "inference.engine.learned.LearnedBackend"
HYBRID_BACKEND = "inference.engine.hybrid.HybridBackend"
SEED = 0
ACTIVE = (TrainingJob.State.QUEUED, TrainingJob.State.RUNNING)


def training_request(*, round: Round, user: User) -> TrainingJob:
    """Queue training on the accepted tasks of ``round`` and the rounds before it (managers
    only); 409 while another training job of the project waits or runs."""
    from inference.tasks import run_training_job

    project = round.project
    require_role(user, project, Role.MANAGER)
    with transaction.atomic():
        type(project).objects.select_for_update().get(pk=project.pk)
        busy = TrainingJob.objects.filter(project=project, state__in=ACTIVE).first()
        if busy is not None:
            raise Conflict(
                f"training job {busy.pk} of this project is {busy.state}; wait for it to finish"
            )
        job = TrainingJob.objects.create(project=project, round=round, requested_by=user)
        transaction.on_commit(
            lambda: run_training_job.apply_async(kwargs={"job_id": job.pk}, queue=TRAIN_QUEUE)
        )
    return job


def model_version_promote(*, project: Project, version: ModelVersion, user: User) -> Project:
    """Make ``version`` (one of the project's own, or a site-wide one) the project's active model
    (managers): rounds opened from now on pre-annotate with it; the open round keeps its model.
    Recorded in the audit trail with the version it replaced."""
    require_role(user, project, Role.MANAGER)
    if version.project_id not in (None, project.pk):
        raise InvalidInput(f"model version {version.pk} belongs to another project")
    with transaction.atomic():
        project = type(project).objects.select_for_update().get(pk=project.pk)
        previous = project.active_model_version_id
        project.active_model_version = version
        project.save(update_fields=["active_model_version"])
        audit_record(
            project=project,
            actor=user,
            action="model.promoted",
            data={"model_version": version.pk, "name": version.name, "previous": previous},
        )
    return project


def training_lesions(round_: Round) -> QuerySet[Lesion]:
    """The lesions of the accepted tasks of ``round_``'s project, rounds up to ``round_``,
    that have a mask; each with its versions prefetched newest first."""
    return (
        Lesion.objects.filter(
            Exists(MaskVersion.objects.filter(lesion=OuterRef("pk"))),
            task__round__project_id=round_.project_id,
            task__round__number__lte=round_.number,
            task__state=Task.State.ACCEPTED,
        )
        .select_related("task__round__project", "task__series__volume", "task__series__study")
        .prefetch_related(
            Prefetch("mask_versions", queryset=MaskVersion.objects.order_by("-id")),
        )
        .order_by("task__series__volume__id", "task_id", "id")
    )


def training_run(*, job_id: int) -> TrainingJob | None:
    """Train, store the model file and record it as a new ModelVersion; a failure (no accepted
    masks, a broken volume) is written on the job with its reason.

    The project's current model decides what is trained: a MedSAM2 model is fine-tuned from its
    checkpoint (:mod:`inference.finetuning`), a LiteMedSAM one is fine-tuned and promoted only
    when it validates better (:mod:`inference.litemedsam_tuning`), anything else trains the
    learned model.

    Idempotent like ``segmentation_run``: a redelivered message for a finished job does nothing,
    and of two attempts only the latest claim records its model (the other's file is deleted).
    """
    job = claim(TrainingJob, job_id, reset={"progress_done": 0})
    if job is None:
        return None
    with heartbeat(job):  # while it trains, the job says its worker is alive
        return _training_attempt(job)


def _training_attempt(job: TrainingJob) -> TrainingJob:
    """One attempt at the job, which this process has claimed; the outcome goes on the job."""
    written: list[str] = []
    try:
        started = time.perf_counter()
        round_ = job.round
        with tempfile.TemporaryDirectory(prefix="annotator-train-") as tmp:
            start = finetune_start(round_)
            tuning = litemedsam_current(round_) if start is None else None
            if start is not None:
                trained = medsam2_train(job, start, Path(tmp))
            elif tuning is not None:
                trained = litemedsam_train(job, tuning, Path(tmp))
            else:
                trained = _train_learned(job, Path(tmp))
            if trained is None:  # failed with its reason
                job.refresh_from_db()
                return job
            key = (
                f"models/{round_.project.slug}/training-{job.pk}-{uuid.uuid4().hex[:8]}"
                f"{trained.file.suffix}"
            )
            with open(trained.file, "rb") as f:
                written.append(storage.save_file(key, f))
        seconds = time.perf_counter() - started
        rounds = list(
            Round.objects.filter(project_id=job.project_id, number__lte=round_.number).order_by(
                "number"
            )
        )
        metrics = {
            **trained.metrics,
            "seconds": round(seconds, 2),
            "rounds": [r.number for r in rounds],
        }
        with transaction.atomic():
            # Compare-and-set first, as in segmentation_run: only the latest claim records.
            if not still_mine(job).update(finished_at=timezone.now()):
                log.warning("training job %s: a later attempt owns it; model dropped", job.pk)
                storage.delete_quietly(written)
                job.refresh_from_db()
                return job
            version = ModelVersion.objects.create(
                project_id=job.project_id,
                name=trained.name,
                backend=trained.backend,
                checkpoint=written[0],
                metrics=metrics,
            )
            version.trained_from_rounds.set(rounds)
            if trained.promote:  # only what validated better than the current model
                litemedsam_promote(job, version)
            total = TrainingJob.objects.get(pk=job.pk).progress_total
            still_mine(job).update(
                state=TrainingJob.State.SUCCEEDED,
                result=version,
                progress_done=total,
                finished_at=timezone.now(),
            )
    except EngineError as exc:
        storage.delete_quietly(written)
        fail(job, str(exc))
    except SoftTimeLimitExceeded:
        storage.delete_quietly(written)
        fail(job, "the training ran past its time limit and was stopped")
    except Exception as exc:
        storage.delete_quietly(written)
        log.exception("training job %s failed", job.pk)
        fail(job, f"internal error: {type(exc).__name__}: {exc}")
    job.refresh_from_db()
    return job


def _train_learned(job: TrainingJob, tmp: Path) -> Trained | None:
    """The learned model on the final masks of the accepted lesions of the export's "train"
    split, scored on its "validation" split against the model the round pre-annotated with (Dice
    before and after, so that a manager sees whether the new model helps before making it
    active). When every case is in the validation split, it trains on all of them and says that
    nothing was held out. None when the job was failed (no case)."""
    from inference.engine.learned import train

    round_ = job.round
    lesions = list(training_lesions(round_))
    if not lesions:
        fail(
            job,
            f"no training cases: no accepted task of rounds 0..{round_.number} has a lesion "
            "with a mask",
        )
        return None
    split = {lesion.pk: case_split(lesion.task) for lesion in lesions}
    held_out = [lesion for lesion in lesions if split[lesion.pk] == "validation"]
    fitted = [lesion for lesion in lesions if split[lesion.pk] != "validation"]
    note = None
    if not fitted:
        fitted, held_out = lesions, []
        note = (
            "nothing held out: every accepted case is in the validation split, so the model was "
            "trained on all of them"
        )
    elif not held_out:
        note = "no validation cases: no accepted case is in the validation split"
    still_mine(job).update(progress_total=len(fitted) + len(held_out) + 1)
    stats: dict[str, Any] = {"sources": {}, "skipped": []}
    model = train(_cases(job, fitted, stats), seed=SEED)
    local = tmp / "model.joblib"
    model.save(local)
    host = learned_host(round_)
    validation, before, decision = _validate_learned(
        job, round_, held_out, host, model, offset=len(fitted)
    )
    if note:
        validation["note"] = note
    gated: dict[str, Any] = {}
    if decision is not None:
        gated["gate"] = decision.metrics()
        if not decision.promote:  # never used for a round on its own (round_open)
            gated["promotion"] = {"promoted": False, "reason": decision.reason}
    return Trained(
        file=local,
        backend=host,
        name=f"learned r{round_.number} (job {job.pk})",
        metrics={
            **model.meta,
            "tasks": len({lesion.task_id for lesion in fitted}),
            **stats,
            "validation": validation,
            **({"validation_before": before} if before is not None else {}),
            **gated,
        },
    )


def learned_host(round_: Round) -> str:
    """The backend a learned draft is trained for: the round's (its model version's, else the
    site's) when that is the hybrid default, whose classical part the draft becomes; otherwise
    the learned backend alone."""
    current = round_.model_version
    name = current.backend if current is not None else settings.INFERENCE_BACKEND
    return name if backend_path(name) == HYBRID_BACKEND else LEARNED_BACKEND


def _with_draft(host: str, model: Any) -> SegmentationBackend:
    """``host`` (module docs) with a loaded learned draft."""
    from inference.engine.hybrid import HybridBackend
    from inference.engine.learned import LearnedBackend

    if host == LEARNED_BACKEND:
        return LearnedBackend(model=model)
    return HybridBackend(draft_model=model)


def _validate_learned(
    job: TrainingJob,
    round_: Round,
    lesions: list[Lesion],
    host: str,
    model: Any,
    *,
    offset: int,
) -> tuple[dict[str, Any], dict[str, Any] | None, Decision | None]:
    """Dice of the new model and of the round's own model (``host`` untrained when it had none,
    or had another backend) on held-out lesions, box-prompted as in pre-annotation (and with
    the slice range, for the gate); the gate's decision (``validation.gate``): the version is
    used only when it validates better (module docs)."""
    from inference.engine.litemedsam.validation import gate, validate
    from inference.services import load_backend

    if not lesions:
        return {"cases": 0, "lesions": 0, "dice_mean": None}, None, None
    current = round_.model_version
    if current is not None and current.backend == host:
        baseline = load_backend(current.backend, current.checkpoint)
        baseline_name = current.name
    else:
        baseline, baseline_name = _with_draft(host, None), "untrained default"
    stats: dict[str, Any] = {"sources": {}, "skipped": []}
    scores = validate(
        {"after": _with_draft(host, model), "before": baseline},
        tuning_cases(job, lesions, stats, progress_writer(job, offset=offset, tail=1)),
    )

    def summary(found: dict[str, float]) -> dict[str, Any]:
        rounded = {name: round(value, 4) for name, value in found.items()}
        return {
            "cases": len({lesion.task_id for lesion in lesions}),
            "lesions": len(rounded),
            "dice_mean": round(float(np.mean(list(rounded.values()))), 4) if rounded else None,
            "dice": rounded,
        }

    decision = gate(scores["before"], scores["after"], min_lesions=MIN_VALIDATION_LESIONS)
    before = {**summary(scores["before"].box), "model": baseline_name}
    return summary(scores["after"].box), before, decision


def _cases(
    job: TrainingJob,
    lesions: list[Lesion],
    stats: dict[str, Any],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[Any]:
    """One case per lesion (its final mask, its box prompt), read lazily: one volume in memory
    at a time. ``progress``: (done, total), by default the job's training progress."""
    from inference.engine.learned import TrainingCase

    progress = progress or progress_writer(job, tail=1)
    cached: tuple[int, ImageVolume] | None = None
    for done, lesion in enumerate(lesions, start=1):
        final = next(iter(lesion.mask_versions.all()))
        reference = mask_version_load(final).astype(bool, copy=False)
        volume = lesion.task.series.volume
        if not reference.any():
            stats["skipped"].append({"lesion": lesion.pk, "reason": "empty mask"})
        else:
            if cached is None or cached[0] != volume.pk:
                cached = (volume.pk, _engine_volume(volume, lesion))
            if lesion.key_slice is not None and lesion.box is not None:
                key_slice, box = int(lesion.key_slice), tuple(int(v) for v in lesion.box)
            else:  # drawn by hand without a box: prompt with the mask's largest slice
                key_slice, box = key_slice_and_box(reference)
            prompt = LesionPrompt(str(lesion.pk), key_slice, box)  # type: ignore[arg-type]
            stats["sources"][final.source] = stats["sources"].get(final.source, 0) + 1
            # Cases of one patient are held out together when training validates its choices.
            study = lesion.task.series.study
            patient = study.patient_id or f"study {study.pk}"
            yield TrainingCase(cached[1], prompt, reference, patient=patient)
        progress(done, len(lesions))


def _engine_volume(volume: Volume, lesion: Lesion) -> ImageVolume:
    """The volume as the segmentation jobs see it (same window), so the model learns on the
    inputs it will meet (colour where the series has it)."""
    image = volume_read(volume, colour=True)
    return ImageVolume(
        array=sitk.GetArrayFromImage(image),
        spacing=tuple(image.GetSpacing()),
        modality=volume.series.modality,
        window=project_window(lesion.task.round.project),
    )
