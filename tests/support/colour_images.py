"""Colour test images made on the spot: a coloured disk on a background of another hue, as RGB
arrays, PNG/JPEG files and RGB DICOM series (SamplesPerPixel 3, PhotometricInterpretation RGB)."""

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

# A yellow lesion on a blue wall: they differ in hue and in luma (BT.601: about 191 vs 65).
LESION_RGB = (230, 200, 40)
WALL_RGB = (40, 60, 160)


def rgb_disk(
    depth: int = 1, height: int = 60, width: int = 80, *, seed: int = 0
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """(z, y, x, 3) uint8 RGB frames with a noisy disk (narrowing towards the first and last
    frame), and its (z, y, x) mask."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.ogrid[:depth, :height, :width]
    centre = (depth - 1) / 2
    taper = np.sqrt(np.clip(1 - ((zz - centre) / (depth / 2 + 0.5)) ** 2, 0, 1))
    radius = 0.3 * min(height, width) * taper
    cy, cx = 0.45 * height, 0.55 * width
    mask = np.asarray((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2, dtype=bool)
    rgb = np.where(mask[..., np.newaxis], LESION_RGB, WALL_RGB).astype(np.float32)
    rgb += rng.normal(0.0, 8.0, rgb.shape).astype(np.float32)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8), mask


def write_rgb_dicom_series(
    folder: Path,
    rgb: npt.NDArray[np.uint8],
    *,
    spacing: tuple[float, float, float] = (0.5, 0.5, 2.0),
    modality: str = "ES",
) -> list[Path]:
    """One RGB secondary-capture instance per frame of ``rgb`` (z, y, x, 3), with the geometry
    a series needs (position, orientation, pixel spacing); returns the files in slice order."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    sx, sy, sz = spacing
    paths = []
    for k, plane in enumerate(rgb):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"rgb{k:03d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = (
            meta.MediaStorageSOPClassUID,
            meta.MediaStorageSOPInstanceUID,
        )
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientID, ds.PatientName = modality, "COLOUR-1", "Colour^Test"
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.ImagePositionPatient = [0.0, 0.0, k * sz]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [sy, sx]
        ds.SliceThickness = sz
        ds.Rows, ds.Columns = plane.shape[:2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = np.ascontiguousarray(plane, dtype=np.uint8).tobytes()
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths
