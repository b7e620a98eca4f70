"""A case's lesion masks as a DICOM Segmentation (highdicom) that references its source series.

One BINARY segment per lesion (so overlapping lesions stay whole). The source is either one
single-frame instance per slice (frame ``k`` of the pixel array on the instance whose
``frame_offset`` is ``k``) or one multi-frame instance (frame ``k`` on its frame ``k``, which
the import placed by its position along the slice normal). Each slice is the instance's pixel
grid as stored (rows = y, columns = x, see ``annotator.imaging.dicom.geometry``), so no flip or
resampling is needed. Volumes imported from image files reference the DICOM generated for them
at import (:mod:`annotator.imaging.dicom.synthesis`).

Sources are sanitised before highdicom copies their patient and study attributes
(:func:`sanitized_source`): real files carry empty or invalid elements that highdicom refuses or
that would make the SEG invalid for its IOD.

The object is deterministic: its UIDs are derived from what it holds (pydicom's ``generate_uid``
with entropy sources) and its dates and times are the acceptance time, so the same accepted case
always gives the same bytes.
"""

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from django.core.files.storage import default_storage
from highdicom._standard_utils import get_sop_class_iod_map
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from annotator.imaging.dicom.geometry import functional_item
from annotator.models import Instance, Series

MANUFACTURER = "lesion-annotator"
MODEL_NAME = "lesion annotation platform"
SOFTWARE_VERSION = "1"
LESION_CATEGORY = Code("49755003", "SCT", "Morphologically Altered Structure")
LESION_TYPE = codes.SCT.Lesion


class SegUnavailable(Exception):
    """The case cannot get a DICOM SEG; the message says why (it goes into the manifest)."""


@dataclass(frozen=True)
class SegSegment:
    label: str
    mask: np.ndarray  # bool (z, y, x) on the series' volume grid
    tracking_id: str
    tracking_uid: str
    # None: drawn (or corrected) by hand; else (name, version) of the model behind the mask.
    algorithm: tuple[str, str] | None = None


def source_instances(series: Series, depth: int) -> list[Instance]:
    """The series' instances in volume order, or raise.

    Either one single-frame instance per slice, or one multi-frame instance holding every slice
    (a DICOM SEG references one multi-frame source image or a set of single-frame ones). Series
    imported from an image file have the instances generated for them
    (:mod:`annotator.imaging.dicom.synthesis`), referenced like any other.
    """
    instances = list(series.instances.order_by("frame_offset", "pk"))
    if not instances:
        raise SegUnavailable("the series has no stored DICOM instances to reference")
    if len(instances) == 1 and instances[0].number_of_frames == depth:
        return instances
    multi = [i for i in instances if i.number_of_frames != 1]
    if multi:
        raise SegUnavailable(
            f"the series' slices are spread over {len(instances)} objects, {len(multi)} of them "
            "multi-frame: a DICOM SEG references either one multi-frame image or single-frame "
            "images"
        )
    if [i.frame_offset for i in instances] != list(range(depth)):
        raise SegUnavailable(
            f"the series' {len(instances)} instances do not map one to one onto the volume's "
            f"{depth} slices"
        )
    return instances


# Type 2 attributes highdicom reads from the first source image (patient and study): some
# (de-identified) files leave them out, which DICOM allows only as empty; they stay when empty.
TYPE_2_COPIED = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)
PATIENT_SEX = ("M", "F", "O")
# What highdicom needs of every source image to place the segmentation's frames.
REQUIRED = ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Rows", "Columns")


def _empty(element: DataElement) -> bool:
    if element.VR == "SQ":
        return len(element.value) == 0
    return element.value is None or element.value == "" or element.VM == 0


def _valid_date(value: object) -> bool:
    return isinstance(value, str) and re.fullmatch(r"\d{8}", value) is not None


def _valid_time(value: object) -> bool:
    return (
        isinstance(value, str)
        and re.fullmatch(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?", value) is not None
    )


def sanitized_source(ds: Dataset, instance: Instance) -> Dataset:
    """``ds`` made fit for highdicom, which copies its patient, study and specimen attributes.

    Text is decoded with the source's character set (the SEG is written as UTF-8); empty
    top-level elements other than the Type 2 ones highdicom reads are dropped (an empty Type 1C
    SpecificCharacterSet, say, is invalid where it would be copied to); Type 2 values that are
    missing or invalid (PatientSex "U", a date that is not YYYYMMDD) become empty; an empty
    SOPClassUID is taken from the stored instance. Raises :class:`SegUnavailable` naming what is
    missing when the object cannot be referenced at all.
    """
    with contextlib.suppress(LookupError, ValueError):
        ds.decode()
    for element in list(ds):
        if element.tag.group == 0x0002 or element.keyword in TYPE_2_COPIED:
            continue
        if _empty(element):
            del ds[element.tag]
    for keyword in TYPE_2_COPIED:
        if keyword not in ds or ds[keyword].value is None:
            setattr(ds, keyword, "")
    if ds.PatientSex not in PATIENT_SEX:
        ds.PatientSex = ""
    for keyword in ("StudyDate", "PatientBirthDate"):
        if ds[keyword].value != "" and not _valid_date(ds[keyword].value):
            ds[keyword].value = ""
    if ds.StudyTime != "" and not _valid_time(ds.StudyTime):
        ds.StudyTime = ""
    if "SOPClassUID" not in ds:
        # The same object's file meta header declares its class too.
        meta = getattr(ds, "file_meta", Dataset())
        declared = instance.sop_class_uid or meta.get("MediaStorageSOPClassUID", "")
        if not declared:
            raise SegUnavailable(
                f"source instance {instance.sop_instance_uid} has no SOPClassUID (nor a "
                "MediaStorageSOPClassUID): its kind of image is unknown"
            )
        ds.SOPClassUID = declared
    if ds.SOPClassUID not in get_sop_class_iod_map():
        raise SegUnavailable(
            f"source instance {instance.sop_instance_uid} has SOP class {ds.SOPClassUID}, not a "
            "standard image storage class a DICOM SEG can reference"
        )
    missing = [k for k in REQUIRED if k not in ds]
    if missing:
        raise SegUnavailable(
            f"source instance {instance.sop_instance_uid} lacks {', '.join(missing)}"
        )
    return ds


def _read(instance: Instance) -> Dataset:
    with default_storage.open(instance.storage_key, "rb") as f:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
    return sanitized_source(ds, instance)


def frame_slices(ds: Dataset) -> list[int]:
    """The volume slice of each frame of the multi-frame ``ds``, as the import ordered them:
    by position along the slice normal where every frame has one, else in stored order."""
    count = int(ds.get("NumberOfFrames", 1) or 1)
    positions, orientations = [], []
    for k in range(count):
        plane = functional_item(ds, k, "PlanePositionSequence")
        axes = functional_item(ds, k, "PlaneOrientationSequence")
        if plane is None or axes is None or "ImagePositionPatient" not in plane:
            return list(range(count))
        positions.append([float(v) for v in plane.ImagePositionPatient])
        orientations.append([float(v) for v in axes.ImageOrientationPatient])
    row, column = np.array(orientations[0][:3]), np.array(orientations[0][3:])
    distances = np.array(positions) @ np.cross(row, column)
    slices = [0] * count
    for index, frame in enumerate(np.argsort(distances, kind="stable")):
        slices[int(frame)] = index
    return slices


def _fix_uids_and_times(seg: Dataset, seed: Sequence[str], when: datetime) -> None:
    """Replace what highdicom takes from the clock or a random UID by values of the input."""
    date, time = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    for keyword in ("InstanceCreationDate", "ContentDate", "SeriesDate"):
        if keyword in seg:
            setattr(seg, keyword, date)
    for keyword in ("InstanceCreationTime", "ContentTime", "SeriesTime"):
        if keyword in seg:
            setattr(seg, keyword, time)
    for item in seg.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = when.strftime("%Y%m%d%H%M%S")
    organization = str(generate_uid(entropy_srcs=[*seed, "dimension-organization"]))
    for keyword in ("DimensionOrganizationSequence", "DimensionIndexSequence"):
        for item in seg.get(keyword, []):
            item.DimensionOrganizationUID = organization


def _complete_pixel_measures(source: Dataset, series: Series) -> None:
    """Complete the multi-frame source's shared pixel measures with the volume's spacing:
    highdicom copies them as they are, and a SEG whose measures lack SliceThickness is invalid
    (highdicom itself cannot read it back)."""
    item = functional_item(source, 0, "PixelMeasuresSequence") or Dataset()
    spacing_x, spacing_y, spacing_z = (float(v) for v in series.volume.spacing)
    measures = hd.PixelMeasuresSequence(
        pixel_spacing=[float(v) for v in item.get("PixelSpacing") or [spacing_y, spacing_x]],
        slice_thickness=float(item.get("SliceThickness") or spacing_z),
        spacing_between_slices=float(item.get("SpacingBetweenSlices") or spacing_z),
    )
    if "SharedFunctionalGroupsSequence" not in source or not source.SharedFunctionalGroupsSequence:
        source.SharedFunctionalGroupsSequence = [Dataset()]
    source.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence = measures
    for frame in source.get("PerFrameFunctionalGroupsSequence", []):
        if "PixelMeasuresSequence" in frame:  # the shared one holds them now
            del frame.PixelMeasuresSequence


def seg_write(
    path: Path,
    *,
    series: Series,
    segments: Sequence[SegSegment],
    seed: Sequence[str],
    when: datetime,
    description: str,
) -> dict[str, str]:
    """Write ``segments`` as one DICOM SEG at ``path``; returns its series and SOP UIDs.

    ``seed``: strings that identify the content (project, round, case, final mask versions);
    the same seed gives the same UIDs. Raises :class:`SegUnavailable` when the series cannot
    be referenced or highdicom refuses the object.
    """
    if not segments:
        raise SegUnavailable("the case has no lesion")
    depth = segments[0].mask.shape[0]
    instances = source_instances(series, depth)
    sources = [_read(instance) for instance in instances]
    single_frame = instances[0].number_of_frames == 1
    for source in sources if single_frame else []:
        if "SliceThickness" not in source:  # Type 2, yet some files leave it out
            # highdicom needs it for the pixel measures: the volume's slice spacing.
            source.SliceThickness = f"{float(series.volume.spacing[2]):.6g}"
    pixels = np.stack([s.mask for s in segments], axis=-1).astype(bool)
    if not pixels.any():
        raise SegUnavailable("every lesion mask is empty")
    if not single_frame:
        # One multi-frame source: the SEG's frame k lies on the source's frame k.
        if functional_item(sources[0], 0, "PlanePositionSequence") is None:
            raise SegUnavailable(
                f"the multi-frame source {instances[0].sop_instance_uid} gives its frames no "
                "position (no PlanePositionSequence in its functional groups): a DICOM SEG "
                "could not place them"
            )
        slices = frame_slices(sources[0])
        if sorted(slices) != list(range(depth)):
            raise SegUnavailable(
                f"the multi-frame source has {len(slices)} frames for {depth} slices"
            )
        pixels = pixels[slices]
        _complete_pixel_measures(sources[0], series)
    descriptions = []
    for number, segment in enumerate(segments, start=1):
        algorithm = None
        if segment.algorithm is not None:
            algorithm = hd.AlgorithmIdentificationSequence(
                name=segment.algorithm[0][:64],
                family=codes.cid7162.ArtificialIntelligence,
                version=segment.algorithm[1][:64],
            )
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=segment.label[:64],
                segmented_property_category=LESION_CATEGORY,
                segmented_property_type=LESION_TYPE,
                algorithm_type=(
                    hd.seg.SegmentAlgorithmTypeValues.MANUAL
                    if algorithm is None
                    else hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC
                ),
                algorithm_identification=algorithm,
                tracking_id=segment.tracking_id[:64],
                tracking_uid=segment.tracking_uid,
            )
        )
    series_uid = str(generate_uid(entropy_srcs=[*seed, "series"]))
    sop_uid = str(generate_uid(entropy_srcs=[*seed, "instance"]))
    try:
        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=pixels,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=series_uid,
            series_number=max(1, (series.series_number or 0) + 1000),
            sop_instance_uid=sop_uid,
            instance_number=1,
            manufacturer=MANUFACTURER,
            manufacturer_model_name=MODEL_NAME,
            software_versions=SOFTWARE_VERSION,
            device_serial_number="0",
            content_description=description[:64],
            content_label="LESIONS",
            specific_character_set="ISO_IR 192",  # the sources' text, decoded, as UTF-8
        )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise SegUnavailable(f"highdicom could not build the segmentation: {exc}") from exc
    _fix_uids_and_times(seg, seed, when)
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path, enforce_file_format=True)
    return {"series_instance_uid": series_uid, "sop_instance_uid": sop_uid}
