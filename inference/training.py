"""The training job: a project's model trained on its accepted masks, as a job on the ``train``
queue; promoting a trained version to the project's active model.

A manager asks for it after a round (``training_request``); a worker runs it (``training_run``):
every accepted task of the project's rounds up to the chosen one gives one training case per
lesion (the lesion's final mask version, the one the reviewer accepted, as the reference; its
key slice and box as the prompt; its side of the export's split), collected once in the
engine's neutral form (:class:`inference.engine.training.Cases`, read lazily, one volume at a
time). The trainer of the project's current model (its active one, else the round's, else the
site's default backend) trains on them (:func:`inference.engine.trainers.trainer_for`: the
learned draft, LiteMedSAM's decoder tuning or MedSAM2's fine-tuning, each with its own split,
validation and gate). The model file goes to the file storage under ``models/<project>/``, and
a new :class:`ModelVersion` names it; a version whose trainer says it validated better than the
current model becomes the project's active model at once (``model_version_promote_validated``).
The next round opened uses the project's active model, else its newest trained one that no gate
refused (``projects.services.round_open``); ``model_version_promote`` makes a version the active
one.
"""

import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import SimpleITK as sitk
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Exists, OuterRef, Prefetch, QuerySet
from django.utils import timezone

from annotator.annotation.audit import audit_record
from annotator.annotation.services import mask_version_load
from annotator.core import storage
from annotator.core.errors import Conflict, InvalidInput
from annotator.imaging.storage_keys import model_key
from annotator.imaging.volumes import volume_read
from annotator.models import Lesion, MaskVersion, Volume
from inference.engine import EngineError, ImageVolume
from inference.engine.trainers import trainer_for
from inference.engine.training import CaseInfo, Cases, ModelRef, TrainingContext
from inference.jobs import (
    TRAINING_TASK,
    claim,
    fail,
    heartbeat,
    job_send,
    progress_writer,
    still_mine,
)
from inference.models import ModelVersion, TrainingJob
from inference.services import checkpoint_path, load_backend
from projects.access import require_role
from projects.exports import VALIDATION_PERCENT, case_id, case_split
from projects.models import Project, Role, Round, Task

log = logging.getLogger(__name__)

TRAIN_QUEUE = "train"
ACTIVE = (TrainingJob.State.QUEUED, TrainingJob.State.RUNNING)


def training_request(*, round: Round, user: User) -> TrainingJob:
    """Queue training on the accepted tasks of ``round`` and the rounds before it (managers
    only); 409 while another training job of the project waits or runs."""
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
        transaction.on_commit(lambda: job_send(TRAINING_TASK, job_id=job.pk, queue=TRAIN_QUEUE))
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


@dataclass(frozen=True)
class Current:
    """The model a project uses now: a ModelVersion (None: the site's default backend) and its
    backend path."""

    version: ModelVersion | None
    backend: str

    @property
    def name(self) -> str:
        return self.version.name if self.version is not None else f"site default ({self.backend})"

    def ref(self) -> ModelRef:
        """The model as the engine's trainers see it."""
        version = self.version
        return ModelRef(
            backend=self.backend,
            checkpoint=version.checkpoint if version is not None else "",
            name=self.name,
            version=version.pk if version is not None else None,
        )


def current_model(round_: Round) -> Current:
    """The model a training job on ``round_`` continues from or must beat: the project's
    active one (the last a manager promoted), else the round's, else the site's default."""
    version = round_.project.active_model_version or round_.model_version
    return Current(version, version.backend if version is not None else settings.INFERENCE_BACKEND)


def round_model(round_: Round) -> Current:
    """The model ``round_`` pre-annotated with (else the site's default backend)."""
    version = round_.model_version
    return Current(version, version.backend if version is not None else settings.INFERENCE_BACKEND)


def training_cases(round_: Round) -> Cases:
    """The accepted lesions of rounds 0..``round_.number`` (:func:`training_lesions`) as the
    engine's neutral cases: known at once, their volumes and masks read when a trainer iterates
    them."""
    lesions = list(training_lesions(round_))
    by_pk = {lesion.pk: lesion for lesion in lesions}
    infos = []
    for lesion in lesions:
        final = next(iter(lesion.mask_versions.all()))
        task, study = lesion.task, lesion.task.series.study
        key_slice, box = None, None
        if lesion.key_slice is not None and lesion.box is not None:
            x0, y0, x1, y1 = (int(v) for v in lesion.box)
            key_slice, box = int(lesion.key_slice), (x0, y0, x1, y1)
        infos.append(
            CaseInfo(
                lesion=lesion.pk,
                image=str(task.series.volume.pk),
                group=case_id(task),
                patient=(
                    f"patient:{study.patient_id}"
                    if study.patient_id
                    else f"study:{study.study_instance_uid}"
                ),
                split="validation" if case_split(task) == "validation" else "train",
                source=final.source,
                key_slice=key_slice,
                box=box,
            )
        )

    def read_mask(info: CaseInfo) -> Any:
        return mask_version_load(next(iter(by_pk[int(info.lesion)].mask_versions.all())))

    def read_image(info: CaseInfo) -> ImageVolume:
        lesion = by_pk[int(info.lesion)]
        return _engine_volume(lesion.task.series.volume, lesion)

    return Cases(
        infos,
        read_image=read_image,
        read_mask=read_mask,
        origin=f"rounds 0..{round_.number}",
        validation_percent=VALIDATION_PERCENT,
    )


def training_context(job: TrainingJob) -> TrainingContext:
    """What the job's trainer may ask of the platform (the current model, the round's, the
    site's settings, model files)."""
    round_ = job.round
    return TrainingContext(
        current=current_model(round_).ref(),
        round_model=round_model(round_).ref(),
        label=f"r{round_.number} (job {job.pk})",
        load_model=lambda ref: load_backend(ref.backend, ref.checkpoint),
        local_file=checkpoint_path,
        setting=lambda name: getattr(settings, name, None),
        metadata={"project": round_.project.slug, "rounds": round_.number, "job": job.pk},
    )


def training_run(*, job_id: int) -> TrainingJob | None:
    """Train, store the model file and record it as a new ModelVersion; a failure (no accepted
    masks, a broken volume, a trainer's reason) is written on the job.

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
        cases = training_cases(round_)
        if not cases.infos:
            fail(
                job,
                f"no training cases: no accepted task of rounds 0..{round_.number} has a lesion "
                "with a mask",
            )
            job.refresh_from_db()
            return job
        trainer = trainer_for(training_context(job))
        with tempfile.TemporaryDirectory(prefix="annotator-train-") as tmp:
            trained = trainer.train(
                cases,
                Path(tmp),
                progress=progress_writer(job, tail=1),
                should_stop=_should_stop(job),
            )
            key = model_key(round_.project.slug, job.pk, trained.checkpoint.suffix)
            with open(trained.checkpoint, "rb") as f:
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
                model_version_promote_validated(job, version)
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


def model_version_promote_validated(job: TrainingJob, version: ModelVersion) -> bool:
    """Make ``version``, which its trainer validated better than the project's model, the
    project's active model, inside the caller's transaction, unless the project's model changed
    while it trained (then it stays unpromoted, and its metrics say why). Audited as an
    automatic ``model.promoted``."""
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


def _engine_volume(volume: Volume, lesion: Lesion) -> ImageVolume:
    """The volume as the segmentation jobs see it (same window), so the model learns on the
    inputs it will meet (colour where the series has it)."""
    image = volume_read(volume, colour=True)
    return ImageVolume(
        array=sitk.GetArrayFromImage(image),
        spacing=tuple(image.GetSpacing()),
        modality=volume.series.modality,
        window=lesion.task.round.project.window_preset(),
    )
