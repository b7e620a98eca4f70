"""Every write to lesions, mask versions and effort records goes through these functions."""

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from annotator.annotation.audit import audit_record
from annotator.core import storage
from annotator.core.errors import Conflict, Forbidden, InvalidInput
from annotator.imaging.storage_keys import mask_key
from annotator.models import ActiveInterval, Interaction, Lesion, MaskVersion, Volume
from inference.models import ModelVersion
from projects.models import Task

MASK_FILES = "masks"  # the kind of pending write a mask file is (storage.pending_mark)


def check_editable_by(task: Task, user: User) -> None:
    if task.assignee_id != user.pk:
        raise Forbidden("only the task's annotator can change its lesions")
    if not task.editable:
        raise Conflict(f"the task is {task.state}: its lesions cannot be changed")


def check_prompt(volume: Volume, key_slice: int | None, box: Any) -> list[int] | None:
    """Validate a key slice and an [x0, y0, x1, y1] box against the volume's grid."""
    depth, height, width = volume.shape_zyx
    if key_slice is not None and not 0 <= key_slice < depth:
        raise InvalidInput(
            f"key_slice {key_slice} is outside 0..{depth - 1}",
            fields={"key_slice": [f"must be in 0..{depth - 1}"]},
        )
    if box is None:
        return None
    if key_slice is None:
        raise InvalidInput("a box needs its key_slice", fields={"key_slice": ["required"]})
    if not isinstance(box, list | tuple) or len(box) != 4:
        raise InvalidInput("box must be [x0, y0, x1, y1]", fields={"box": ["four integers"]})
    try:
        x0, y0, x1, y1 = (int(v) for v in box)
    except (TypeError, ValueError) as exc:
        raise InvalidInput("box must be four integers", fields={"box": ["integers"]}) from exc
    if not (0 <= x0 <= x1 < width and 0 <= y0 <= y1 < height):
        raise InvalidInput(
            f"box {[x0, y0, x1, y1]} must satisfy 0 <= x0 <= x1 < {width} "
            f"and 0 <= y0 <= y1 < {height}",
            fields={"box": ["outside the slice or inverted"]},
        )
    return [x0, y0, x1, y1]


def _check_class(task: Task, lesion_class: str) -> str:
    names = task.round.project.lesion_class_names
    if lesion_class not in names:
        raise InvalidInput(
            f"unknown lesion class {lesion_class!r}; this project has {names}",
            fields={"lesion_class": [f"one of {names}"]},
        )
    return lesion_class


def lesion_create(
    *,
    task: Task,
    user: User,
    lesion_class: str,
    key_slice: int | None = None,
    box: list[int] | None = None,
) -> Lesion:
    check_editable_by(task, user)
    return Lesion.objects.create(
        task=task,
        lesion_class=_check_class(task, lesion_class),
        key_slice=key_slice,
        box=check_prompt(task.series.volume, key_slice, box),
        created_by=user,
    )


def lesion_update(*, lesion: Lesion, user: User, **changes: Any) -> Lesion:
    task = lesion.task
    check_editable_by(task, user)
    if "lesion_class" in changes:
        lesion.lesion_class = _check_class(task, changes["lesion_class"])
    if "key_slice" in changes or "box" in changes:
        lesion.key_slice = changes.get("key_slice", lesion.key_slice)
        lesion.box = check_prompt(task.series.volume, lesion.key_slice, changes.get("box"))
    lesion.save()
    return lesion


def lesion_delete(*, lesion: Lesion, user: User) -> None:
    check_editable_by(lesion.task, user)
    keys = list(lesion.mask_versions.values_list("storage_key", flat=True))
    lesion.delete()
    transaction.on_commit(lambda: storage.delete_quietly(keys))


def latest_mask_version(lesion: Lesion) -> MaskVersion | None:
    return lesion.mask_versions.order_by("-id").first()


@dataclass(frozen=True)
class Author:
    user: User | None = None
    model: ModelVersion | None = None
    backend: str = ""


def mask_version_save(
    *,
    lesion: Lesion,
    mask: np.ndarray,
    source: str,
    author: Author,
    parent: MaskVersion | Literal["latest"] | None = "latest",
) -> MaskVersion:
    """Append a mask version to the lesion's history.

    ``parent`` is the version the edit started from (None: the lesion had none). A save whose
    parent is no longer the latest raises Conflict (409), so no edit silently overwrites another.
    Model results pass ``"latest"``: the model answers the prompt the annotator is waiting for.
    """
    volume = lesion.task.series.volume
    if mask.shape != volume.shape_zyx:
        raise InvalidInput(f"mask shape {mask.shape} differs from the volume's {volume.shape_zyx}")
    binary = mask.astype(bool, copy=False)
    key = mask_key(lesion.task.round.project.slug, lesion.pk)
    # Marked pending first: if this process dies before the version commits, the sweep
    # (mask_files_sweep) removes the file; once it has committed, the marker goes.
    with storage.cleanup_on_error([storage.pending_mark(MASK_FILES, key)]) as written:
        marker = written[0]
        key = storage.save_array(key, binary)
        written.append(key)
        try:
            with transaction.atomic():
                Lesion.objects.select_for_update().get(pk=lesion.pk)
                latest = latest_mask_version(lesion)
                if parent == "latest":
                    parent = latest
                elif getattr(parent, "pk", None) != getattr(latest, "pk", None):
                    raise Conflict(
                        f"the mask changed meanwhile: the latest version is "
                        f"{latest.pk if latest else None}, your edit started from "
                        f"{getattr(parent, 'pk', None)}; reload it and apply your edit again",
                        fields={"parent": [f"latest is {latest.pk if latest else None}"]},
                    )
                assert parent is None or isinstance(parent, MaskVersion)
                version = MaskVersion.objects.create(
                    lesion=lesion,
                    parent=parent,
                    source=source,
                    author_user=author.user,
                    author_model=author.model,
                    author_backend=author.backend,
                    storage_key=key,
                    voxel_count=int(np.count_nonzero(binary)),
                )
                audit_record(
                    project=lesion.task.round.project_id,
                    task=lesion.task,
                    actor=author.user,
                    action="mask.saved",
                    data={"lesion": lesion.pk, "version": version.pk, "source": source},
                )
                transaction.on_commit(functools.partial(storage.delete_quietly, [marker]))
                return version
        except IntegrityError as exc:  # a concurrent save won the race for the same parent
            raise Conflict(
                "the mask changed meanwhile; reload it and apply your edit again"
            ) from exc


def mask_version_load(version: MaskVersion) -> np.ndarray:
    return storage.load_array(version.storage_key)


def mask_files_sweep(*, older_than_s: float) -> list[str]:
    """Remove the mask files written by saves that never committed (the process was killed
    between the file and the row, or an enclosing transaction rolled back) once they are older
    than ``older_than_s``; returns their keys. Committed versions' files are never touched."""

    def referenced(keys: list[str]) -> set[str]:
        return set(
            MaskVersion.objects.filter(storage_key__in=keys).values_list("storage_key", flat=True)
        )

    return storage.pending_sweep(MASK_FILES, older_than_s=older_than_s, referenced=referenced)


def effort_record(
    *,
    task: Task,
    user: User,
    intervals: list[dict[str, Any]],
    interactions: list[dict[str, Any]],
) -> tuple[int, int]:
    """Store active intervals and tool interactions sent by the viewer."""
    if task.assignee_id != user.pk:
        raise Forbidden("only the task's annotator records effort on it")
    lesion_ids = set(task.lesions.values_list("pk", flat=True))

    def lesion_of(item: dict[str, Any]) -> int | None:
        lesion_id = item.get("lesion")
        if lesion_id is not None and lesion_id not in lesion_ids:
            raise InvalidInput(f"lesion {lesion_id} is not part of task {task.pk}")
        return lesion_id

    rows_i = []
    for item in intervals:
        start: datetime = item["started_at"]
        end: datetime = item["ended_at"]
        if end < start:
            raise InvalidInput("an interval ends before it starts", fields={"intervals": ["order"]})
        rows_i.append(
            ActiveInterval(
                task=task, user=user, lesion_id=lesion_of(item), started_at=start, ended_at=end
            )
        )
    rows_x = [
        Interaction(
            task=task,
            user=user,
            lesion_id=lesion_of(item),
            tool=item["tool"],
            slice_index=item.get("slice_index"),
            at=item["at"],
        )
        for item in interactions
    ]
    with transaction.atomic():
        ActiveInterval.objects.bulk_create(rows_i)
        Interaction.objects.bulk_create(rows_x)
    return len(rows_i), len(rows_x)
