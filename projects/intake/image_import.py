"""Import of single-file 3D images (NIfTI, NRRD, MetaImage), 2D pictures (PNG, JPEG) and videos
as a study, series, volume and task of a project.

The file is kept byte for byte under ``original/``; the volume is also stored as NIfTI, the
canonical grid every mask of the series lives on (``annotator.imaging.volumes``), and as
generated DICOM instances (one per slice or video frame, ``instances/<SOP Instance UID>.dcm``,
see ``annotator.imaging.dicom.synthesis``), which is what the DICOMweb server gives the viewer. A
colour image (RGB, RGBA) is stored as its luma, and its RGB pixels beside it (``colour.mha``,
:mod:`annotator.imaging.colour`) for the models that take colour. Videos become grey-level
ultrasound series (``annotator.imaging.video``). DICOM series come in through
``projects.intake.ingest``.
"""

import re
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import IO

from django.conf import settings
from django.db import transaction
from pydicom.uid import generate_uid

from annotator.core import storage
from annotator.core.errors import InvalidInput
from annotator.imaging.colour import split_colour
from annotator.imaging.dicom.synthesis import iter_instances, to_bytes
from annotator.imaging.image_files import IMAGE_SUFFIXES, PICTURE_SUFFIXES, image_suffix, read_image
from annotator.imaging.storage_keys import series_keys
from annotator.imaging.video import VIDEO_SUFFIXES, read_video
from annotator.imaging.volumes import volume_create, volume_files_store
from annotator.models import Instance, Series, Study, Volume
from projects.models import Project, Task
from projects.task_services import task_create


@dataclass(frozen=True)
class ImportedVolume:
    series: Series
    volume: Volume
    task: Task | None


def upload_suffix(filename: str) -> str:
    """The suffix of a file ``volume_import`` accepts: a 3D image, a 2D picture or a video."""
    return image_suffix(filename, IMAGE_SUFFIXES + PICTURE_SUFFIXES + VIDEO_SUFFIXES)


def _safe_name(filename: str) -> str:
    name = Path(filename).name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:120] or "image"


def volume_import(
    *, project: Project, file: IO[bytes], filename: str, description: str = ""
) -> ImportedVolume:
    """Store an image or video file as a new study/series/volume of ``project``, with generated
    DICOM instances, and queue it as a task.

    The file is read by :func:`annotator.imaging.image_files.read_image` (only its own bytes, sizes
    checked before allocation). Either everything is created (files and rows) or nothing is.
    """
    suffix = upload_suffix(filename)
    with tempfile.TemporaryDirectory(prefix="annotator-import-") as tmp:
        local = Path(tmp) / f"upload{suffix}"
        written = 0
        with open(local, "wb") as out:
            while chunk := file.read(1024 * 1024):
                written += len(chunk)
                if written > settings.MAX_UPLOAD_BYTES:
                    raise InvalidInput(f"{filename!r} is larger than the upload limit")
                out.write(chunk)
        is_video = suffix in VIDEO_SUFFIXES
        if is_video:
            image = read_video(
                local,
                filename,
                max_voxels=settings.MAX_IMAGE_VOXELS,
                max_frames=settings.MAX_IMAGE_FRAMES,
            )
        else:
            image = read_image(local, filename, colour=True)
        colour = None
        if image.GetNumberOfComponentsPerPixel() > 1:
            image, colour = split_colour(image)
        modality = "US" if is_video else project.modality

        study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
        today = date.today()
        label = description or Path(filename).name
        keys = series_keys(project.slug, series_uid)
        with storage.cleanup_on_error([]) as written_keys:
            with open(local, "rb") as f:
                written_keys.append(storage.save_file(keys.original(_safe_name(filename)), f))
            volume_key, colour_key = volume_files_store(
                keys=keys, image=image, colour=colour, workdir=Path(tmp), written=written_keys
            )
            del colour  # the stored file holds it now
            instances: list[Instance] = []
            generated = iter_instances(
                image,
                modality=modality,
                study_uid=study_uid,
                series_uid=series_uid,
                frame_of_reference_uid=frame_uid,
                study_description=label[:64],
                series_description=label[:64],
                study_date=today,
                window=project.window_preset() if not is_video else None,
            )
            for index, ds in enumerate(generated):
                content = to_bytes(ds)
                key = storage.save_file(keys.instance(ds.SOPInstanceUID), content)
                written_keys.append(key)
                instances.append(
                    Instance(
                        sop_instance_uid=ds.SOPInstanceUID,
                        sop_class_uid=ds.SOPClassUID,
                        instance_number=int(ds.InstanceNumber),
                        transfer_syntax_uid=ds.file_meta.TransferSyntaxUID,
                        number_of_frames=1,
                        frame_offset=index,
                        storage_key=key,
                        size_bytes=len(content),
                    )
                )
            with transaction.atomic():
                study = Study.objects.create(
                    project=project,
                    study_instance_uid=study_uid,
                    description=label,
                    study_date=today,
                )
                series = Series.objects.create(
                    study=study,
                    series_instance_uid=series_uid,
                    modality=modality,
                    series_number=1,
                    description=label,
                    frame_of_reference_uid=frame_uid,
                    original_prefix=keys.original_prefix,
                    generated=True,
                )
                for instance in instances:
                    instance.series = series
                Instance.objects.bulk_create(instances)
                volume = volume_create(
                    series=series,
                    image=image,
                    storage_key=volume_key,
                    colour_storage_key=colour_key,
                )
                task = task_create(series=series)
    return ImportedVolume(series=series, volume=volume, task=task)
