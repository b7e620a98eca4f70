"""Inference jobs: requested by the API, run by workers, every outcome recorded on the job."""

import functools
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from annotator.annotation.services import (
    Author,
    check_editable_by,
    check_prompt,
    latest_mask_version,
    mask_version_load,
    mask_version_save,
)
from annotator.core import queues
from annotator.core.errors import InvalidInput
from annotator.imaging.volumes import volume_read
from annotator.models import Lesion, MaskVersion
from inference.engine import EngineError, ImageVolume, LesionPrompt, SegmentationBackend
from inference.engine import load_backend as engine_load_backend
from inference.jobs import (
    SEGMENTATION_TASK,
    claim,
    fail,
    heartbeat,
    job_send,
    progress_writer,
    still_mine,
    succeed,
)
from inference.models import InferenceJob

log = logging.getLogger(__name__)


@functools.cache
def load_backend(dotted_path: str, checkpoint: str = "") -> SegmentationBackend:
    """One backend per model per worker process: models are loaded once, not per job."""
    return engine_load_backend(dotted_path, checkpoint=checkpoint_path(checkpoint) or None)


def checkpoint_path(checkpoint: str) -> str:
    """A ModelVersion's checkpoint as a local path: an absolute path on the workers is used as
    it is; anything else is a key in the file storage (models trained here), copied once into
    a local cache where the storage is remote (S3). Keys are never reused, so a cached copy
    never goes stale."""
    if not checkpoint or os.path.isabs(checkpoint):
        return checkpoint
    try:
        return default_storage.path(checkpoint)
    except NotImplementedError:
        pass
    local = Path(tempfile.gettempdir()) / "annotator-models" / checkpoint
    if not local.exists():
        local.parent.mkdir(parents=True, exist_ok=True)
        partial = local.with_name(f"{local.name}.{os.getpid()}.part")
        with default_storage.open(checkpoint, "rb") as src, open(partial, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(partial, local)  # atomic: another process never reads half a file
    return str(local)


MAX_POINTS = 32  # per kind (positive, negative): clicks, not a painted region


def segmentation_request(
    *,
    lesion: Lesion,
    user: User,
    key_slice: int | None = None,
    box: list[int] | None = None,
    positive_points: list[list[int]] | None = None,
    negative_points: list[list[int]] | None = None,
    mask_slice: int | None = None,
    z_range: list[int] | None = None,
) -> InferenceJob:
    """Record the prompt on the lesion and queue a job that segments it in 3D.

    Beyond the box: click points ``[x, y, z]``, and a mask prompt ``mask_slice`` = a slice
    whose mask, as saved in the lesion's latest version, the model propagates from ("propagate
    my correction": the viewer saves the corrected mask first). Without a box, a mask prompt's
    slice and the box around its mask stand in. ``z_range`` [z0, z1] bounds the slices the
    model may change: the others keep the latest version's mask (see ``segmentation_run``).
    """
    task = lesion.task
    check_editable_by(task, user)
    volume = task.series.volume
    depth = volume.shape_zyx[0]
    extra: dict[str, Any] = {}
    for name, points in (
        ("positive_points", positive_points),
        ("negative_points", negative_points),
    ):
        if points:
            extra[name] = _check_points(name, points, volume.shape_zyx)
    base = latest_mask_version(lesion) if mask_slice is not None or z_range else None
    if mask_slice is not None:
        if not 0 <= mask_slice < depth:
            raise InvalidInput(
                f"mask_slice {mask_slice} is outside 0..{depth - 1}",
                fields={"mask_slice": [f"must be in 0..{depth - 1}"]},
            )
        if base is None:
            raise InvalidInput(
                "mask_slice needs a saved mask: save the corrected mask first",
                fields={"mask_slice": ["the lesion has no saved mask"]},
            )
        given = mask_version_load(base)[mask_slice]
        if not given.any():
            raise InvalidInput(
                f"slice {mask_slice} of the latest mask (version {base.pk}) is empty",
                fields={"mask_slice": [f"slice {mask_slice} of the saved mask is empty"]},
            )
        extra["mask_slice"] = mask_slice
        if key_slice is None and box is None:
            rows, cols = np.nonzero(given)
            key_slice = mask_slice
            box = [int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())]
    if key_slice is None or box is None:
        missing = [n for n, v in (("key_slice", key_slice), ("box", box)) if v is None]
        raise InvalidInput(
            "a prompt needs a key_slice and a box (or a mask_slice to take them from)",
            fields={name: ["required without mask_slice"] for name in missing},
        )
    box = check_prompt(volume, key_slice, box)
    if z_range:
        extra["z_range"] = _check_z_range(z_range, depth, key_slice, extra)
    if base is not None:
        extra["mask_version"] = base.pk
    with transaction.atomic():
        lesion.key_slice, lesion.box = key_slice, box
        lesion.save(update_fields=["key_slice", "box"])
        return segmentation_enqueue(lesion=lesion, user=user, queue=queues.INTERACTIVE, extra=extra)


def _check_points(
    name: str, points: list[list[int]], shape: tuple[int, int, int]
) -> list[list[int]]:
    depth, height, width = shape
    if len(points) > MAX_POINTS:
        raise InvalidInput(
            f"{name}: at most {MAX_POINTS} points", fields={name: [f"at most {MAX_POINTS}"]}
        )
    out = []
    for point in points:
        try:
            x, y, z = (int(v) for v in point)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(
                f"{name}: {point!r} is not [x, y, z]", fields={name: ["points are [x, y, z]"]}
            ) from exc
        if not (0 <= x < width and 0 <= y < height and 0 <= z < depth):
            raise InvalidInput(
                f"{name}: point {[x, y, z]} lies outside the volume of {width}x{height}x{depth} "
                "voxels (x, y, z)",
                fields={name: [f"{[x, y, z]} is outside the volume"]},
            )
        out.append([x, y, z])
    return out


def _check_z_range(
    z_range: list[int], depth: int, key_slice: int, extra: dict[str, Any]
) -> list[int]:
    if len(z_range) != 2 or not 0 <= z_range[0] <= z_range[1] < depth:
        raise InvalidInput(
            f"z_range {z_range} must be [z0, z1] with 0 <= z0 <= z1 < {depth}",
            fields={"z_range": [f"[z0, z1] within 0..{depth - 1}"]},
        )
    z0, z1 = int(z_range[0]), int(z_range[1])
    prompted = {key_slice, *([extra["mask_slice"]] if "mask_slice" in extra else [])}
    prompted |= {
        p[2] for kind in ("positive_points", "negative_points") for p in extra.get(kind, [])
    }
    outside = sorted(z for z in prompted if not z0 <= z <= z1)
    if outside:
        raise InvalidInput(
            f"prompted slices {outside} lie outside z_range {[z0, z1]}",
            fields={"z_range": [f"must include the prompted slices {outside}"]},
        )
    return [z0, z1]


def segmentation_enqueue(
    *, lesion: Lesion, user: User | None, queue: str, extra: dict[str, Any] | None = None
) -> InferenceJob:
    """Create a job for the lesion's recorded prompt and send it to ``queue`` after commit.

    The lesion must have its key slice and box; the caller checks who may ask. ``extra``: the
    checked optional prompt fields (points, ``mask_slice``, ``z_range``, ``mask_version``)
    recorded on the job with the box.
    """
    if lesion.key_slice is None or lesion.box is None:
        raise InvalidInput(f"lesion {lesion.pk} has no prompt (key slice and box) to segment")
    with transaction.atomic():
        model_version = lesion.task.round.model_version
        job = InferenceJob.objects.create(
            lesion=lesion,
            prompt={"key_slice": lesion.key_slice, "box": list(lesion.box), **(extra or {})},
            backend=model_version.backend if model_version else settings.INFERENCE_BACKEND,
            model_version=model_version,
            queue=queue,
            requested_by=user,
        )
        transaction.on_commit(lambda: job_send(SEGMENTATION_TASK, job_id=job.pk, queue=job.queue))
    return job


def segmentation_run(*, job_id: int) -> InferenceJob | None:
    """Run a segmentation job to the end; a failure is written on the job, never swallowed.

    Idempotent: a redelivered message for a finished job, or for one a live worker still runs,
    does nothing, and of two attempts on the same job only the latest claim saves its result
    (the other's is dropped).
    """
    job = claim(InferenceJob, job_id)
    if job is None:
        return None
    with heartbeat(job):  # while it runs, the job says its worker is alive
        _segment(job)
    job.refresh_from_db()
    return job


def _segment(job: InferenceJob) -> None:
    """One attempt at the job, which this process has claimed; the outcome goes on the job."""
    timings: dict[str, Any] = {}
    try:
        started = time.perf_counter()
        assert job.started_at is not None
        timings["queued"] = (job.started_at - job.created).total_seconds()
        lesion = job.lesion
        volume = lesion.task.series.volume
        # A colour series goes to the engine in colour: each backend decides what to make of it.
        image = volume_read(volume, colour=True)
        engine_volume = ImageVolume(
            array=sitk.GetArrayFromImage(image),
            spacing=tuple(image.GetSpacing()),
            modality=volume.series.modality,
            window=lesion.task.round.project.window_preset(),
        )
        del image  # the engine has its own copy: a 256-slice CT is 128 MiB more otherwise
        prompt, base = _prompt(job)
        timings["load"] = time.perf_counter() - started

        backend = load_backend(
            job.backend, job.model_version.checkpoint if job.model_version else ""
        )
        result = backend.segment(engine_volume, [prompt], progress=progress_writer(job))
        timings["engine"] = result.timings
        saved = time.perf_counter()
        with transaction.atomic():
            # Compare-and-set first: it locks the row (PostgreSQL) or the database (SQLite)
            # until the mask version is saved, and fails when a later attempt claimed the job.
            if not still_mine(job).update(finished_at=timezone.now()):
                log.warning("inference job %s: a later attempt owns it; result dropped", job.pk)
                return
            if job.queue == queues.BATCH and lesion.mask_versions.exists():
                still_mine(job).update(
                    state=InferenceJob.State.FAILED,
                    error="skipped: the lesion got a mask while the pre-annotation job waited",
                )
                return
            version = mask_version_save(
                lesion=lesion,
                mask=_keep_human_slices(result.masks[prompt.lesion_id], prompt, base),
                source="model",
                author=Author(model=job.model_version, backend=job.backend),
            )
            timings["save"] = time.perf_counter() - saved
            timings["total"] = time.perf_counter() - started
            succeed(job, result=version, timings=timings)
    except EngineError as exc:
        fail(job, str(exc))
    except (Lesion.DoesNotExist, MaskVersion.DoesNotExist):
        fail(job, "the lesion was deleted while the job ran")
    except SoftTimeLimitExceeded:
        fail(job, "the job ran past its time limit and was stopped")
    except Exception as exc:
        log.exception("inference job %s failed", job.pk)
        fail(job, f"internal error: {type(exc).__name__}: {exc}")


def _prompt(job: InferenceJob) -> tuple[LesionPrompt, np.ndarray | None]:
    """The job's recorded prompt for the engine, and the mask version it was asked on (loaded
    when the prompt has a mask slice or a z range)."""
    data = job.prompt
    base = None
    if data.get("mask_version") is not None:
        base = mask_version_load(MaskVersion.objects.get(pk=data["mask_version"]))
    mask_slices = {}
    if data.get("mask_slice") is not None and base is not None:
        mask_slices[int(data["mask_slice"])] = np.asarray(base[int(data["mask_slice"])], bool)
    z_range = data.get("z_range")
    x0, y0, x1, y1 = (int(v) for v in data["box"])
    prompt = LesionPrompt(
        lesion_id=str(job.lesion_id),
        key_slice=int(data["key_slice"]),
        box=(x0, y0, x1, y1),
        positive_points=_points(data.get("positive_points", [])),
        negative_points=_points(data.get("negative_points", [])),
        mask_slices=mask_slices,
        z_range=(int(z_range[0]), int(z_range[1])) if z_range else None,
    )
    return prompt, base


def _points(raw: list[list[int]]) -> tuple[tuple[int, int, int], ...]:
    return tuple((int(x), int(y), int(z)) for x, y, z in raw)


def _keep_human_slices(
    mask: np.ndarray, prompt: LesionPrompt, base: np.ndarray | None
) -> np.ndarray:
    """What a human drew survives any backend: a mask-prompted slice is kept exactly (MedSAM2
    does so itself; the default backend ignores mask prompts), and with a ``z_range`` the
    slices outside it keep the version the prompt was drawn on, so propagating a correction
    over a few slices never erases the rest of the lesion."""
    if not prompt.mask_slices and (prompt.z_range is None or base is None):
        return mask
    mask = np.array(mask, dtype=bool)
    if prompt.z_range is not None and base is not None:
        z0, z1 = prompt.z_range
        mask[:z0] = base[:z0]
        mask[z1 + 1 :] = base[z1 + 1 :]
    for z, given in prompt.mask_slices.items():
        mask[z] = given
    return mask
