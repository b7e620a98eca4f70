"""Scanning DICOM input: files, folders and zip archives -> per-file outcomes and series.

Pure Python (no Django). :func:`scan` counts every file's structure first
(:mod:`annotator.imaging.dicom.structure`: a file over its caps is refused before pydicom parses
it), reads its header with pydicom (``force=False``: a file without the DICOM preamble and meta
header is refused), classifies it (image, label object, not an image), drops duplicate
instances, groups the images by series and hands each series to
:mod:`annotator.imaging.dicom.geometry`, which sorts, checks and builds its volume.
"""

import logging
import math
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from annotator.core.redact import without_paths
from annotator.imaging.dicom import archive, checks, structure
from annotator.imaging.dicom.geometry import assemble_series, functional_item
from annotator.imaging.dicom.pixels import build_volume
from annotator.imaging.dicom.types import (
    DEFAULT_LIMITS,
    DUPLICATE,
    IMAGE,
    LABEL,
    REJECTED,
    DicomInstance,
    FileOutcome,
    Frame,
    LabelObject,
    Limits,
    ScanResult,
    SeriesScan,
    StudyInfo,
)

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]

# Objects holding annotations rather than pixels to annotate: the labels module reads them.
LABEL_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.481.3": "RT Structure Set Storage",
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation Storage",
    "1.2.840.10008.5.1.4.1.1.66.7": "Label Map Segmentation Storage",
    "1.2.840.10008.5.1.4.1.1.66.5": "Surface Segmentation Storage",
}
LABEL_REASON = "label object, imported with labels"
# Values longer than this stay on disk while the header is read (pixel data above all): their
# declared length is checked against the file, the bytes are read only when decoding.
DEFER_BYTES = 64 * 1024


def _text(ds: Dataset, keyword: str, limit: int = 200) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()[:limit]


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return None if value in (None, "") else int(value)
    except (TypeError, ValueError):
        return None


def _floats(value: Any, count: int) -> tuple[float, ...] | None:
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(numbers) != count or not all(math.isfinite(v) for v in numbers):
        return None
    return numbers


def _geometry_value(
    source: Dataset, keyword: str, count: int
) -> tuple[tuple[float, ...] | None, str]:
    """The attribute as ``count`` finite numbers; (None, "") when absent, (None, why) when it is
    present but not that (non-numeric, NaN, infinite, the wrong number of values)."""
    try:
        raw = source.get(keyword)
    except Exception as exc:  # a malformed DS value can fail on access
        return None, f"{keyword} is unreadable ({exc})"
    if raw is None or raw == "":
        return None, ""
    numbers = None if isinstance(raw, str) else _floats(raw, count)
    if numbers is None:
        try:
            shown = raw if isinstance(raw, str) else "\\".join(str(v) for v in raw)
        except TypeError:  # a single value
            shown = str(raw)
        return None, f"{keyword} {shown[:120]!r} is not {count} finite numbers"
    return numbers, ""


def _frames(ds: Dataset, count: int) -> tuple[list[Frame], str]:
    """Each frame's position and orientation (None where the object has no geometry), and why
    the geometry it has cannot be used ("" when it can)."""
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
        frames = []
        for i in range(count):
            plane = functional_item(ds, i, "PlanePositionSequence") or Dataset()
            axes = functional_item(ds, i, "PlaneOrientationSequence") or Dataset()
            position, error = _geometry_value(plane, "ImagePositionPatient", 3)
            orientation, problem = _geometry_value(axes, "ImageOrientationPatient", 6)
            if error or problem:
                return [], f"frame {i + 1}: {error or problem}"
            frames.append(Frame(position=position, orientation=orientation))
        return frames, ""
    position, error = _geometry_value(ds, "ImagePositionPatient", 3)
    orientation, problem = _geometry_value(ds, "ImageOrientationPatient", 6)
    if error or problem:
        return [], error or problem
    if count > 1:  # a cine or classic multi-frame: one position for the whole object
        return [Frame(None, None) for _ in range(count)], ""
    return [Frame(position, orientation)], ""


def _pixel_spacing(ds: Dataset) -> tuple[tuple[float, float] | None, str]:
    """(row spacing, column spacing) in mm, as DICOM's PixelSpacing orders them, or None when
    the object has none; and why a spacing it has cannot be used (not two numbers > 0)."""
    measures = functional_item(ds, 0, "PixelMeasuresSequence")
    first_error = ""
    for source in (measures, ds):
        if source is None:
            continue
        for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
            spacing, error = _geometry_value(source, keyword, 2)
            if spacing is not None and min(spacing) <= 0:
                error = f"{keyword} {spacing[0]:g}\\{spacing[1]:g} is not > 0"
            elif spacing is not None:
                return (spacing[0], spacing[1]), ""
            first_error = first_error or error
    return None, first_error


def _read_reason(exc: Exception, size: int) -> str:
    if size == 0:
        return "empty file (0 bytes)"
    if isinstance(exc, InvalidDicomError):
        return (
            "not a DICOM file: no DICOM preamble and meta header ('DICM' prefix); "
            "non-DICOM or bare ACR-NEMA data"
        )
    if isinstance(exc, (EOFError, OSError)) or "end of file" in str(exc).lower():
        return f"truncated or unreadable file: {exc}"
    return f"unreadable DICOM file ({type(exc).__name__}): {exc}"


def read_instance(
    path: Path, source: str, limits: Limits = DEFAULT_LIMITS
) -> DicomInstance | LabelObject | FileOutcome:
    """Read one file's header: an image instance, a label object, or a rejection.

    The file's elements, sequence items and nesting are counted before pydicom parses it
    (:mod:`annotator.imaging.dicom.structure`); large values (the pixel data) are not read, only
    measured; every declared size and UID is checked (:mod:`annotator.imaging.dicom.checks`) before
    a frame list is built.
    """
    size = -1
    try:
        size = path.stat().st_size
        too_complex = structure.structure_problem(path)
        if too_complex:
            return FileOutcome(source=source, status=REJECTED, reason=too_complex)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(path, force=False, defer_size=DEFER_BYTES)
    except Exception as exc:  # pydicom raises many types for corrupt input
        reason = without_paths(_read_reason(exc, size), {str(path): source})
        return FileOutcome(source=source, status=REJECTED, reason=reason)
    truncated = [str(w.message) for w in caught if "end of file" in str(w.message).lower()]
    sop_class = _text(ds, "SOPClassUID", 64)
    sop_uid = _text(ds, "SOPInstanceUID")
    series_uid = _text(ds, "SeriesInstanceUID")
    if truncated:
        return FileOutcome(
            source=source,
            status=REJECTED,
            reason=f"truncated file: {without_paths(truncated[0], {str(path): source})}",
            series_instance_uid=series_uid,
            sop_instance_uid=sop_uid,
        )
    study = StudyInfo(
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        patient_id=_text(ds, "PatientID", 64),
        patient_name=_text(ds, "PatientName"),
        accession_number=_text(ds, "AccessionNumber", 64),
        description=_text(ds, "StudyDescription"),
        study_date=_text(ds, "StudyDate", 8),
    )
    if sop_class in LABEL_SOP_CLASSES:
        problems = checks.uid_problems(ds)
        if not problems and any(k in ds for k in checks.PIXEL_KEYWORDS):
            problem = checks.pixel_data_problem(ds, path, size, limits, label=True)
            problems = [problem] if problem else []
        if problems:
            return FileOutcome(
                source=source,
                status=REJECTED,
                reason="; ".join(problems),
                series_instance_uid=series_uid,
                sop_instance_uid=sop_uid,
            )
        return LabelObject(
            path=path,
            source=source,
            sop_class_uid=sop_class,
            sop_class_name=LABEL_SOP_CLASSES[sop_class],
            modality=_text(ds, "Modality", 16),
            study=study,
            series_instance_uid=series_uid,
            sop_instance_uid=sop_uid,
        )
    missing = [
        keyword
        for keyword, value in (
            ("SOPInstanceUID", sop_uid),
            ("StudyInstanceUID", study.study_instance_uid),
            ("SeriesInstanceUID", series_uid),
        )
        if not value
    ]
    if not any(k in ds for k in checks.PIXEL_KEYWORDS):
        kind = pydicom.uid.UID(sop_class).name if sop_class else "unknown SOP class"
        return FileOutcome(
            source=source,
            status=REJECTED,
            reason=f"not an image: no pixel data ({kind})",
            series_instance_uid=series_uid,
            sop_instance_uid=sop_uid,
        )
    # A UID is a key here (rows, storage paths, URLs): never guess, fix or truncate one.
    problems = [f"missing {k}" for k in missing] + checks.uid_problems(ds)
    if problems:
        return FileOutcome(source=source, status=REJECTED, reason="; ".join(problems))
    pixel_problem = checks.pixel_data_problem(ds, path, size, limits)
    if pixel_problem:
        return FileOutcome(
            source=source,
            status=REJECTED,
            reason=pixel_problem,
            series_instance_uid=series_uid,
            sop_instance_uid=sop_uid,
        )
    count = checks.number_of_frames(ds) or 1  # checked positive by pixel_data_problem
    frames, geometry_error = _frames(ds, count)
    pixel_spacing, spacing_error = _pixel_spacing(ds)
    return DicomInstance(
        path=path,
        source=source,
        size_bytes=size,
        sop_instance_uid=sop_uid,
        sop_class_uid=sop_class,
        transfer_syntax_uid=str(ds.file_meta.get("TransferSyntaxUID", "")),
        instance_number=_int(ds, "InstanceNumber"),
        study=study,
        series_instance_uid=series_uid,
        modality=_text(ds, "Modality", 8) or "OT",
        series_number=_int(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription"),
        frame_of_reference_uid=_text(ds, "FrameOfReferenceUID", 64),
        rows=_int(ds, "Rows") or 0,
        columns=_int(ds, "Columns") or 0,
        pixel_spacing=pixel_spacing,
        frames=frames or [Frame(None, None)] * count,
        geometry_error=geometry_error or spacing_error,
    )


def iter_inputs(
    paths: Sequence[Path],
    workdir: Path,
    display_names: Mapping[Path, str] | None = None,
    *,
    zip_limits: Mapping[str, Any] | None = None,
) -> Iterator[tuple[str, Path] | FileOutcome]:
    """Every file to read as (display name, local path); refused inputs as outcomes.

    Folders are walked recursively in name order; zip archives (by content, not by suffix) are
    extracted into ``workdir``.
    """
    names = display_names or {}
    for root in paths:
        shown = names.get(root, str(root))
        if root.is_dir():
            files = sorted(p for p in root.rglob("*") if p.is_file())
            candidates = [(f"{shown}/{p.relative_to(root).as_posix()}", p) for p in files]
        elif root.is_file():
            candidates = [(shown, root)]
        else:
            yield FileOutcome(source=shown, status=REJECTED, reason="no such file or folder")
            continue
        for name, path in candidates:
            try:
                plain = path.stat().st_size == 0 or not archive.is_zip(path)
            except OSError as exc:
                yield FileOutcome(source=name, status=REJECTED, reason=f"unreadable: {exc}")
                continue
            if plain:
                yield (name, path)
                continue
            # A fresh folder per archive, even when the workdir is reused.
            dest = Path(tempfile.mkdtemp(prefix="archive-", dir=workdir))
            try:
                extracted = archive.extract_zip(path, dest, **dict(zip_limits or {}))
            except archive.ArchiveRefused as exc:
                yield FileOutcome(source=name, status=REJECTED, reason=str(exc))
                continue
            for entry, reason in extracted.refused:
                yield FileOutcome(source=f"{name}/{entry}", status=REJECTED, reason=reason)
            for entry, local in extracted.entries:
                if archive.is_zip(local):
                    yield FileOutcome(
                        source=f"{name}/{entry}",
                        status=REJECTED,
                        reason="zip archive inside a zip archive: not supported",
                    )
                else:
                    yield (f"{name}/{entry}", local)


def scan(
    paths: Sequence[Path],
    *,
    workdir: Path,
    display_names: Mapping[Path, str] | None = None,
    build: bool = True,
    progress: Progress | None = None,
    zip_limits: Mapping[str, Any] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> ScanResult:
    """Read, classify, group, sort and check every input; build each good series' volume.

    Never raises for bad input: every file gets an outcome in ``result.files``, in input order.
    Files extracted from archives live in ``workdir`` and must outlive the use of the result.
    """
    result = ScanResult()
    items = list(iter_inputs(paths, workdir, display_names, zip_limits=zip_limits))
    by_sop: dict[str, DicomInstance] = {}
    images: list[DicomInstance] = []
    for done, item in enumerate(items, start=1):
        if isinstance(item, FileOutcome):
            result.files.append(item)
        else:
            source, path = item
            read = read_instance(path, source, limits)
            if isinstance(read, FileOutcome):
                result.files.append(read)
            elif isinstance(read, LabelObject):
                result.labels.append(read)
                result.files.append(
                    FileOutcome(
                        source=source,
                        status=LABEL,
                        reason=LABEL_REASON,
                        series_instance_uid=read.series_instance_uid,
                        sop_instance_uid=read.sop_instance_uid,
                    )
                )
            elif read.sop_instance_uid in by_sop:
                first = by_sop[read.sop_instance_uid]
                result.files.append(
                    FileOutcome(
                        source=source,
                        status=DUPLICATE,
                        reason=f"duplicate instance (same SOPInstanceUID as {first.source}): "
                        "kept the first",
                        series_instance_uid=read.series_instance_uid,
                        sop_instance_uid=read.sop_instance_uid,
                    )
                )
            else:
                by_sop[read.sop_instance_uid] = read
                images.append(read)
                result.files.append(
                    FileOutcome(
                        source=source,
                        status=IMAGE,
                        series_instance_uid=read.series_instance_uid,
                        sop_instance_uid=read.sop_instance_uid,
                    )
                )
        if progress is not None:
            progress("reading", done, len(items))

    groups: dict[str, list[DicomInstance]] = {}
    for instance in images:
        groups.setdefault(instance.series_instance_uid, []).append(instance)
    for done, members in enumerate(groups.values(), start=1):
        series = assemble_series(members)
        result.series.append(series)
        if build:
            build_series(result, series, limits)
        else:
            reject_series_files(result, series)
        if progress is not None:
            progress("building volumes" if build else "sorting series", done, len(groups))
    return result


def build_series(result: ScanResult, series: SeriesScan, limits: Limits = DEFAULT_LIMITS) -> None:
    """Decode a checked series into ``series.image``; failures go into the file outcomes."""
    if not series.error:
        file_errors = build_volume(series, limits)
        for outcome in result.files:
            if outcome.status == IMAGE and outcome.sop_instance_uid in file_errors:
                outcome.status = REJECTED
                outcome.reason = file_errors[outcome.sop_instance_uid]
    reject_series_files(result, series)


def reject_series_files(result: ScanResult, series: SeriesScan) -> None:
    """Mark the files of a rejected series as rejected, each with the series' reason."""
    if not series.error:
        return
    members = {i.sop_instance_uid for i in series.instances}
    for outcome in result.files:
        if outcome.status == IMAGE and outcome.sop_instance_uid in members:
            outcome.status = REJECTED
            outcome.reason = f"series rejected: {series.error}"


@contextmanager
def scanned(paths: Sequence[Path], **options: Any) -> Iterator[ScanResult]:
    """:func:`scan` in a temporary working folder, removed when the block ends."""
    with tempfile.TemporaryDirectory(prefix="annotator-dicom-") as tmp:
        yield scan(paths, workdir=Path(tmp), **options)
