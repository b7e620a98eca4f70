"""Existing labels (RTSTRUCT, DICOM SEG, label maps) become lesions with an imported mask.

The masks come from :mod:`annotator.dicom.labels`, already on the series' grid. Each label
becomes one lesion of the series' task in the project's open round, with the prompt MedSAM2 would
get (the key slice where the label's area is largest, and the tight box on it) and a root mask
version whose source is ``import``.
"""

import numpy as np
from django.db import transaction

from annotator import storage
from annotator.dicom.labels import LabelMask
from annotator.errors import Conflict, InvalidInput
from annotator.models import Lesion, MaskVersion, Series
from annotator.services import Author, mask_version_save
from projects.models import Task
from projects.services import current_round, task_create

IMPORT_BACKEND = "import"
# The backend recorded on mask versions imported as the case's reference standard.
REFERENCE_BACKEND = "import:reference"


def key_slice_and_box(mask: np.ndarray) -> tuple[int, list[int]]:
    """The slice (third image axis, first array axis) where the mask's area is largest and the
    tight [x0, y0, x1, y1] box (inclusive voxel indices) of the mask on it."""
    areas = mask.reshape(mask.shape[0], -1).sum(axis=1)
    k = int(np.argmax(areas))
    rows = np.flatnonzero(mask[k].any(axis=1))
    cols = np.flatnonzero(mask[k].any(axis=0))
    return k, [int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])]


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
                key_slice, box = key_slice_and_box(label.mask)
                lesion = Lesion.objects.create(
                    task=task,
                    lesion_class=label.name if label.name in classes or not classes else classes[0],
                    key_slice=key_slice,
                    box=box,
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
