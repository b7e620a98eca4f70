"""The typed results of scanning DICOM input (plain data, JSON-friendly where it matters)."""

from dataclasses import dataclass, field
from pathlib import Path

import SimpleITK as sitk

# A file's outcome while scanning; the import service adds "imported" and "already imported".
IMAGE = "image"  # an image instance of a series (that series may still be rejected)
DUPLICATE = "duplicate"  # the same SOPInstanceUID as an earlier file: the first one is kept
LABEL = "label"  # an RTSTRUCT / SEG object: set aside for the labels import
REJECTED = "rejected"  # unreadable, not an image, undecodable, or its series was rejected


@dataclass(frozen=True)
class Limits:
    """Caps on what one import may allocate (the web app passes the operator's settings)."""

    max_voxels: int = 1024**3  # voxels of one series' volume, or of one object's frames
    max_frames: int = 10_000  # NumberOfFrames of one object


DEFAULT_LIMITS = Limits()


@dataclass
class FileOutcome:
    source: str  # the name the user knows: a path, or "archive.zip/entry"
    status: str
    reason: str = ""
    series_instance_uid: str = ""
    sop_instance_uid: str = ""


@dataclass(frozen=True)
class StudyInfo:
    study_instance_uid: str
    patient_id: str = ""
    patient_name: str = ""
    accession_number: str = ""
    description: str = ""
    study_date: str = ""  # DICOM DA, YYYYMMDD, or ""


@dataclass(frozen=True)
class Frame:
    position: tuple[float, ...] | None  # ImagePositionPatient (x, y, z), mm, LPS
    orientation: tuple[float, ...] | None  # ImageOrientationPatient: row cosines, column cosines


@dataclass
class DicomInstance:
    """One image object (one file) and where its frames ended up in the series' volume."""

    path: Path  # a local copy to read (inside the scan's workdir for archive entries)
    source: str
    size_bytes: int
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    instance_number: int | None
    study: StudyInfo
    series_instance_uid: str
    modality: str
    series_number: int | None
    series_description: str
    frame_of_reference_uid: str
    rows: int
    columns: int
    pixel_spacing: tuple[float, float] | None  # (row spacing, column spacing), mm
    frames: list[Frame]
    # Why this object's geometry cannot be used (a position, orientation or spacing that is
    # present but not finite numbers); assemble_series rejects its series with it.
    geometry_error: str = ""
    # Set by assemble_series: the volume slice of each of this object's frames, in frame order.
    slice_indices: list[int] = field(default_factory=list)

    @property
    def number_of_frames(self) -> int:
        return len(self.frames)

    @property
    def frame_offset(self) -> int:
        """The volume index of this object's first frame (0 before assembly)."""
        return min(self.slice_indices, default=0)


@dataclass
class LabelObject:
    """An RTSTRUCT or SEG object, set aside: its contents are read by the labels import."""

    path: Path
    source: str
    sop_class_uid: str
    sop_class_name: str
    modality: str
    study: StudyInfo
    series_instance_uid: str
    sop_instance_uid: str


@dataclass(frozen=True)
class Geometry:
    """SimpleITK's view of the volume: (x, y, z) order, LPS, direction row-major."""

    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    direction: tuple[float, ...]


@dataclass
class SeriesScan:
    """One series: its instances sorted into volume order, the volume, warnings or an error."""

    study: StudyInfo
    series_instance_uid: str
    modality: str
    series_number: int | None
    description: str
    frame_of_reference_uid: str
    instances: list[DicomInstance]
    geometry: Geometry | None = None
    image: sitk.Image | None = None
    # A colour series' RGB values on the grid of ``image`` (its luma); None for grey ones.
    colour: sitk.Image | None = None
    warnings: list[str] = field(default_factory=list)
    error: str = ""  # why the whole series is rejected; "" when it is good

    @property
    def number_of_slices(self) -> int:
        return sum(i.number_of_frames for i in self.instances)


@dataclass
class ScanResult:
    files: list[FileOutcome] = field(default_factory=list)
    series: list[SeriesScan] = field(default_factory=list)
    labels: list[LabelObject] = field(default_factory=list)
