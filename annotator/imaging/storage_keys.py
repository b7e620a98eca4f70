"""Where each file lives in storage: the one place that knows the key layout.

``projects/<slug>/series/<series>/`` holds a series: ``original/`` the files as received,
``instances/`` the DICOM generated for an image-file upload, ``volume.nii.gz`` the canonical
volume and ``colour.mha`` its colour pixels where it has them; ``projects/<slug>/masks/
lesion-<pk>/`` holds a lesion's mask versions, one file each; ``models/<slug>/`` the model files
the project's training jobs wrote."""

import re
import uuid
from dataclasses import dataclass

from annotator.imaging.colour import COLOUR_FILE

ORIGINAL = "original/"


def key_part(value: str) -> str:
    """``value`` (a UID) safe as one part of a key: runs of other characters than letters,
    digits and dots become ``_``, at most 64 characters."""
    return re.sub(r"[^0-9A-Za-z.]+", "_", value)[:64] or "unknown"


@dataclass(frozen=True)
class SeriesKeys:
    """The keys of one series' files."""

    prefix: str

    @property
    def original_prefix(self) -> str:
        """The folder of the files as received (``Series.original_prefix``)."""
        return f"{self.prefix}/{ORIGINAL}"

    def original(self, name: str) -> str:
        return f"{self.prefix}/{ORIGINAL}{name}"

    def instance(self, sop_instance_uid: str) -> str:
        return f"{self.prefix}/instances/{sop_instance_uid}.dcm"

    @property
    def volume(self) -> str:
        return f"{self.prefix}/volume.nii.gz"

    @property
    def colour(self) -> str:
        return f"{self.prefix}/{COLOUR_FILE}"


def series_keys(project_slug: str, series_instance_uid: str) -> SeriesKeys:
    return SeriesKeys(f"projects/{project_slug}/series/{key_part(series_instance_uid)}")


def series_folder(original_prefix: str) -> str:
    """The folder of every file of the series whose ``Series.original_prefix`` is given."""
    return original_prefix.removesuffix(ORIGINAL).removesuffix("/")


def mask_key(project_slug: str, lesion_pk: int) -> str:
    """A new, unique key for a mask version of the lesion."""
    return f"projects/{project_slug}/masks/lesion-{lesion_pk}/{uuid.uuid4()}.npy.gz"


def model_key(project_slug: str, training_job_pk: int, suffix: str) -> str:
    """A new, unique key for the model file a training job of the project wrote."""
    return f"models/{project_slug}/training-{training_job_pk}-{uuid.uuid4().hex[:8]}{suffix}"
