"""Existing labels (RTSTRUCT, DICOM SEG, label maps) become lesions with an imported mask.

The masks come from :mod:`annotator.dicom.labels`, already on the series' grid. Each label
becomes one lesion of the series' task in the project's open round, with the prompt MedSAM2 would
get (the key slice where the label's area is largest, and the tight box on it) and a root mask
version whose source is ``import``.
"""

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pydicom
from django.core.files.storage import default_storage
from django.db import transaction

from annotator import storage
from annotator.dicom.labels import (
    LabelError,
    LabelMask,
    label_image_masks,
    rtstruct_masks,
    seg_masks,
)
from annotator.dicom.types import LabelObject
from annotator.errors import Conflict, InvalidInput
from annotator.image_files import image_suffix, read_image
from annotator.models import Lesion, MaskVersion, Series
from annotator.services import Author, mask_version_save
from annotator.volumes import ImportedVolume, volume_import, volume_read
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


def labels_import(
    *, series: Series, masks: list[LabelMask], as_reference: bool = False
) -> list[Lesion]:
    """Create one lesion per label on the series' task in its project's open round.

    ``as_reference``: the labels are the case's reference standard rather than pre-annotations
    to correct; their mask versions record the backend ``import:reference``, and the task must
    not have lesions yet (a reference is the whole truth of the case). Either every lesion and
    mask version is created, or nothing is (files included).
    """
    volume = series.volume
    if not masks:
        raise InvalidInput("there is no label to import")
    for label in masks:
        if label.mask.shape != volume.shape_zyx:
            raise InvalidInput(
                f"label {label.name!r} has shape {label.mask.shape}, the series' volume "
                f"{volume.shape_zyx}"
            )
        if not label.mask.any():
            raise InvalidInput(f"label {label.name!r} is empty")
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
            lesions = []
            for label in masks:
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
            return lesions
    except BaseException:
        storage.delete_quietly(written)
        raise


RTSTRUCT, SEG = "RTSTRUCT", "SEG"


def _referenced_series(ds: pydicom.Dataset) -> list[str]:
    uids = [item.SeriesInstanceUID for item in ds.get("ReferencedSeriesSequence", [])]
    for frame in ds.get("ReferencedFrameOfReferenceSequence", []):
        for study in frame.get("RTReferencedStudySequence", []):
            uids += [s.SeriesInstanceUID for s in study.get("RTReferencedSeriesSequence", [])]
    return uids


def dicom_labels_import(
    project: Project, label: LabelObject, uid_map: Callable[[str], str] = str
) -> str:
    """Import an RTSTRUCT or SEG object's regions as lesions of the series it refers to.

    ``uid_map`` maps the object's UIDs to the project's (identity, or the de-identification
    mapping, so references still meet their images). Raises a DomainError with the reason.
    """
    ds = pydicom.dcmread(label.path)
    candidates = [uid_map(uid) for uid in _referenced_series(ds)]
    series = _referenced_series_in(project, ds, candidates, uid_map)
    if series is None:
        raise InvalidInput(
            f"{label.modality} object: the series it refers to ({', '.join(candidates) or 'none'}) "
            "is not in the project"
        )
    reference = volume_read(series.volume)
    slice_uids: list[str] = []
    for sop, frames in series.instances.order_by("frame_offset").values_list(
        "sop_instance_uid", "number_of_frames"
    ):
        slice_uids += [sop] * frames
    if uid_map is not str:  # the label's own references are still the original UIDs
        inverse = {uid_map(uid): uid for uid in _all_uids(ds)}
        slice_uids = [inverse.get(uid, uid) for uid in slice_uids]
    notes: list[str] = []
    try:
        if label.modality == RTSTRUCT:
            masks = rtstruct_masks(ds, reference, slice_uids, notes=notes)
        elif label.modality == SEG:
            masks = seg_masks(ds, reference, slice_uids, notes=notes)
        else:
            raise InvalidInput(f"{label.modality} objects are not imported as labels")
    except LabelError as exc:
        raise InvalidInput(f"{label.modality} object: {exc}") from exc
    masks = [m for m in masks if m.mask.any()]
    lesions = labels_import(series=series, masks=masks)
    names = ", ".join(m.name for m in masks)
    remark = f" ({'; '.join(notes)})" if notes else ""
    return f"{len(lesions)} lesion(s) imported into series {series.pk}: {names}{remark}"


def _frames_of_reference(ds: pydicom.Dataset) -> list[str]:
    uids = [f.FrameOfReferenceUID for f in ds.get("ReferencedFrameOfReferenceSequence", [])]
    return uids + ([ds.FrameOfReferenceUID] if "FrameOfReferenceUID" in ds else [])


def _referenced_series_in(
    project: Project, ds: pydicom.Dataset, series_uids: list[str], uid_map: Callable[[str], str]
) -> Series | None:
    """The series the object refers to: by Series Instance UID, else (some exports carry a
    stale one) the series of its frame of reference holding the images it references."""
    in_project = Series.objects.filter(study__project=project).select_related(
        "volume", "study__project"
    )
    found = in_project.filter(series_instance_uid__in=series_uids).first()
    if found is not None:
        return found
    frames = [uid_map(uid) for uid in _frames_of_reference(ds)]
    referenced = {uid_map(uid) for uid in _all_uids(ds)}
    same_frame = list(in_project.filter(frame_of_reference_uid__in=frames))
    if len(same_frame) == 1:
        return same_frame[0]
    best, best_overlap = None, 0
    for series in same_frame:
        overlap = series.instances.filter(sop_instance_uid__in=referenced).count()
        if overlap > best_overlap:
            best, best_overlap = series, overlap
    return best


def _all_uids(ds: pydicom.Dataset) -> set[str]:
    found: set[str] = set()

    def walk(item: pydicom.Dataset) -> None:
        for element in item:
            if element.VR == "UI" and element.value:
                found.add(str(element.value))
            elif element.VR == "SQ":
                for child in element.value:
                    walk(child)

    walk(ds)
    return found


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
            keys += [
                series.original_prefix + name
                for name in default_storage.listdir(series.original_prefix)[1]
            ]
            try:
                masks = label_image_masks(label_image, volume_read(imported.volume))
            except LabelError as exc:
                raise InvalidInput(
                    f"{labels_filename!r}: {exc}", fields={"labels": [str(exc)]}
                ) from exc
            lesions = labels_import(series=series, masks=masks)
    except BaseException:
        storage.delete_quietly(keys)
        raise
    return imported, lesions
