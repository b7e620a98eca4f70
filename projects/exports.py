"""Export of a round's accepted cases: a manifest with provenance, and the cases in four formats.

Layout under ``out`` (``<case>`` is :func:`case_id`):

- ``nifti``: ``images/<case>.nii.gz`` (the stored volume, byte for byte) and
  ``labels/<case>.nii.gz``, an instance label map: lesion i of the case (by id) has label i;
- ``medsam2-npz``: ``medsam2/<case>.npz`` with ``imgs`` (z, y, x) uint8, the volume mapped as
  the MedSAM2 backend maps it (the project's first window preset, else CT at (40, 400), else the
  0.5 / 99.5 percentiles of the non-zero voxels), ``gts`` the instance labels of the NIfTI
  label map, ``spacing`` (x, y, z), ``direction`` (9, row-major) and ``origin`` (x, y, z), all
  float64 as SimpleITK gives them, like MedSAM2's published samples. MedSAM2's training loader
  samples 8 consecutive slices starting on a labelled one and refuses cases it cannot (fewer
  than 8 slices, or every lesion within the last 7): those get copies of their last slice
  (image and labels together, so every slice stays a true image/label pair) appended until it
  can; the manifest's ``medsam2_padding`` says how many, and the first ``size[2]`` slices are
  the volume's own, placed by ``origin`` and ``direction`` as in the NIfTI;
- ``nnunet``: the nnU-Net v2 raw layout ``nnunet/Dataset500_<Name>/`` with ``imagesTr/
  <case>_0000.nii.gz``, ``labelsTr/<case>.nii.gz`` and ``dataset.json``. nnU-Net labels are
  semantic classes, so there the label value is the lesion class's index in the project's
  lesion classes (from 1; classes no longer in the project follow, by name); every case is in
  ``imagesTr``, the manifest's ``split`` says which are for validation;
- ``dicom-seg``: ``dicom-seg/<case>.dcm``, one BINARY segment per lesion referencing the source
  series (:mod:`projects.dicom_seg`; a volume imported from an image file references the DICOM
  generated for it at import); a case that cannot get one is listed under the manifest's
  ``skipped`` with the reason;
- ``manifest.json``: :func:`round_manifest` plus the files written.

Where two lesions overlap, the label maps give the voxel to the later lesion (the manifest counts
those voxels per case as ``overlap_voxels``); the DICOM SEG keeps every lesion whole.

The same input gives byte-identical files: gzip headers without a time (SimpleITK writes none),
zip members dated 1980-01-01, DICOM UIDs derived from the content and dates from the acceptance.
"""

import hashlib
import io
import json
import re
import shutil
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from django.db.models import Prefetch
from pydicom.uid import generate_uid

from annotator import storage
from annotator.errors import InvalidInput
from annotator.masks import to_image
from annotator.models import Lesion, MaskVersion
from annotator.services import mask_version_load
from inference.engine import ImageVolume
from inference.engine.intensity import intensity_mapping
from inference.services import project_window
from projects.dicom_seg import SegSegment, SegUnavailable, seg_write
from projects.effort import task_efforts
from projects.models import Review, Round, Task

FORMATS: tuple[str, ...] = ("nifti", "medsam2-npz", "nnunet", "dicom-seg")
# The MedSAM2 backend's window for CT when the project has no preset (MedSAM2Backend's default).
DEFAULT_CT_WINDOW = (40.0, 400.0)
VALIDATION_PERCENT = 20
# MedSAM2's training clips: num_frames in its fine-tuning configs (sam2.1_hiera_tiny_finetune512).
MEDSAM2_CLIP_FRAMES = 8
NNUNET_DATASET_ID = 500
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def parse_formats(formats: str | Iterable[str]) -> tuple[str, ...]:
    """The export formats named (a comma-separated string or names), in :data:`FORMATS` order.

    Raises InvalidInput naming the unknown ones, or when none is named."""
    names = formats.split(",") if isinstance(formats, str) else list(formats)
    wanted = {name.strip() for name in names if name.strip()}
    unknown = sorted(wanted - set(FORMATS))
    if unknown:
        raise InvalidInput(
            f"unknown export format(s) {', '.join(unknown)}; expected some of {', '.join(FORMATS)}",
            fields={"formats": [f"unknown: {', '.join(unknown)}"]},
        )
    if not wanted:
        raise InvalidInput(
            f"no export format named; expected some of {', '.join(FORMATS)}",
            fields={"formats": ["name at least one format"]},
        )
    return tuple(f for f in FORMATS if f in wanted)


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


def _label_dtype(top: int) -> type[np.unsignedinteger[Any]]:
    return np.uint8 if top <= np.iinfo(np.uint8).max else np.uint16


def _write_nifti(image: sitk.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` without its clock: every member is dated 1980-01-01."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())


def medsam2_padding(labels: np.ndarray) -> int:
    """How many copies of the last slice MedSAM2's training sampler needs appended to use the
    case: it takes :data:`MEDSAM2_CLIP_FRAMES` consecutive slices whose first one holds an object
    (sam2's ``RandomUniformSampler``, ``reverse_time_prob`` 0), so the volume needs that many
    slices from its first labelled one on."""
    depth = labels.shape[0]
    labelled = np.flatnonzero(labels.reshape(depth, -1).any(axis=1))
    first = int(labelled[0]) if labelled.size else 0
    return max(0, first + MEDSAM2_CLIP_FRAMES - depth)


def _repeat_last(array: np.ndarray, count: int) -> np.ndarray:
    if count == 0:
        return array
    return np.concatenate([array, np.repeat(array[-1:], count, axis=0)])


def zip_folder(folder: Path, target: Path) -> None:
    """Zip every file under ``folder`` (sorted, dated 1980-01-01) into ``target``."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as src, archive.open(info, "w") as dst:
                shutil.copyfileobj(src, dst, 1024 * 1024)


def nnunet_name(round_: Round) -> str:
    name = "".join(part.title() for part in re.split(r"[^A-Za-z0-9]+", round_.project.slug))
    return f"Dataset{NNUNET_DATASET_ID:03d}_{name or 'Project'}R{round_.number:02d}"


def nnunet_classes(round_: Round, tasks: Sequence[Task]) -> dict[str, int]:
    """Lesion class -> nnU-Net label: the project's classes in order, then unknown ones by name."""
    names = list(round_.project.lesion_class_names)
    extra = sorted(
        {lesion.lesion_class for task in tasks for lesion in task.lesions.all()} - set(names)
    )
    return {name: index for index, name in enumerate(names + extra, start=1)}


def _final_masks(task: Task) -> list[tuple[Lesion, MaskVersion | None, np.ndarray]]:
    shape = task.series.volume.shape_zyx
    out = []
    for lesion in task.lesions.all():
        versions = list(lesion.mask_versions.all())
        final = versions[-1] if versions else None
        mask = mask_version_load(final) if final else np.zeros(shape, dtype=bool)
        out.append((lesion, final, mask.astype(bool, copy=False)))
    return out


def tracking_uid(series_uid: str, lesion_pk: int) -> str:
    """The lesion's Tracking UID in a DICOM SEG: the same in every export of it."""
    return str(generate_uid(entropy_srcs=["lesion", series_uid, str(lesion_pk)]))


def _algorithm(version: MaskVersion | None) -> tuple[str, str] | None:
    if version is None or version.source != MaskVersion.Source.MODEL:
        return None
    if version.author_model is not None:
        return version.author_model.name, str(version.author_model.pk)
    return version.author_backend or "model", version.author_backend or "unknown"


def _export_case(
    task: Task,
    case: dict[str, Any],
    partial: Path,
    formats: Sequence[str],
    classes: dict[str, int],
    dataset: str,
) -> None:
    """Write one case in ``formats``; adds its files (by format), the formats it could not get
    and why (``skipped``) and how its intensities were mapped to ``case``."""
    name = case["case"]
    volume = task.series.volume
    masks = _final_masks(task)
    top = len(masks)
    instances = np.zeros(volume.shape_zyx, dtype=_label_dtype(top))
    semantic = np.zeros(volume.shape_zyx, dtype=_label_dtype(max(classes.values(), default=0)))
    covered = np.zeros(volume.shape_zyx, dtype=np.uint16)
    for label, (lesion, _, mask) in enumerate(masks, start=1):
        instances[mask] = label
        semantic[mask] = classes[lesion.lesion_class]
        covered += mask
    case["overlap_voxels"] = int(np.count_nonzero(covered > 1))
    files: dict[str, list[str]] = {}
    skipped: dict[str, str] = {}

    with storage.local_path(volume.storage_key, suffix=".nii.gz") as source:
        if "nifti" in formats:
            (partial / "images").mkdir(exist_ok=True)
            shutil.copyfile(source, partial / "images" / f"{name}.nii.gz")
            _write_nifti(to_image(instances, volume), partial / "labels" / f"{name}.nii.gz")
            files["nifti"] = [f"images/{name}.nii.gz", f"labels/{name}.nii.gz"]
        if "nnunet" in formats:
            root = partial / "nnunet" / dataset
            (root / "imagesTr").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, root / "imagesTr" / f"{name}_0000.nii.gz")
            _write_nifti(to_image(semantic, volume), root / "labelsTr" / f"{name}.nii.gz")
            files["nnunet"] = [
                f"nnunet/{dataset}/imagesTr/{name}_0000.nii.gz",
                f"nnunet/{dataset}/labelsTr/{name}.nii.gz",
            ]
        if "medsam2-npz" in formats:
            image = sitk.ReadImage(str(source))
            array = sitk.GetArrayFromImage(image)
            spacing = tuple(float(v) for v in image.GetSpacing())
            engine_volume = ImageVolume(
                array=array,
                spacing=(spacing[0], spacing[1], spacing[2]),
                modality=task.series.modality,
                window=project_window(task.round.project),
            )
            mapping = intensity_mapping(engine_volume, DEFAULT_CT_WINDOW)
            padding = medsam2_padding(instances)
            write_npz(
                partial / "medsam2" / f"{name}.npz",
                {
                    "imgs": _repeat_last(mapping.to_uint8(array), padding),
                    "gts": _repeat_last(instances, padding),
                    "spacing": np.asarray(spacing, dtype=np.float64),
                    "direction": np.asarray(image.GetDirection(), dtype=np.float64),
                    "origin": np.asarray(image.GetOrigin(), dtype=np.float64),
                },
            )
            case["intensity_mapping"] = asdict(mapping)
            case["medsam2_padding"] = padding
            files["medsam2-npz"] = [f"medsam2/{name}.npz"]
    if "dicom-seg" in formats:
        accepted = case["accepted_at"] or case["times"]["submitted"] or case["times"]["created"]
        seed = [
            task.round.project.slug,
            str(task.round.number),
            name,
            task.series.series_instance_uid,
            *(str(final.pk if final else "-") for _, final, _ in masks),
        ]
        segments = [
            SegSegment(
                label=f"{lesion.lesion_class} {label}",
                mask=mask,
                tracking_id=f"lesion {lesion.pk}",
                tracking_uid=tracking_uid(task.series.series_instance_uid, lesion.pk),
                algorithm=_algorithm(final),
            )
            for label, (lesion, final, mask) in enumerate(masks, start=1)
        ]
        target = partial / "dicom-seg" / f"{name}.dcm"
        try:
            uids = seg_write(
                target,
                series=task.series,
                segments=segments,
                seed=seed,
                when=datetime.fromisoformat(accepted),
                description=f"{task.round.project.slug} round {task.round.number}",
            )
        except SegUnavailable as exc:
            target.unlink(missing_ok=True)
            skipped["dicom-seg"] = str(exc)
        else:
            case["dicom_seg"] = uids
            files["dicom-seg"] = [f"dicom-seg/{name}.dcm"]
    case["files"] = files
    if skipped:
        case["skipped"] = skipped


def export_round_files(
    round_: Round, out: Path, formats: Sequence[str] = FORMATS
) -> dict[str, Any]:
    """Write the round's accepted cases in ``formats`` (see the module's docstring for the
    layout) and ``manifest.json`` under ``out``; returns the manifest.

    Unknown format names raise InvalidInput before anything is written. The export is written
    into a sibling ``<out>.partial`` folder and renamed at the end, so ``out`` never holds a
    half-written export (an earlier export there is replaced)."""
    chosen = parse_formats(formats)
    accepted = accepted_tasks(round_)
    manifest = round_manifest(round_, accepted)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        tasks = {t.pk: t for t in accepted}
        classes = nnunet_classes(round_, list(tasks.values()))
        dataset = nnunet_name(round_)
        files: dict[str, list[str]] = {name: [] for name in chosen}
        skipped: list[dict[str, str]] = []
        for case in manifest["cases"]:
            _export_case(tasks[case["task"]], case, partial, chosen, classes, dataset)
            for fmt, paths in case["files"].items():
                files[fmt] += paths
            for fmt, reason in case.get("skipped", {}).items():
                skipped.append({"case": case["case"], "format": fmt, "reason": reason})
        if "nnunet" in chosen:
            root = partial / "nnunet" / dataset
            root.mkdir(parents=True, exist_ok=True)
            modality = round_.project.modality
            description = {
                "name": dataset,
                "description": (
                    f"{round_.project.name}, round {round_.number}: accepted cases. Labels are "
                    "lesion classes (semantic); the instance labels are in the nifti export."
                ),
                "channel_names": {"0": modality},
                "labels": {"background": 0, **classes},
                "numTraining": len(manifest["cases"]),
                "file_ending": ".nii.gz",
            }
            (root / "dataset.json").write_text(json.dumps(description, indent=2) + "\n")
            files["nnunet"].append(f"nnunet/{dataset}/dataset.json")
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
