"""Import of DICOM studies (files, folders, zip archives) into a project.

Every series is imported on its own and atomically: its original files (byte for byte, under
``projects/<slug>/series/<series uid>/original/<sop uid>.dcm``) and its canonical NIfTI volume
(for a colour series also its RGB values, ``colour.mha``) are written first, then the Study /
Series / Instance / Volume rows and the task in one transaction; if anything fails the files are
deleted again. One bad file or series never stops the rest of the batch, and bad input never
raises: it is reported, file by file.
"""

import dataclasses
import io
import logging
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pydicom
from django.conf import settings
from django.db import DatabaseError, transaction

from annotator.core import storage
from annotator.core.errors import DomainError
from annotator.core.redact import without_paths
from annotator.imaging.dicom import (
    IMAGE,
    LABEL,
    REJECTED,
    FileOutcome,
    LabelObject,
    Limits,
    ScanResult,
    SeriesScan,
    build_series,
    scan,
)
from annotator.imaging.dicom.deid import deidentify
from annotator.imaging.dicomweb.wado import warm_series_metadata
from annotator.imaging.pseudonyms import ProjectPseudonymizer
from annotator.imaging.storage_keys import key_part, series_keys
from annotator.imaging.volumes import volume_create, volume_files_store
from annotator.models import Instance, Series, Study
from projects.intake.label_import import LabelsImported, dicom_labels_import
from projects.models import Project
from projects.task_services import task_create

log = logging.getLogger(__name__)

IMPORTED = "imported"
ALREADY_IMPORTED = "already imported"

Progress = Callable[[str, int, int], None]
# Called once per RTSTRUCT / SEG object after the images are in, with the list collecting the
# keys of the files it writes: returns what it made, or raises DomainError to reject it. Wired
# by the labels import.
LabelHandler = Callable[[Project, LabelObject, list[str]], LabelsImported]
NOT_IMPORTED = "not imported"


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
class LabelSummary:
    """What one RTSTRUCT or SEG object of the upload made (``LabelsImported.to_dict``), or why
    it made nothing."""

    source: str
    sop_instance_uid: str
    status: str  # "imported", "already imported", "rejected" or "not imported"
    reason: str = ""
    series: int | None = None
    matched_by: str = ""
    created: list[dict[str, Any]] = field(default_factory=list)
    unchanged: list[dict[str, Any]] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class ImportReport:
    """What happened to every input file and every series found; JSON-ready via ``to_dict``.

    The label objects (RTSTRUCT, SEG) of one upload are imported all together or not at all:
    ``labels`` says per object what it created, what was already there (``unchanged``) and
    which of its names no class of the project has (``unmatched``)."""

    files: list[FileOutcome] = field(default_factory=list)
    series: list[SeriesSummary] = field(default_factory=list)
    labels: list[LabelSummary] = field(default_factory=list)

    @property
    def imported_series(self) -> int:
        return sum(s.status == IMPORTED for s in self.series)

    @property
    def created_lesions(self) -> int:
        return sum(len(label.created) for label in self.labels)

    @property
    def rejected_files(self) -> list[FileOutcome]:
        return [f for f in self.files if f.status == REJECTED]

    def counts(self) -> dict[str, int]:
        files = Counter(f.status for f in self.files)
        series = Counter(s.status for s in self.series)
        lesions = (
            {
                "lesions created": self.created_lesions,
                "lesions unchanged": sum(len(label.unchanged) for label in self.labels),
            }
            if self.labels
            else {}
        )
        return {
            "files": len(self.files),
            **{f"files {status}": n for status, n in sorted(files.items())},
            "series": len(self.series),
            **{f"series {status}": n for status, n in sorted(series.items())},
            **lesions,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts(),
            "series": [dataclasses.asdict(s) for s in self.series],
            "labels": [dataclasses.asdict(label) for label in self.labels],
            "files": [dataclasses.asdict(f) for f in self.files],
        }


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


def _deidentified(path: Path, deid: ProjectPseudonymizer) -> tuple[bytes, str]:
    """The de-identified file and its StudyDate (moved with StudyTime: the row's date)."""
    ds = pydicom.dcmread(path)
    deidentify(ds, deid, deid.options)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue(), str(ds.get("StudyDate") or "")


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
        patient_id, _ = deid.patient(study_info.patient_id, study_info.patient_name)
        patient_name, accession, description, series_description = patient_id, "", "", ""
        study_date = ""  # the files' own, once de-identified (below)
    series_uid = uid(series.series_instance_uid)
    layout = series_keys(project.slug, series_uid)
    with storage.cleanup_on_error([]) as written:
        keys, sizes = {}, {}
        for instance in series.instances:
            key = layout.original(f"{key_part(uid(instance.sop_instance_uid))}.dcm")
            if deid is not None:
                content, study_date = _deidentified(instance.path, deid)
                sizes[instance.sop_instance_uid] = len(content)
                keys[instance.sop_instance_uid] = storage.save_file(key, content)
            else:
                with open(instance.path, "rb") as f:
                    keys[instance.sop_instance_uid] = storage.save_file(key, f)
            written.append(keys[instance.sop_instance_uid])
        volume_key, colour_key = volume_files_store(
            keys=layout, image=image, colour=series.colour, workdir=workdir, written=written
        )
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
                original_prefix=layout.original_prefix,
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
            volume = volume_create(
                series=row, image=image, storage_key=volume_key, colour_storage_key=colour_key
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


class _LabelsRefused(Exception):
    """Leaves the labels' transaction: one object was refused, so none is imported."""


def _import_labels(
    project: Project, result: ScanResult, labels: Sequence[LabelObject], handler: LabelHandler
) -> list[LabelSummary]:
    """Import the upload's label objects in one transaction: every one, or none of them (rows
    and mask files) when one is refused; each gets its outcome either way."""
    summaries = [
        LabelSummary(label.source, label.sop_instance_uid, NOT_IMPORTED) for label in labels
    ]
    written: list[str] = []
    try:
        with transaction.atomic():
            for label, summary in zip(labels, summaries, strict=True):
                try:
                    with transaction.atomic():  # a failed query stays in its savepoint
                        made = handler(project, label, written)
                except DomainError as exc:
                    summary.status, summary.reason = REJECTED, without_paths(exc.message)
                except Exception as exc:  # a malformed object must not stop the import
                    log.exception("label object %s could not be imported", label.source)
                    summary.status = REJECTED
                    summary.reason = f"could not be read: {without_paths(str(exc))}"
                else:
                    summary.status = IMPORTED if made.created else ALREADY_IMPORTED
                    summary.reason = made.message()
                    for key, value in made.to_dict().items():
                        if key != "message":
                            setattr(summary, key, value)
            if any(summary.status == REJECTED for summary in summaries):
                raise _LabelsRefused
    except _LabelsRefused:
        storage.delete_quietly(written)
        refused = ", ".join(s.source for s in summaries if s.status == REJECTED)
        for summary in summaries:
            if summary.status != REJECTED:
                summary.status = NOT_IMPORTED
                summary.reason = (
                    f"nothing imported: the upload's label objects are imported all together "
                    f"or not at all, and {refused} was refused"
                )
                summary.created, summary.unchanged, summary.unmatched = [], [], []
                summary.series, summary.matched_by = None, ""
    except BaseException:
        storage.delete_quietly(written)
        raise
    for label, summary in zip(labels, summaries, strict=True):
        # by name and UID: several files of one upload may have the same name (RS.dcm)
        outcome = next(
            f
            for f in result.files
            if f.status == LABEL
            and f.source == label.source
            and f.sop_instance_uid == label.sop_instance_uid
        )
        outcome.status, outcome.reason = summary.status, summary.reason
    return summaries


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
        uid_map = deid.uid if deid is not None else str

        def label_handler(
            project: Project, label: LabelObject, written: list[str]
        ) -> LabelsImported:
            return dicom_labels_import(project, label, uid_map=uid_map, written=written)

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
        if result.labels:
            report.labels = _import_labels(project, result, result.labels, label_handler)
        report.files = result.files
    return report
