"""Export of a round's accepted cases: a manifest with provenance, and the cases in four formats.

Layout under ``out`` (``<case>`` is :func:`case_id`), one module per format, registered by name
(:mod:`projects.export_formats`):

- ``nifti``: images and instance label maps (:mod:`projects.export_formats.nifti`);
- ``medsam2-npz``: MedSAM2's training npz (:mod:`inference.export_medsam2`, registered by the
  inference app);
- ``nnunet``: the nnU-Net v2 raw layout, semantic labels (:mod:`projects.export_formats.nnunet`);
- ``dicom-seg``: a DICOM SEG per case (:mod:`projects.export_formats.dicom_seg`); a case that
  cannot get one is listed under the manifest's ``skipped`` with the reason;
- ``manifest.json``: :func:`round_manifest` plus the files written.

Where two lesions overlap, the label maps give the voxel to the later lesion (the manifest counts
those voxels per case as ``overlap_voxels``); the DICOM SEG keeps every lesion whole.

The same input gives byte-identical files: gzip headers without a time (SimpleITK writes none),
zip members dated 1980-01-01, DICOM UIDs derived from the content and dates from the acceptance.
"""

import hashlib
import json
import shutil
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from django.db.models import Prefetch

from annotator.annotation.services import mask_version_load
from annotator.core import storage
from annotator.core.errors import InvalidInput
from annotator.models import Lesion, MaskVersion
from projects.effort import task_efforts
from projects.export_formats import (
    CaseExport,
    ExportFormat,
    FormatSkipped,
    format_named,
    format_names,
)
from projects.export_formats.registry import ZIP_DATE, label_dtype
from projects.models import Review, Round, Task

# The registered formats' names, in order (PEP 562: looked up when used, so that a format an
# app registers when it is ready is in it).
FORMATS: tuple[str, ...]
VALIDATION_PERCENT = 20


def __getattr__(name: str) -> Any:
    if name == "FORMATS":
        return format_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parse_formats(formats: str | Iterable[str]) -> tuple[str, ...]:
    """The export formats named (a comma-separated string or names), in :data:`FORMATS` order.

    Raises InvalidInput naming the unknown ones, or when none is named."""
    known = format_names()
    names = formats.split(",") if isinstance(formats, str) else list(formats)
    wanted = {name.strip() for name in names if name.strip()}
    unknown = sorted(wanted - set(known))
    if unknown:
        raise InvalidInput(
            f"unknown export format(s) {', '.join(unknown)}; expected some of {', '.join(known)}",
            fields={"formats": [f"unknown: {', '.join(unknown)}"]},
        )
    if not wanted:
        raise InvalidInput(
            f"no export format named; expected some of {', '.join(known)}",
            fields={"formats": ["name at least one format"]},
        )
    return tuple(f for f in known if f in wanted)


def accepted_tasks(round_: Round) -> list[Task]:
    return list(
        round_.tasks.filter(state=Task.State.ACCEPTED)
        .select_related("round__project", "series__volume", "series__study", "assignee", "reviewer")
        .prefetch_related(
            Prefetch("lesions", queryset=Lesion.objects.order_by("id")),
            Prefetch(
                "lesions__mask_versions",
                queryset=MaskVersion.objects.select_related("author_model").order_by("id"),
            ),
            Prefetch("reviews", queryset=Review.objects.order_by("-created", "-id")),
        )
        .order_by("id")
    )


def case_id(task: Task) -> str:
    return f"r{task.round.number:02d}_t{task.pk:06d}"


def case_split(task: Task) -> str:
    """The case's side, "train" or "validation" (about VALIDATION_PERCENT % of patients).

    A stable hash of the patient (the study when the patient is unknown), never a random state:
    a patient's studies stay together and a case keeps its side from one export to the next."""
    study = task.series.study
    key = f"patient:{study.patient_id}" if study.patient_id else f"study:{study.study_instance_uid}"
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100
    return "validation" if bucket < VALIDATION_PERCENT else "train"


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _model_version(round_: Round) -> dict[str, Any] | None:
    model = round_.model_version
    if model is None:
        return None
    return {"id": model.pk, "name": model.name, "backend": model.backend}


def round_manifest(round_: Round, tasks: list[Task] | None = None) -> dict[str, Any]:
    """Every accepted case of the round, its lesions' final masks, who made them and the effort.
    ``tasks``: the round's :func:`accepted_tasks`, when the caller has them already."""
    tasks = accepted_tasks(round_) if tasks is None else tasks
    efforts = {e.task: e for e in task_efforts(round_.tasks.filter(pk__in=[t.pk for t in tasks]))}
    cases = []
    for task in tasks:
        review = next(iter(task.reviews.all()), None)
        effort = efforts.get(task.pk)
        lesion_effort = {e.lesion: e for e in effort.lesions} if effort else {}
        lesions = []
        for label, lesion in enumerate(task.lesions.all(), start=1):
            versions = list(lesion.mask_versions.all())
            final = versions[-1] if versions else None
            model_versions = [v for v in versions if v.source == MaskVersion.Source.MODEL]
            spent = lesion_effort.get(lesion.pk)
            lesions.append(
                {
                    "lesion": lesion.pk,
                    "label": label,
                    "class": lesion.lesion_class,
                    "key_slice": lesion.key_slice,
                    "box": lesion.box,
                    "final_mask_version": final.pk if final else None,
                    "final_source": final.source if final else None,
                    "final_saved_at": _iso(final.created) if final else None,
                    "voxels": final.voxel_count if final else 0,
                    "model_mask_version": model_versions[-1].pk if model_versions else None,
                    "versions": len(versions),
                    "effort": (
                        {
                            "active_s": round(spent.active_s, 3),
                            "interactions": spent.interactions,
                            "model_version": spent.model_version,
                            **asdict(spent.metrics),
                        }
                        if spent
                        else None
                    ),
                }
            )
        volume = task.series.volume
        cases.append(
            {
                "case": case_id(task),
                "task": task.pk,
                "split": case_split(task),
                "series_instance_uid": task.series.series_instance_uid,
                "study_instance_uid": task.series.study.study_instance_uid,
                "modality": task.series.modality,
                "from_dicom": not task.series.generated,
                "volume": volume.pk,
                "size": volume.size,
                "spacing": volume.spacing,
                "annotator": task.assignee.get_username() if task.assignee else None,
                "reviewer": task.reviewer.get_username() if task.reviewer else None,
                "accepted_at": _iso(review.created) if review else None,
                "times": {
                    "created": _iso(task.created),
                    "claimed": _iso(task.claimed_at),
                    "submitted": _iso(task.submitted_at),
                    "accepted": _iso(review.created) if review else None,
                },
                "effort": (
                    {"active_s": round(effort.active_s, 3), "interactions": effort.interactions}
                    if effort
                    else None
                ),
                "lesions": lesions,
            }
        )
    return {
        "project": round_.project.slug,
        "round": round_.number,
        "model_version": _model_version(round_),
        "split": {
            "rule": (
                f"sha256 of the patient ID (else the study UID): the first 8 hex digits mod 100 "
                f"under {VALIDATION_PERCENT} -> validation"
            ),
            "train": sum(1 for c in cases if c["split"] == "train"),
            "validation": sum(1 for c in cases if c["split"] == "validation"),
        },
        "cases": cases,
    }


# ---- writing -------------------------------------------------------------------------------


def zip_folder(folder: Path, target: Path) -> None:
    """Zip every file under ``folder`` (sorted, dated 1980-01-01) into ``target``."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as src, archive.open(info, "w") as dst:
                shutil.copyfileobj(src, dst, 1024 * 1024)


def _final_masks(task: Task) -> list[tuple[Lesion, MaskVersion | None, np.ndarray]]:
    shape = task.series.volume.shape_zyx
    out = []
    for lesion in task.lesions.all():
        versions = list(lesion.mask_versions.all())
        final = versions[-1] if versions else None
        mask = mask_version_load(final) if final else np.zeros(shape, dtype=bool)
        out.append((lesion, final, mask.astype(bool, copy=False)))
    return out


def _export_case(
    task: Task, case: dict[str, Any], partial: Path, writers: Sequence[ExportFormat]
) -> None:
    """Write one case with each of ``writers`` (in their write order); adds its files (by
    format), the formats it could not get and why (``skipped``) and what the writers record
    (how its intensities were mapped, its DICOM SEG's UIDs) to ``case``."""
    volume = task.series.volume
    masks = _final_masks(task)
    instances = np.zeros(volume.shape_zyx, dtype=label_dtype(len(masks)))
    covered = np.zeros(volume.shape_zyx, dtype=np.uint16)
    for label, (_, _, mask) in enumerate(masks, start=1):
        instances[mask] = label
        covered += mask
    case["overlap_voxels"] = int(np.count_nonzero(covered > 1))
    files: dict[str, list[str]] = {}
    skipped: dict[str, str] = {}
    with storage.local_path(volume.storage_key, suffix=".nii.gz") as source:
        export = CaseExport(
            task=task, case=case, out=partial, source=source, masks=masks, instances=instances
        )
        for writer in writers:
            try:
                files[writer.name] = writer.write_case(export)
            except FormatSkipped as exc:
                skipped[writer.name] = str(exc)
    case["files"] = files
    if skipped:
        case["skipped"] = skipped


def export_round_files(
    round_: Round, out: Path, formats: Sequence[str] | None = None
) -> dict[str, Any]:
    """Write the round's accepted cases in ``formats`` (default: every format; see the
    module's docstring for the layout) and ``manifest.json`` under ``out``; returns the manifest.

    Unknown format names raise InvalidInput before anything is written. The export is written
    into a sibling ``<out>.partial`` folder and renamed at the end, so ``out`` never holds a
    half-written export (an earlier export there is replaced)."""
    chosen = parse_formats(format_names() if formats is None else formats)
    accepted = accepted_tasks(round_)
    manifest = round_manifest(round_, accepted)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        tasks = {t.pk: t for t in accepted}
        writers = sorted(
            (format_named(name)(round_, list(tasks.values())) for name in chosen),
            key=lambda writer: writer.write_rank,
        )
        files: dict[str, list[str]] = {name: [] for name in chosen}
        skipped: list[dict[str, str]] = []
        for case in manifest["cases"]:
            _export_case(tasks[case["task"]], case, partial, writers)
            for fmt, paths in case["files"].items():
                files[fmt] += paths
            for fmt, reason in case.get("skipped", {}).items():
                skipped.append({"case": case["case"], "format": fmt, "reason": reason})
        for writer in writers:
            files[writer.name] += writer.finish(partial, manifest["cases"])
        manifest["formats"] = list(chosen)
        manifest["files"] = files
        manifest["skipped"] = skipped
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return manifest
