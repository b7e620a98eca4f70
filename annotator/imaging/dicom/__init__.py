"""DICOM ingest without Django: scan files, folders and zips into checked, sorted series.

``scan`` / ``scanned`` are the entry points; the result types are in
``annotator.imaging.dicom.types``.
"""

from annotator.imaging.dicom.archive import ArchiveRefused, extract_zip
from annotator.imaging.dicom.geometry import assemble_series
from annotator.imaging.dicom.pixels import build_volume, decode_instance
from annotator.imaging.dicom.reading import (
    LABEL_REASON,
    build_series,
    read_instance,
    reject_series_files,
    scan,
    scanned,
)
from annotator.imaging.dicom.types import (
    DUPLICATE,
    IMAGE,
    LABEL,
    REJECTED,
    DicomInstance,
    FileOutcome,
    Frame,
    Geometry,
    LabelObject,
    Limits,
    ScanResult,
    SeriesScan,
    StudyInfo,
)

__all__ = [
    "DUPLICATE",
    "IMAGE",
    "LABEL",
    "LABEL_REASON",
    "REJECTED",
    "ArchiveRefused",
    "DicomInstance",
    "FileOutcome",
    "Frame",
    "Geometry",
    "LabelObject",
    "Limits",
    "ScanResult",
    "SeriesScan",
    "StudyInfo",
    "assemble_series",
    "build_series",
    "build_volume",
    "decode_instance",
    "extract_zip",
    "read_instance",
    "reject_series_files",
    "scan",
    "scanned",
]
