"""A case's lesion masks as a DICOM Segmentation (highdicom) that references its source series.

One BINARY segment per lesion (so overlapping lesions stay whole), frame ``k`` of the pixel
array on the source instance whose ``frame_offset`` is ``k``: the volume's slices are the
instances sorted along the slice normal and each slice is the instance's pixel grid as stored
(rows = y, columns = x, see ``annotator.dicom.geometry``), so no flip or resampling is needed.

The object is deterministic: its UIDs are derived from what it holds (pydicom's ``generate_uid``
with entropy sources) and its dates and times are the acceptance time, so the same accepted case
always gives the same bytes.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from django.core.files.storage import default_storage
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

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
    """The series' instances in volume order, one single-frame instance per slice, or raise."""
    if series.generated:
        raise SegUnavailable(
            "the volume was imported from an image file or a video, not from DICOM: there are "
            "no source instances to reference"
        )
    instances = list(series.instances.order_by("frame_offset", "pk"))
    if any(i.number_of_frames != 1 for i in instances):
        raise SegUnavailable("multi-frame source instances are not supported yet")
    if [i.frame_offset for i in instances] != list(range(depth)):
        raise SegUnavailable(
            f"the series' {len(instances)} instances do not map one to one onto the volume's "
            f"{depth} slices"
        )
    return instances


# Type 2 patient and study attributes highdicom copies from the first source image: some
# (de-identified) files leave them out, which DICOM allows only as empty.
TYPE_2_COPIED = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
)


def _read(instance: Instance) -> Dataset:
    with default_storage.open(instance.storage_key, "rb") as f:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
    for keyword in TYPE_2_COPIED:
        if keyword not in ds:
            setattr(ds, keyword, None)
    return ds


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
    for source in sources:
        if "SliceThickness" not in source:  # Type 2, yet some files leave it out
            # highdicom needs it for the pixel measures: the volume's slice spacing.
            source.SliceThickness = f"{float(series.volume.spacing[2]):.6g}"
    pixels = np.stack([s.mask for s in segments], axis=-1).astype(bool)
    if not pixels.any():
        raise SegUnavailable("every lesion mask is empty")
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
        )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise SegUnavailable(f"highdicom could not build the segmentation: {exc}") from exc
    _fix_uids_and_times(seg, seed, when)
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path, enforce_file_format=True)
    return {"series_instance_uid": series_uid, "sop_instance_uid": sop_uid}
