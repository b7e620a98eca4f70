"""A series' volume: the Volume row built from a SimpleITK image, and its voxels read back.

The volume is stored as NIfTI, the canonical grid every mask of the series lives on; a colour
image keeps its RGB pixels beside it (``colour.mha``, :mod:`annotator.imaging.colour`).
"""

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from annotator.core import storage
from annotator.imaging.colour import COLOUR_FILE
from annotator.imaging.storage_keys import SeriesKeys
from annotator.models import Series, Volume


def volume_files_store(
    *,
    keys: SeriesKeys,
    image: sitk.Image,
    colour: sitk.Image | None,
    workdir: Path,
    written: list[str],
) -> tuple[str, str]:
    """Store the series' canonical NIfTI volume and, for a colour image, its RGB pixels: their
    storage keys ("" for no colour). Each key joins ``written`` once stored, so that the
    caller's ``storage.cleanup_on_error`` removes it if a later step fails."""
    canonical = workdir / "volume.nii.gz"
    sitk.WriteImage(image, str(canonical), useCompression=True)
    with open(canonical, "rb") as f:
        volume_key = storage.save_file(keys.volume, f)
    written.append(volume_key)
    colour_key = ""
    if colour is not None:
        colour_file = workdir / COLOUR_FILE
        sitk.WriteImage(colour, str(colour_file), useCompression=True)
        with open(colour_file, "rb") as f:
            colour_key = storage.save_file(keys.colour, f)
        written.append(colour_key)
    return volume_key, colour_key


def volume_create(
    *, series: Series, image: sitk.Image, storage_key: str, colour_storage_key: str = ""
) -> Volume:
    """The series' Volume row for ``image``, stored at ``storage_key``: its grid as SimpleITK
    gives it (size, spacing, origin, direction) and its pixel type."""
    return Volume.objects.create(
        series=series,
        storage_key=storage_key,
        colour_storage_key=colour_storage_key,
        size=list(image.GetSize()),
        spacing=list(image.GetSpacing()),
        origin=list(image.GetOrigin()),
        direction=list(image.GetDirection()),
        pixel_type=image.GetPixelIDTypeAsString(),
    )


def volume_read(volume: Volume, *, colour: bool = False) -> sitk.Image:
    """The grey volume; with ``colour``, the RGB pixels instead where the series has them (a
    3-component image on the same grid, for models that take colour)."""
    if colour and volume.colour_storage_key:
        key, suffix = volume.colour_storage_key, Path(COLOUR_FILE).suffix
    else:
        key, suffix = volume.storage_key, ".nii.gz"
    with storage.local_path(key, suffix=suffix) as path:
        return sitk.ReadImage(str(path))


def volume_array(volume: Volume) -> np.ndarray:
    """The voxels as a (z, y, x) array, as SimpleITK's GetArrayFromImage gives them."""
    return sitk.GetArrayFromImage(volume_read(volume))
