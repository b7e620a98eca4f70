"""Existing labels (RTSTRUCT, DICOM SEG, label maps) become lesions with an imported mask.

The masks come from :mod:`annotator.imaging.dicom.labels`, already on the series' grid, one at a
time:
each is stored before the next is made, so an object's labels never sit in memory together, and
what an object may hold is capped by ``MAX_LABELS`` and ``MAX_CONTOUR_POINTS``. Each label
becomes one lesion of the series' task in the project's open round, with the prompt MedSAM2 would
get (the key slice where the label's area is largest, and the tight box on it) and a root mask
version whose source is ``import``.

An imported lesion keeps the label's own name (RTSTRUCT ROIName, SEG SegmentLabel or else
SegmentDescription, "label <value>" for a label map) and takes the project's class of that name
(:meth:`Project.lesion_class_named`: case-insensitive, spaces, underscores and hyphens alike). A
name no class has still imports, with the project's first class, and the report lists it under
``unmatched`` so that nobody mistakes it for a match.

Imports are idempotent. Each label has an identity, stored on its lesion (``import_key``): the
object's SOP Instance UID and ROI or segment number for DICOM, the file's SHA-256 and the value
for a label map. A label whose identity a lesion of the series already has is reported
``unchanged`` and nothing is made for it: the same file uploaded twice creates nothing new.
"""

import hashlib
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pydicom
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction

from annotator.annotation.services import Author, mask_version_save
from annotator.core import storage
from annotator.core.errors import Conflict, InvalidInput
from annotator.imaging.dicom.labels import (
    Grid,
    LabelError,
    LabelLimits,
    LabelMask,
    label_image_masks,
    referenced_images,
    rtstruct_masks,
    seg_masks,
)
from annotator.imaging.dicom.types import LabelObject
from annotator.imaging.image_files import image_suffix, read_image
from annotator.models import Lesion, MaskVersion, Series, Volume
from inference.engine.geometry import key_slice_and_box
from projects.intake.image_import import ImportedVolume, volume_import
from projects.intake.label_references import label_target
from projects.models import Project, Task
from projects.services import current_round
from projects.task_services import task_create

IMPORT_BACKEND = "import"
# The backend recorded on mask versions imported as the case's reference standard.
REFERENCE_BACKEND = "import:reference"


def _task_for(series: Series) -> Task:
    round_ = current_round(series.study.project)
    if round_ is None:
        raise Conflict(f"project {series.study.project.slug!r} has no open round to import into")
    task = Task.objects.filter(round=round_, series=series).first() or task_create(series=series)
    assert task is not None
    return task


def label_limits() -> LabelLimits:
    """What one label object or label map may hold, from the settings."""
    return LabelLimits(
        max_labels=settings.MAX_LABELS, max_contour_points=settings.MAX_CONTOUR_POINTS
    )


def volume_grid(volume: Volume) -> Grid:
    """The volume's voxel grid from its row: the labels need no voxels of the image."""
    x, y, z = (int(n) for n in volume.size)
    sx, sy, sz = (float(v) for v in volume.spacing)
    ox, oy, oz = (float(v) for v in volume.origin)
    return Grid((x, y, z), (sx, sy, sz), (ox, oy, oz), tuple(float(v) for v in volume.direction))


KEY_CHARS = 128  # Lesion.import_key
NAME_CHARS = 200  # Lesion.name


def import_key(source: str, number: int) -> str:
    """The identity of label ``number`` of ``source`` (what it was read from: ``dicom:<SOP
    Instance UID>`` or ``sha256:<hex digest>``); one too long for the column is hashed."""
    key = f"{source}#{number}"
    if len(key) > KEY_CHARS:
        key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def _lesion_dict(lesion: Lesion) -> dict[str, Any]:
    return {"id": lesion.pk, "name": lesion.name, "class": lesion.lesion_class}


@dataclass
class LabelsImported:
    """What one label object or label map made: lesions created, lesions it had already made
    (unchanged), and the names no class of the project has (created with its first class)."""

    series: Series
    created: list[Lesion] = field(default_factory=list)
    unchanged: list[Lesion] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    matched_by: str = ""
    first_class: str = ""  # the class the unmatched names were given

    def message(self) -> str:
        def names(lesions: list[Lesion]) -> str:
            return ", ".join(f"{lesion.name!r} ({lesion.lesion_class})" for lesion in lesions)

        parts = []
        if self.created:
            parts.append(
                f"{len(self.created)} lesion(s) created in series {self.series.pk}: "
                f"{names(self.created)}"
            )
        if self.unchanged:
            parts.append(
                f"{'' if self.created else 'nothing new: '}{len(self.unchanged)} lesion(s) "
                f"already imported, unchanged: {names(self.unchanged)}"
            )
        if self.unmatched:
            parts.append(
                f"no class of the project is named {', '.join(map(repr, self.unmatched))}: "
                f"given the first class {self.first_class!r}"
            )
        if self.matched_by:
            parts.append(f"series found by {self.matched_by}")
        if self.notes:
            parts.append("; ".join(self.notes))
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "series": self.series.pk,
            "matched_by": self.matched_by,
            "created": [_lesion_dict(lesion) for lesion in self.created],
            "unchanged": [_lesion_dict(lesion) for lesion in self.unchanged],
            "unmatched": list(self.unmatched),
            "notes": list(self.notes),
            "message": self.message(),
        }


def labels_import(
    *,
    series: Series,
    masks: Iterable[LabelMask],
    source: str = "",
    as_reference: bool = False,
    written: list[str] | None = None,
) -> LabelsImported:
    """Create one lesion per label on the series' task in its project's open round.

    ``masks`` may be a generator (as :mod:`annotator.imaging.dicom.labels` gives them): each label
    is checked and stored, then let go before the next is asked for, so one mask is in memory at a
    time. More than ``MAX_LABELS`` labels are refused. ``source``: what the labels were read
    from (see :func:`import_key`); a label whose identity a lesion of the series already has is
    reported unchanged, not made again (without ``source`` every label is new). ``as_reference``:
    the labels are the case's reference standard rather than pre-annotations to correct; their
    mask versions record the backend ``import:reference``, and the task must have no other
    lesions (a reference is the whole truth of the case). Either every lesion and mask version
    is created, or nothing is (files included): a label that fails, or a generator that raises,
    undoes the others. ``written``, when given, collects the keys of the files written, for a
    caller whose own transaction may still roll back.
    """
    volume = series.volume
    mine: list[str] = []
    try:
        with transaction.atomic():
            task = Task.objects.select_for_update().get(pk=_task_for(series).pk)
            if as_reference:
                others = task.lesions.all()
                if source:
                    others = others.exclude(import_key__startswith=f"{source}#")
                if others.exists():
                    raise Conflict("the task already has lesions: a reference must stand alone")
            project = task.round.project
            classes = project.lesion_class_names
            author = Author(backend=REFERENCE_BACKEND if as_reference else IMPORT_BACKEND)
            result = LabelsImported(series=series, first_class=classes[0] if classes else "")
            seen: set[str] = set()
            for label in masks:
                if len(result.created) + len(result.unchanged) == settings.MAX_LABELS:
                    raise InvalidInput(
                        f"more than {settings.MAX_LABELS} labels, the most one import may hold "
                        "(ANNOTATOR_MAX_LABELS)"
                    )
                key = import_key(source, label.number) if source else ""
                if key:
                    if key in seen:
                        raise InvalidInput(f"label number {label.number} is given twice")
                    seen.add(key)
                    existing = Lesion.objects.filter(task__series=series, import_key=key).first()
                    if existing is not None:
                        result.unchanged.append(existing)
                        continue
                if not result.created and task.state in (Task.State.SUBMITTED, Task.State.ACCEPTED):
                    raise Conflict(f"the task is {task.state}: its lesions cannot be changed")
                if label.mask.shape != volume.shape_zyx:
                    raise InvalidInput(
                        f"label {label.name!r} has shape {label.mask.shape}, the series' volume "
                        f"{volume.shape_zyx}"
                    )
                if not label.mask.any():
                    raise InvalidInput(f"label {label.name!r} is empty")
                lesion_class = project.lesion_class_named(label.name)
                if lesion_class is None and classes:
                    lesion_class = classes[0]
                    result.unmatched.append(label.name)
                key_slice, (x0, y0, x1, y1) = key_slice_and_box(label.mask)
                lesion = Lesion.objects.create(
                    task=task,
                    lesion_class=lesion_class or label.name[:100],
                    name=label.name[:NAME_CHARS],
                    import_key=key,
                    key_slice=key_slice,
                    box=[x0, y0, x1, y1],
                )
                version = mask_version_save(
                    lesion=lesion,
                    mask=label.mask,
                    source=MaskVersion.Source.IMPORT,
                    author=author,
                    parent=None,
                )
                mine.append(version.storage_key)
                if written is not None:
                    written.append(version.storage_key)
                result.created.append(lesion)
                del label  # let the generator's next mask replace this one, not join it
            if not result.created and not result.unchanged:
                raise InvalidInput("there is no label to import")
            return result
    except BaseException:
        storage.delete_quietly(mine)
        raise


RTSTRUCT, SEG = "RTSTRUCT", "SEG"


def dicom_labels_import(
    project: Project,
    label: LabelObject,
    uid_map: Callable[[str], str] = str,
    written: list[str] | None = None,
) -> LabelsImported:
    """Import an RTSTRUCT or SEG object's regions as lesions of the series it was drawn on
    (:func:`projects.intake.label_references.label_target`).

    ``uid_map`` maps the object's UIDs to the project's (identity, or the de-identification
    mapping, so references still meet their images). Raises a DomainError with the reason;
    an object over the limits (:func:`label_limits`) is refused before its labels are made,
    or, for counts only known while reading them, with every lesion it made undone. Importing
    the same object again creates nothing: its lesions are reported unchanged.
    """
    what = f"{label.modality} object"
    if label.modality not in (RTSTRUCT, SEG):
        raise InvalidInput(f"{label.modality} objects are not imported as labels")
    ds = pydicom.dcmread(label.path)
    limits = label_limits()
    notes: list[str] = []
    try:
        target = label_target(project, ds, what, uid_map, limits)
        series = target.series
        slice_uids: list[str] = []
        for sop, frames in series.instances.order_by("frame_offset").values_list(
            "sop_instance_uid", "number_of_frames"
        ):
            slice_uids += [sop] * frames
        if uid_map is not str:  # the label's own references are still the original UIDs
            inverse = {uid_map(uid): uid for uid in referenced_images(ds, limits)}
            slice_uids = [inverse.get(uid, uid) for uid in slice_uids]
        grid = volume_grid(series.volume)
        read = rtstruct_masks if label.modality == RTSTRUCT else seg_masks
        masks = read(ds, grid, slice_uids, notes=notes, limits=limits)
        result = labels_import(
            series=series,
            masks=masks,
            source=f"dicom:{uid_map(label.sop_instance_uid)}",
            written=written,
        )
    except LabelError as exc:
        message = f"{what}: {exc}"
        raise InvalidInput(message, fields={"files": [message]}) from exc
    except InvalidInput as exc:
        exc.fields = exc.fields or {"files": [exc.message]}
        raise
    result.notes, result.matched_by = notes, target.matched_by
    return result


def volume_with_labels_import(
    *,
    project: Project,
    file: IO[bytes],
    filename: str,
    labels: IO[bytes],
    labels_filename: str,
    description: str = "",
) -> tuple[ImportedVolume, LabelsImported]:
    """Import an image file and its label map (NIfTI / NRRD / MHA on the same grid): each label
    value becomes a lesion with an ``import`` mask version, its identity the file's SHA-256 and
    the value. All of it, or nothing."""
    suffix = image_suffix(labels_filename, field="labels")
    digest = hashlib.sha256()
    with tempfile.TemporaryDirectory(prefix="annotator-labels-") as tmp:
        path = Path(tmp) / f"labels{suffix}"
        with open(path, "wb") as out:
            while chunk := labels.read(1024 * 1024):
                digest.update(chunk)
                out.write(chunk)
        label_image = read_image(path, labels_filename, field="labels")
    keys: list[str] = []
    try:
        with transaction.atomic():  # the volume's rows roll back with the labels'
            imported = volume_import(
                project=project, file=file, filename=filename, description=description
            )
            series = imported.series
            keys += series.instances.values_list("storage_key", flat=True)
            keys.append(imported.volume.storage_key)
            if imported.volume.colour_storage_key:
                keys.append(imported.volume.colour_storage_key)
            keys += [
                series.original_prefix + name
                for name in default_storage.listdir(series.original_prefix)[1]
            ]
            try:
                masks = label_image_masks(
                    label_image, volume_grid(imported.volume), limits=label_limits()
                )
                result = labels_import(
                    series=series, masks=masks, source=f"sha256:{digest.hexdigest()}"
                )
            except LabelError as exc:
                raise InvalidInput(
                    f"{labels_filename!r}: {exc}", fields={"labels": [str(exc)]}
                ) from exc
            except InvalidInput as exc:
                exc.fields = exc.fields or {"labels": [exc.message]}
                raise
    except BaseException:
        storage.delete_quietly(keys)
        raise
    return imported, result
