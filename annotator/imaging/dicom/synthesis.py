"""Generated DICOM for images that did not arrive as DICOM (NIfTI / NRRD / MHA, video frames).

One single-frame instance per slice, explicit VR little endian, uncompressed:

- SOP class: CT Image Storage for CT, MR Image Storage for MR, Secondary Capture otherwise (the
  Modality attribute still says what the images are, e.g. US). Each instance is valid for its
  IOD as dicom3tools' ``dciodvfy`` checks it (no error; tests/annotator/test_synthesis.py):
  what is unknown about an image that came from a file is sent empty where DICOM allows that
  (Type 2 and 2C: PatientPosition, Laterality, KVP, ...).
- Geometry (LPS, as SimpleITK reads it): slice ``k`` sits at ``origin + direction @ (0, 0, k *
  spacing_z)``; ImageOrientationPatient is the first two columns of the direction matrix;
  PixelSpacing is (row spacing, column spacing) = (spacing_y, spacing_x).
- Voxel values (stored value ``s``, real value ``v = s * RescaleSlope + RescaleIntercept``):

  * 8-bit unsigned images are stored as 8 bits, other integer images whose values fit in int16 or
    uint16 as 16 bits, slope 1, intercept 0: they round-trip exactly;
  * floating-point images whose values are all integers that fit in int16 likewise;
  * anything else (real-valued floats, wider integers) is quantised linearly onto int16
    [-32000, 32000]: ``intercept = (max + min) / 2``, ``slope = (max - min) / 64000``, both
    rounded to what a DICOM decimal string can hold *before* quantising, so the decoded value
    differs from the original by at most ``slope / 2`` (plus float rounding), i.e.
    ``(max - min) / 128000``: about 0.0008 % of the volume's range.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from io import BytesIO

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from pydicom.valuerep import format_number_as_ds

SOP_CLASSES = {"CT": CTImageStorage, "MR": MRImageStorage}
IMAGE_FLAVOUR = {"CT": ("AXIAL",), "MR": ("OTHER",)}
QUANTISED_RANGE = 32000


@dataclass(frozen=True)
class Encoding:
    """How voxel values are stored: ``real = stored * slope + intercept``."""

    dtype: np.dtype
    bits: int
    signed: bool
    slope: float
    intercept: float
    slope_ds: str
    intercept_ds: str
    exact: bool

    def encode(self, values: np.ndarray) -> np.ndarray:
        if self.exact:
            return values.astype(self.dtype)
        stored = np.rint((values.astype(np.float64) - self.intercept) / self.slope)
        return np.clip(stored, -QUANTISED_RANGE, QUANTISED_RANGE).astype(self.dtype)


def _ds(value: float) -> tuple[str, float]:
    text = format_number_as_ds(float(value))
    assert isinstance(text, str)
    return text, float(text)


def choose_encoding(array: np.ndarray) -> Encoding:
    """The storage type and rescale for ``array`` (see the module's notes on quantisation)."""
    lo = float(array.min()) if array.size else 0.0
    hi = float(array.max()) if array.size else 0.0
    integral = np.issubdtype(array.dtype, np.integer) or bool(
        np.all(np.isfinite(array)) and np.all(np.rint(array) == array)
    )
    if integral:
        if array.dtype == np.uint8:
            return Encoding(np.dtype(np.uint8), 8, False, 1.0, 0.0, "1", "0", True)
        if lo >= -32768 and hi <= 32767:
            return Encoding(np.dtype("<i2"), 16, True, 1.0, 0.0, "1", "0", True)
        if lo >= 0 and hi <= 65535:
            return Encoding(np.dtype("<u2"), 16, False, 1.0, 0.0, "1", "0", True)
    if not np.all(np.isfinite(array)):
        raise ValueError("the image holds NaN or infinite values")
    intercept_ds, intercept = _ds((hi + lo) / 2)
    span = max(hi - intercept, intercept - lo)
    slope_ds, slope = _ds(span / QUANTISED_RANGE if span > 0 else 1.0)
    # The rounded slope may be a hair smaller than needed: nudge it up until the range fits.
    while span / slope > QUANTISED_RANGE + 0.5:
        slope_ds, slope = _ds(slope * (1 + 1e-9) + 1e-300)
    return Encoding(np.dtype("<i2"), 16, True, slope, intercept, slope_ds, intercept_ds, False)


def _direction(image: sitk.Image) -> np.ndarray:
    return np.array(image.GetDirection(), dtype=np.float64).reshape(3, 3)


def _base_dataset(
    *,
    modality: str,
    study_uid: str,
    series_uid: str,
    frame_of_reference_uid: str,
    patient_id: str,
    patient_name: str,
    study_description: str,
    series_description: str,
    series_number: int,
    accession_number: str,
    study_date: date | None,
) -> Dataset:
    now = datetime.now()
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    # CT and MR images need a third value: AXIAL (a cross-section, not a localizer) for CT, the
    # image flavour for MR (OTHER: unknown, the image came from a file).
    ds.ImageType = ["DERIVED", "SECONDARY", *IMAGE_FLAVOUR.get(modality, ())]
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    ds.StudyDate = (study_date or now.date()).strftime("%Y%m%d")
    ds.StudyTime = now.strftime("%H%M%S") if study_date is None else ""
    ds.AccessionNumber = accession_number
    ds.Modality = modality
    ds.Manufacturer = "Lesion Annotator"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = study_description
    ds.SeriesDescription = series_description
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = ""
    ds.SeriesNumber = series_number
    ds.Laterality = ""  # Type 2C: unknown for an image that came from a file
    ds.FrameOfReferenceUID = frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.BurnedInAnnotation = "NO"
    if modality in SOP_CLASSES:
        ds.PatientPosition = ""  # Type 2C for CT and MR: unknown
    if modality == "CT":
        ds.KVP = ""
        ds.AcquisitionNumber = 1
    elif modality == "MR":
        ds.RepetitionTime = ""  # Type 2C (not an echo-planar sequence): unknown
        ds.ScanningSequence = "RM"  # research mode: the acquisition is unknown
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = ""
        ds.EchoTime = ""
        ds.EchoTrainLength = ""
        ds.AcquisitionNumber = 1
    if modality not in SOP_CLASSES:
        ds.ConversionType = "WSD"  # workstation: generated here from another format
        ds.PatientOrientation = ""
    return ds


def iter_instances(
    image: sitk.Image,
    *,
    modality: str,
    study_uid: str,
    series_uid: str,
    frame_of_reference_uid: str,
    patient_id: str = "",
    patient_name: str = "",
    study_description: str = "",
    series_description: str = "",
    series_number: int = 1,
    accession_number: str = "",
    study_date: date | None = None,
    window: tuple[float, float] | None = None,
) -> Iterator[Dataset]:
    """The instances of ``image``, one per slice (index along the third axis), in order.

    ``window``: (center, width) in real values, written as WindowCenter / WindowWidth.
    """
    if image.GetDimension() == 2:
        image = sitk.JoinSeries(image)
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError("expected a 3D image with one value per voxel")
    array = sitk.GetArrayViewFromImage(image)
    encoding = choose_encoding(array)
    direction = _direction(image)
    origin = np.array(image.GetOrigin(), dtype=np.float64)
    sx, sy, sz = (float(s) for s in image.GetSpacing())
    orientation = [*direction[:, 0], *direction[:, 1]]
    sop_class = SOP_CLASSES.get(modality, SecondaryCaptureImageStorage)
    base = _base_dataset(
        modality=modality,
        study_uid=study_uid,
        series_uid=series_uid,
        frame_of_reference_uid=frame_of_reference_uid,
        patient_id=patient_id,
        patient_name=patient_name,
        study_description=study_description,
        series_description=series_description,
        series_number=series_number,
        accession_number=accession_number,
        study_date=study_date,
    )
    rows, columns = int(array.shape[1]), int(array.shape[2])
    for k in range(array.shape[0]):
        stored = np.ascontiguousarray(encoding.encode(array[k]))
        sop_uid = generate_uid()
        ds = Dataset()
        ds.update(base)
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = k + 1
        position = origin + direction @ np.array([0.0, 0.0, k * sz])
        ds.ImagePositionPatient = [_ds(v)[0] for v in position]
        ds.ImageOrientationPatient = [_ds(v)[0] for v in orientation]
        ds.SliceLocation = _ds(float(position @ direction[:, 2]))[0]
        ds.PixelSpacing = [_ds(sy)[0], _ds(sx)[0]]
        ds.SliceThickness = _ds(sz)[0]
        ds.SpacingBetweenSlices = _ds(sz)[0]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = columns
        ds.BitsAllocated = encoding.bits
        ds.BitsStored = encoding.bits
        ds.HighBit = encoding.bits - 1
        ds.PixelRepresentation = 1 if encoding.signed else 0
        if stored.size:
            ds.SmallestImagePixelValue = int(stored.min())
            ds.LargestImagePixelValue = int(stored.max())
        ds.RescaleIntercept = encoding.intercept_ds
        ds.RescaleSlope = encoding.slope_ds
        ds.RescaleType = "HU" if modality == "CT" else "US"
        if window is not None:
            ds.WindowCenter = _ds(window[0])[0]
            ds.WindowWidth = _ds(max(window[1], 1.0))[0]
        ds.PixelData = stored.tobytes()
        ds["PixelData"].VR = "OB" if encoding.bits == 8 else "OW"

        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.file_meta = meta
        yield ds


def to_bytes(ds: Dataset) -> bytes:
    """The instance as a DICOM Part 10 file."""
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
