"""Export of a round's accepted cases: a manifest with provenance, and NIfTI image/label pairs."""

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from django.db.models import Prefetch

from annotator import storage
from annotator.masks import to_image
from annotator.models import Lesion, MaskVersion
from annotator.services import mask_version_load
from projects.models import Review, Round, Task


def accepted_tasks(round_: Round) -> list[Task]:
    return list(
        round_.tasks.filter(state=Task.State.ACCEPTED)
        .select_related("series__volume", "series__study", "assignee", "reviewer")
        .prefetch_related(
            Prefetch("lesions", queryset=Lesion.objects.order_by("id")),
            Prefetch("lesions__mask_versions", queryset=MaskVersion.objects.order_by("id")),
            Prefetch("reviews", queryset=Review.objects.order_by("-created", "-id")),
        )
        .order_by("id")
    )


def case_id(task: Task) -> str:
    return f"r{task.round.number:02d}_t{task.pk:06d}"


def round_manifest(round_: Round) -> dict[str, Any]:
    """Every accepted case of the round, its lesions' final masks and who made them."""
    cases = []
    for task in accepted_tasks(round_):
        review = next(iter(task.reviews.all()), None)
        lesions = []
        for label, lesion in enumerate(task.lesions.all(), start=1):
            versions = list(lesion.mask_versions.all())
            final = versions[-1] if versions else None
            model_versions = [v for v in versions if v.source == MaskVersion.Source.MODEL]
            lesions.append(
                {
                    "lesion": lesion.pk,
                    "label": label,
                    "class": lesion.lesion_class,
                    "key_slice": lesion.key_slice,
                    "box": lesion.box,
                    "final_mask_version": final.pk if final else None,
                    "final_source": final.source if final else None,
                    "voxels": final.voxel_count if final else 0,
                    "model_mask_version": model_versions[-1].pk if model_versions else None,
                    "versions": len(versions),
                }
            )
        cases.append(
            {
                "case": case_id(task),
                "task": task.pk,
                "series_instance_uid": task.series.series_instance_uid,
                "study_instance_uid": task.series.study.study_instance_uid,
                "volume": task.series.volume.pk,
                "annotator": task.assignee.username if task.assignee else None,
                "reviewer": task.reviewer.username if task.reviewer else None,
                "accepted_at": review.created.isoformat() if review else None,
                "lesions": lesions,
            }
        )
    return {
        "project": round_.project.slug,
        "round": round_.number,
        "model_version": round_.model_version_id,
        "cases": cases,
    }


def export_round_files(round_: Round, out: Path) -> dict[str, Any]:
    """Write ``images/<case>.nii.gz``, ``labels/<case>.nii.gz`` (lesion i has label i) and
    ``manifest.json`` under ``out``. Writes into a sibling folder first, so ``out`` never holds a
    half-written export."""
    manifest = round_manifest(round_)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "images").mkdir(parents=True)
    (partial / "labels").mkdir()
    tasks = {t.pk: t for t in accepted_tasks(round_)}
    for case in manifest["cases"]:
        task = tasks[case["task"]]
        volume = task.series.volume
        with storage.local_path(volume.storage_key, suffix=".nii.gz") as src:
            shutil.copyfile(src, partial / "images" / f"{case['case']}.nii.gz")
        labels = np.zeros(volume.shape_zyx, dtype=np.uint8)
        for lesion, entry in zip(task.lesions.all(), case["lesions"], strict=True):
            versions = list(lesion.mask_versions.all())
            if versions:
                labels[mask_version_load(versions[-1])] = entry["label"]
        sitk.WriteImage(
            to_image(labels, volume),
            str(partial / "labels" / f"{case['case']}.nii.gz"),
            useCompression=True,
        )
    (partial / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return manifest
