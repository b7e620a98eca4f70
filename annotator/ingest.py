"""Import of DICOM studies (files, folders, zip archives) into a project.

Every series is imported on its own and atomically: its original files (byte for byte, under
``projects/<slug>/series/<series uid>/original/<sop uid>.dcm``) and its canonical NIfTI volume
(for a colour series also its RGB values, ``colour.mha``) are written first, then the Study /
Series / Instance / Volume rows and the task in one transaction; if anything fails the files are
deleted again. One bad file or series never stops the rest of the batch, and bad input never
raises: it is reported, file by file.
"""

import dataclasses
import functools
import io
import logging
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pydicom
import SimpleITK as sitk
from django.conf import settings
from django.db import DatabaseError, transaction

from annotator import storage
from annotator.colour import COLOUR_FILE
from annotator.deid import ProjectPseudonymizer
from annotator.dicom import (
    IMAGE,
    REJECTED,
    FileOutcome,
    LabelObject,
    Limits,
    ScanResult,
    SeriesScan,
    build_series,
    scan,
)
from annotator.dicom.deid import deidentify, shift_date
from annotator.dicomweb.wado import warm_series_metadata
from annotator.errors import DomainError
from annotator.label_import import dicom_labels_import
from annotator.models import Instance, Series, Study, Volume
from annotator.redact import without_paths
from projects.models import Project
from projects.services import task_create

log = logging.getLogger(__name__)

IMPORTED = "imported"
ALREADY_IMPORTED = "already imported"

Progress = Callable[[str, int, int], None]
# Called once per RTSTRUCT / SEG object after the images are in: returns the file's outcome
# message, or raises DomainError to reject it. Wired by the labels import.
LabelHandler = Callable[[Project, LabelObject], str]


@dataclass
class SeriesSummary:
    series_instance_uid: str
    study_instance_uid: str
    modality: str
    description: str
    status: str  # "imported", "already imported" or "rejected"
    reason: str = ""
    instances: int = 0
    slices: int = 0
    size: list[int] | None = None  # (x, y, z), as Volume.size
    spacing: list[float] | None = None
    warnings: list[str] = field(default_factory=list)
    series_id: int | None = None
    volume_id: int | None = None
    task_id: int | None = None


@dataclass
class ImportReport:
    """What happened to every input file and every series found; JSON-ready via ``to_dict``."""

    files: list[FileOutcome] = field(default_factory=list)
    series: list[SeriesSummary] = field(default_factory=list)

    @property
    def imported_series(self) -> int:
        return sum(s.status == IMPORTED for s in self.series)

    @property
    def rejected_files(self) -> list[FileOutcome]:
        return [f for f in self.files if f.status == REJECTED]

    def counts(self) -> dict[str, int]:
        files = Counter(f.status for f in self.files)
        series = Counter(s.status for s in self.series)
        return {
            "files": len(self.files),
            **{f"files {status}": n for status, n in sorted(files.items())},
            "series": len(self.series),
            **{f"series {status}": n for status, n in sorted(series.items())},
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts(),
            "series": [dataclasses.asdict(s) for s in self.series],
            "files": [dataclasses.asdict(f) for f in self.files],
        }


def _key_part(uid: str) -> str:
    return re.sub(r"[^0-9A-Za-z.]+", "_", uid)[:64] or "unknown"


def _study_date(value: str) -> date | None:
    try:
        return datetime.strptime(value, "%Y%m%d").date()
    except ValueError:
        return None


def _summary(series: SeriesScan, status: str, reason: str = "") -> SeriesSummary:
    image = series.image
    return SeriesSummary(
        series_instance_uid=series.series_instance_uid,
        study_instance_uid=series.study.study_instance_uid,
        modality=series.modality,
        description=series.description,
        status=status,
        reason=reason,
        instances=len(series.instances),
        slices=series.number_of_slices,
        size=list(image.GetSize()) if image is not None else None,
        spacing=list(image.GetSpacing()) if image is not None else None,
        warnings=list(series.warnings),
    )


def _mark_files(result: ScanResult, series: SeriesScan, status: str, reason: str) -> None:
    members = {i.sop_instance_uid for i in series.instances}
    for outcome in result.files:
        if outcome.status == IMAGE and outcome.sop_instance_uid in members:
            outcome.status = status
            outcome.reason = reason


def _already_imported(project: Project, series_uid: str) -> bool:
    return Series.objects.filter(study__project=project, series_instance_uid=series_uid).exists()


def _deidentified_bytes(path: Path, deid: ProjectPseudonymizer) -> bytes:
    ds = pydicom.dcmread(path)
    deidentify(ds, deid)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _store(
    project: Project, series: SeriesScan, workdir: Path, deid: ProjectPseudonymizer | None
) -> SeriesSummary:
    """Write the files, then the rows in one transaction; delete the files if anything fails.

    With ``deid``, the files stored are the de-identified ones and the rows carry the new UIDs,
    pseudonyms and shifted dates; otherwise the files are kept byte for byte.
    """
    image = series.image
    assert image is not None
    uid = deid.uid if deid is not None else str
    study_info = series.study
    patient_id, patient_name = study_info.patient_id, study_info.patient_name
    accession, description, study_date = (
        study_info.accession_number,
        study_info.description,
        study_info.study_date,
    )
    series_description = series.description
    if deid is not None:
        patient_id, shift = deid.patient(study_info.patient_id, study_info.patient_name)
        patient_name, accession, description, series_description = patient_id, "", "", ""
        study_date = shift_date(study_date, shift) if study_date else ""
    series_uid = uid(series.series_instance_uid)
    prefix = f"projects/{project.slug}/series/{_key_part(series_uid)}"
    canonical = workdir / "volume.nii.gz"
    sitk.WriteImage(image, str(canonical), useCompression=True)
    colour_file = None
    if series.colour is not None:
        colour_file = workdir / COLOUR_FILE
        sitk.WriteImage(series.colour, str(colour_file), useCompression=True)
    with storage.cleanup_on_error([]) as written:
        keys, sizes = {}, {}
        for instance in series.instances:
            key = f"{prefix}/original/{_key_part(uid(instance.sop_instance_uid))}.dcm"
            if deid is not None:
                content = _deidentified_bytes(instance.path, deid)
                sizes[instance.sop_instance_uid] = len(content)
                keys[instance.sop_instance_uid] = storage.save_file(key, content)
            else:
                with open(instance.path, "rb") as f:
                    keys[instance.sop_instance_uid] = storage.save_file(key, f)
            written.append(keys[instance.sop_instance_uid])
        with open(canonical, "rb") as f:
            volume_key = storage.save_file(f"{prefix}/volume.nii.gz", f)
            written.append(volume_key)
        colour_key = ""
        if colour_file is not None:
            with open(colour_file, "rb") as f:
                colour_key = storage.save_file(f"{prefix}/{COLOUR_FILE}", f)
                written.append(colour_key)
        with transaction.atomic():
            study, _ = Study.objects.get_or_create(
                project=project,
                study_instance_uid=uid(study_info.study_instance_uid),
                defaults={
                    "patient_id": patient_id[:64],
                    "patient_name": patient_name[:200],
                    "accession_number": accession[:64],
                    "description": description[:200],
                    "study_date": _study_date(study_date),
                },
            )
            row = Series.objects.create(
                study=study,
                series_instance_uid=series_uid,
                modality=series.modality[:8],
                series_number=series.series_number,
                description=series_description[:200],
                frame_of_reference_uid=(
                    uid(series.frame_of_reference_uid) if series.frame_of_reference_uid else ""
                )[:64],
                original_prefix=f"{prefix}/original/",
            )
            Instance.objects.bulk_create(
                Instance(
                    series=row,
                    sop_instance_uid=uid(i.sop_instance_uid),
                    sop_class_uid=i.sop_class_uid[:64],
                    instance_number=i.instance_number,
                    transfer_syntax_uid=i.transfer_syntax_uid[:64],
                    number_of_frames=i.number_of_frames,
                    frame_offset=i.frame_offset,
                    storage_key=keys[i.sop_instance_uid],
                    size_bytes=sizes.get(i.sop_instance_uid, i.size_bytes),
                )
                for i in series.instances
            )
            volume = Volume.objects.create(
                series=row,
                storage_key=volume_key,
                colour_storage_key=colour_key,
                size=list(image.GetSize()),
                spacing=list(image.GetSpacing()),
                origin=list(image.GetOrigin()),
                direction=list(image.GetDirection()),
                pixel_type=image.GetPixelIDTypeAsString(),
            )
            task = task_create(series=row)
    summary = _summary(series, IMPORTED)
    summary.series_id, summary.volume_id = row.pk, volume.pk
    summary.task_id = task.pk if task is not None else None
    return summary


def _import_series(
    project: Project,
    result: ScanResult,
    series: SeriesScan,
    workdir: Path,
    deid: ProjectPseudonymizer | None,
    limits: Limits,
) -> SeriesSummary:
    if series.error:
        return _summary(series, REJECTED, series.error)
    series_uid = deid.uid(series.series_instance_uid) if deid else series.series_instance_uid
    if _already_imported(project, series_uid):
        reason = "already imported: this series is in the project (not duplicated)"
        _mark_files(result, series, ALREADY_IMPORTED, reason)
        return _summary(series, ALREADY_IMPORTED, reason)
    build_series(result, series, limits)
    if series.error:
        return _summary(series, REJECTED, series.error)
    try:
        summary = _store(project, series, workdir, deid)
    except (DatabaseError, OSError, RuntimeError, DomainError) as exc:
        # A concurrent import of the same series loses the unique constraint race here.
        if _already_imported(project, series_uid):
            reason = "already imported: this series is in the project (not duplicated)"
            _mark_files(result, series, ALREADY_IMPORTED, reason)
            return _summary(series, ALREADY_IMPORTED, reason)
        log.exception("series %s could not be stored", series.series_instance_uid)
        series.error = f"could not be stored: {without_paths(str(exc))}"
        _mark_files(result, series, REJECTED, f"series rejected: {series.error}")
        return _summary(series, REJECTED, series.error)
    finally:
        series.image = series.colour = None  # stored (or not): free their memory
    _mark_files(result, series, IMPORTED, "")
    if summary.series_id is not None:
        warm_series_metadata(Series.objects.get(pk=summary.series_id))
    return summary


def _import_label(
    project: Project, result: ScanResult, label: LabelObject, handler: LabelHandler
) -> None:
    outcome = next(f for f in result.files if f.source == label.source)
    try:
        outcome.reason = handler(project, label)
        outcome.status = IMPORTED
    except DomainError as exc:
        outcome.status = REJECTED
        outcome.reason = without_paths(exc.message)
    except Exception as exc:  # a malformed object must not stop the import: report it
        log.exception("label object %s could not be imported", label.source)
        outcome.status = REJECTED
        outcome.reason = f"could not be read: {without_paths(str(exc))}"


def studies_import(
    *,
    project: Project,
    paths: Sequence[Path],
    display_names: Mapping[Path, str] | None = None,
    progress: Progress | None = None,
    label_handler: LabelHandler | None = None,
    zip_limits: Mapping[str, Any] | None = None,
) -> ImportReport:
    """Import every DICOM series found in ``paths`` (files, folders, zip archives).

    ``display_names`` maps an input path to the name shown in the report (an upload's file
    name); ``progress(stage, done, total)`` is called as files are read and series stored.
    Label objects (RTSTRUCT, SEG) are imported after the images by ``label_handler``
    (default: their regions become lesions of the series they refer to). Projects that
    de-identify get de-identified files, UIDs and dates. Never raises for bad input.
    """
    report = ImportReport()
    limits = Limits(max_voxels=settings.MAX_IMAGE_VOXELS, max_frames=settings.MAX_IMAGE_FRAMES)
    deid = ProjectPseudonymizer(project) if project.deidentify else None
    if label_handler is None:
        label_handler = functools.partial(
            dicom_labels_import, uid_map=deid.uid if deid is not None else str
        )
    with tempfile.TemporaryDirectory(prefix="annotator-ingest-") as tmp:
        workdir = Path(tmp)
        extracted = workdir / "inputs"
        extracted.mkdir()
        result = scan(
            paths,
            workdir=extracted,
            display_names=display_names,
            build=False,
            progress=progress,
            zip_limits=zip_limits,
            limits=limits,
        )
        if progress is not None and result.series:
            progress("importing series", 0, len(result.series))
        for done, series in enumerate(result.series, start=1):
            report.series.append(_import_series(project, result, series, workdir, deid, limits))
            if progress is not None:
                progress("importing series", done, len(result.series))
        for label in result.labels:
            _import_label(project, result, label, label_handler)
        report.files = result.files
    return report
