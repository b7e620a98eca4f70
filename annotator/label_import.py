"""Existing labels (RTSTRUCT, DICOM SEG, label maps) become lesions with an imported mask.

The masks come from :mod:`annotator.dicom.labels`, already on the series' grid, one at a time:
each is stored before the next is made, so an object's labels never sit in memory together, and
what an object may hold is capped by ``MAX_LABELS`` and ``MAX_CONTOUR_POINTS``. Each label
becomes one lesion of the series' task in the project's open round, with the prompt MedSAM2 would
get (the key slice where the label's area is largest, and the tight box on it) and a root mask
version whose source is ``import``.
"""

import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

import pydicom
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction

from annotator import storage
from annotator.dicom.labels import (
    Grid,
    LabelError,
    LabelLimits,
    LabelMask,
    frames_of_reference,
    label_image_masks,
    referenced_images,
    referenced_series,
    rtstruct_masks,
    seg_masks,
)
from annotator.dicom.types import LabelObject
from annotator.errors import Conflict, InvalidInput
from annotator.image_files import image_suffix, read_image
from annotator.models import Lesion, MaskVersion, Series, Volume
from annotator.services import Author, mask_version_save
from annotator.volumes import ImportedVolume, volume_import
from inference.engine import key_slice_and_box
from projects.models import Project, Task
from projects.services import current_round, task_create

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


def labels_import(
    *, series: Series, masks: Iterable[LabelMask], as_reference: bool = False
) -> list[Lesion]:
    """Create one lesion per label on the series' task in its project's open round.

    ``masks`` may be a generator (as :mod:`annotator.dicom.labels` gives them): each label is
    checked and stored, then let go before the next is asked for, so one mask is in memory at a
    time. More than ``MAX_LABELS`` labels are refused. ``as_reference``: the labels are the
    case's reference standard rather than pre-annotations to correct; their mask versions record
    the backend ``import:reference``, and the task must not have lesions yet (a reference is the
    whole truth of the case). Either every lesion and mask version is created, or nothing is
    (files included): a label that fails, or a generator that raises, undoes the others.
    """
    volume = series.volume
    written: list[str] = []
    try:
        with transaction.atomic():
            task = Task.objects.select_for_update().get(pk=_task_for(series).pk)
            if task.state in (Task.State.SUBMITTED, Task.State.ACCEPTED):
                raise Conflict(f"the task is {task.state}: its lesions cannot be changed")
            if as_reference and task.lesions.exists():
                raise Conflict("the task already has lesions: a reference must stand alone")
            classes = task.round.project.lesion_class_names
            author = Author(backend=REFERENCE_BACKEND if as_reference else IMPORT_BACKEND)
            lesions: list[Lesion] = []
            for label in masks:
                if len(lesions) == settings.MAX_LABELS:
                    raise InvalidInput(
                        f"more than {settings.MAX_LABELS} labels, the most one import may hold "
                        "(ANNOTATOR_MAX_LABELS)"
                    )
                if label.mask.shape != volume.shape_zyx:
                    raise InvalidInput(
                        f"label {label.name!r} has shape {label.mask.shape}, the series' volume "
                        f"{volume.shape_zyx}"
                    )
                if not label.mask.any():
                    raise InvalidInput(f"label {label.name!r} is empty")
                key_slice, (x0, y0, x1, y1) = key_slice_and_box(label.mask)
                lesion = Lesion.objects.create(
                    task=task,
                    lesion_class=label.name if label.name in classes or not classes else classes[0],
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
                written.append(version.storage_key)
                lesions.append(lesion)
                del label  # let the generator's next mask replace this one, not join it
            if not lesions:
                raise InvalidInput("there is no label to import")
            return lesions
    except BaseException:
        storage.delete_quietly(written)
        raise


RTSTRUCT, SEG = "RTSTRUCT", "SEG"


def dicom_labels_import(
    project: Project, label: LabelObject, uid_map: Callable[[str], str] = str
) -> str:
    """Import an RTSTRUCT or SEG object's regions as lesions of the series it refers to.

    ``uid_map`` maps the object's UIDs to the project's (identity, or the de-identification
    mapping, so references still meet their images). Raises a DomainError with the reason;
    an object over the limits (:func:`label_limits`) is refused before its labels are made,
    or, for counts only known while reading them, with every lesion it made undone.
    """
    if label.modality not in (RTSTRUCT, SEG):
        raise InvalidInput(f"{label.modality} objects are not imported as labels")
    ds = pydicom.dcmread(label.path)
    limits = label_limits()
    notes: list[str] = []
    names: list[str] = []
    try:
        candidates = [uid_map(uid) for uid in referenced_series(ds, limits)]
        series = _referenced_series_in(project, ds, candidates, uid_map, limits)
        if series is None:
            raise InvalidInput(
                f"{label.modality} object: the series it refers to "
                f"({', '.join(candidates) or 'none'}) is not in the project"
            )
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
        lesions = labels_import(series=series, masks=_named(masks, names))
    except LabelError as exc:
        raise InvalidInput(f"{label.modality} object: {exc}") from exc
    remark = f" ({'; '.join(notes)})" if notes else ""
    return f"{len(lesions)} lesion(s) imported into series {series.pk}: {', '.join(names)}{remark}"


def _named(masks: Iterable[LabelMask], names: list[str]) -> Iterator[LabelMask]:
    for mask in masks:
        names.append(mask.name)
        yield mask
        del mask  # held while suspended, it would sit beside the next one


def _referenced_series_in(
    project: Project,
    ds: pydicom.Dataset,
    series_uids: list[str],
    uid_map: Callable[[str], str],
    limits: LabelLimits,
) -> Series | None:
    """The series the object refers to: by Series Instance UID, else (some exports carry a
    stale one) the series of its frame of reference holding the images it references."""
    in_project = Series.objects.filter(study__project=project).select_related(
        "volume", "study__project"
    )
    found = in_project.filter(series_instance_uid__in=series_uids).first()
    if found is not None:
        return found
    frames = [uid_map(uid) for uid in frames_of_reference(ds, limits)]
    same_frame = list(in_project.filter(frame_of_reference_uid__in=frames))
    if len(same_frame) == 1:
        return same_frame[0]
    referenced = {uid_map(uid) for uid in referenced_images(ds, limits)} if same_frame else set()
    best, best_overlap = None, 0
    for series in same_frame:
        overlap = series.instances.filter(sop_instance_uid__in=referenced).count()
        if overlap > best_overlap:
            best, best_overlap = series, overlap
    return best


def volume_with_labels_import(
    *,
    project: Project,
    file: IO[bytes],
    filename: str,
    labels: IO[bytes],
    labels_filename: str,
    description: str = "",
) -> tuple[ImportedVolume, list[Lesion]]:
    """Import an image file and its label map (NIfTI / NRRD / MHA on the same grid): each label
    value becomes a lesion with an ``import`` mask version. All of it, or nothing."""
    suffix = image_suffix(labels_filename, field="labels")
    with tempfile.TemporaryDirectory(prefix="annotator-labels-") as tmp:
        path = Path(tmp) / f"labels{suffix}"
        with open(path, "wb") as out:
            shutil.copyfileobj(labels, out)
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
                lesions = labels_import(series=series, masks=masks)
            except LabelError as exc:
                raise InvalidInput(
                    f"{labels_filename!r}: {exc}", fields={"labels": [str(exc)]}
                ) from exc
    except BaseException:
        storage.delete_quietly(keys)
        raise
    return imported, lesions
