"""The ``medsam2-npz`` export format, owned by the inference side and registered with the
workflow's export formats (:mod:`projects.export_formats`) when the inference app is ready.

``medsam2/<case>.npz`` holds ``imgs`` (z, y, x) uint8, the volume mapped as the MedSAM2 backend
maps it (the project's window preset, else CT at (40, 400), else the 0.5 / 99.5 percentiles of
the non-zero voxels), ``gts`` the instance labels of the NIfTI label map, ``spacing`` (x, y, z),
``direction`` (9, row-major) and ``origin`` (x, y, z), all float64 as SimpleITK gives them, like
MedSAM2's published samples. MedSAM2's training loader samples 8 consecutive slices starting on
a labelled one and refuses cases it cannot (fewer than 8 slices, or every lesion within the last
7): those get copies of their last slice (image and labels together, so every slice stays a true
image/label pair) appended until it can; the manifest's ``medsam2_padding`` says how many, and
the first ``size[2]`` slices are the volume's own, placed by ``origin`` and ``direction`` as in
the NIfTI."""

import io
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from inference.engine import ImageVolume
from inference.engine.intensity import intensity_mapping
from inference.engine.medsam2.trainer import DEFAULT_CT_WINDOW, clip_padding
from projects.export_formats import CaseExport, ExportFormat, register
from projects.export_formats.registry import ZIP_DATE

# MedSAM2's training clips: num_frames in its fine-tuning configs (sam2.1_hiera_tiny_finetune512).
MEDSAM2_CLIP_FRAMES = 8


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` without its clock: every member is dated 1980-01-01."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())


def medsam2_padding(labels: np.ndarray) -> int:
    """How many copies of the last slice MedSAM2's training sampler needs appended to use the
    case: it takes :data:`MEDSAM2_CLIP_FRAMES` consecutive slices whose first one holds an object
    (sam2's ``RandomUniformSampler``, ``reverse_time_prob`` 0), so the volume needs that many
    slices from its first labelled one on."""
    return clip_padding(labels, MEDSAM2_CLIP_FRAMES)


def _repeat_last(array: np.ndarray, count: int) -> np.ndarray:
    if count == 0:
        return array
    return np.concatenate([array, np.repeat(array[-1:], count, axis=0)])


@register
class MedSAM2Npz(ExportFormat):
    name = "medsam2-npz"
    rank = 20
    write_rank = 30

    def write_case(self, export: CaseExport) -> list[str]:
        task, case, name = export.task, export.case, export.name
        image = sitk.ReadImage(str(export.source))
        array = sitk.GetArrayFromImage(image)
        spacing = tuple(float(v) for v in image.GetSpacing())
        engine_volume = ImageVolume(
            array=array,
            spacing=(spacing[0], spacing[1], spacing[2]),
            modality=task.series.modality,
            window=task.round.project.window_preset(),
        )
        mapping = intensity_mapping(engine_volume, DEFAULT_CT_WINDOW)
        padding = medsam2_padding(export.instances)
        write_npz(
            export.out / "medsam2" / f"{name}.npz",
            {
                "imgs": _repeat_last(mapping.to_uint8(array), padding),
                "gts": _repeat_last(export.instances, padding),
                "spacing": np.asarray(spacing, dtype=np.float64),
                "direction": np.asarray(image.GetDirection(), dtype=np.float64),
                "origin": np.asarray(image.GetOrigin(), dtype=np.float64),
            },
        )
        case["intensity_mapping"] = asdict(mapping)
        case["medsam2_padding"] = padding
        return [f"medsam2/{name}.npz"]
