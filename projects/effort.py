"""Annotation effort per lesion and per task, computed from the rows the viewer and editors leave.

Nothing here writes: active time comes from ActiveInterval rows, tool use from Interaction rows,
and the model-versus-final metrics from the lesion's mask versions (append-only, so the metrics
of a pair of versions never change and are cached under their storage keys).

Active time applies the idle cut-off when summing, because ``effort_record`` stores intervals as
the viewer sends them: a second of an interval counts only when it lies within
``EFFORT_IDLE_CUTOFF_S`` seconds (default 120) after an activity signal of the same user on the
task (an interval start or a tool interaction); intervals that overlap (a batch sent twice)
count once. Time on an interval that names no lesion (finding the lesions, scrolling) is shared
equally by the task's lesions.
"""

import hashlib
import math
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from django.conf import settings
from django.core.cache import BaseCache, caches
from django.db.models import Prefetch, QuerySet

from annotator.annotation.services import mask_version_load
from annotator.models import ActiveInterval, Interaction, Lesion, MaskVersion
from inference.engine.geometry import dice
from inference.engine.metrics import crop_to_union, hd95, slices_to_fix
from projects.models import Task

DEFAULT_IDLE_CUTOFF_S = 120.0
TOOLS: tuple[str, ...] = tuple(Interaction.Tool.values)
_METRICS_CACHE_VERSION = 1


def idle_cutoff_s() -> float:
    return float(getattr(settings, "EFFORT_IDLE_CUTOFF_S", DEFAULT_IDLE_CUTOFF_S))


# ---- active time ---------------------------------------------------------------------------


def _merge(windows: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(windows):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _covered(
    start: float, end: float, windows: list[tuple[float, float]], ends: list[float]
) -> float:
    """Length of [start, end] inside the merged, sorted ``windows`` (``ends``: their ends)."""
    total = 0.0
    i = bisect_right(ends, start)
    while i < len(windows) and windows[i][0] < end:
        total += max(0.0, min(end, windows[i][1]) - max(start, windows[i][0]))
        i += 1
    return total


def active_seconds(
    intervals: Iterable[tuple[datetime, datetime, int | None]],
    signals: Iterable[datetime],
    *,
    cutoff_s: float,
) -> dict[int | None, float]:
    """Active seconds of one user on one task, by lesion (None: no lesion named).

    ``intervals`` are (start, end, lesion); ``signals`` the user's tool interactions on the task.
    """
    spans = sorted((s.timestamp(), e.timestamp(), lesion) for s, e, lesion in intervals)
    marks = [s for s, _, _ in spans] + [t.timestamp() for t in signals]
    windows = _merge([(t, t + cutoff_s) for t in marks])
    ends = [e for _, e in windows]
    out: dict[int | None, float] = defaultdict(float)
    counted_until = -math.inf
    for start, end, lesion in spans:
        start = max(start, counted_until)
        if end > start:
            out[lesion] += _covered(start, end, windows, ends)
        counted_until = max(counted_until, end)
    return dict(out)


# ---- model versus final --------------------------------------------------------------------


@dataclass(frozen=True)
class MaskMetrics:
    """The first model mask of a lesion against its final (latest) mask.

    ``slices``: the slices of the final mask (what a manual annotator draws); ``slices_fixed``:
    the slices where either mask has voxels and their 2D Dice is under 0.9 (what the annotator
    re-contoured or erased). Without a model mask (a manual lesion) the model fields are None
    and every slice of the final mask was drawn by hand (``slices_fixed == slices``).
    """

    model_dice: float | None = None
    model_hd95_mm: float | None = None
    edited_fraction: float | None = None
    accepted_without_edits: bool | None = None
    slices: int = 0
    slices_fixed: int = 0


def _compare(model: np.ndarray, final: np.ndarray, spacing: Sequence[float]) -> MaskMetrics:
    a, b = crop_to_union(model, final)
    # Manual work would have drawn every slice of the final mask; with the model, the annotator
    # fixed the slices (of either mask: erasing a slice the model leaked into is work too) whose
    # 2D Dice is under 0.9.
    fixed, _ = slices_to_fix(a, b, over="union")
    slices = int(np.count_nonzero(b.any(axis=(1, 2))))
    union = int(np.count_nonzero(a | b))
    distance = hd95(a, b, (float(spacing[0]), float(spacing[1]), float(spacing[2])))
    return MaskMetrics(
        model_dice=dice(a, b),
        model_hd95_mm=distance if math.isfinite(distance) else None,
        edited_fraction=int(np.count_nonzero(a ^ b)) / union if union else 0.0,
        accepted_without_edits=bool(np.array_equal(a, b)),
        slices=slices,
        slices_fixed=fixed,
    )


def _pair(versions: Sequence[MaskVersion]) -> tuple[MaskVersion | None, MaskVersion | None]:
    """(first model version, final version) of a lesion's history, ordered by id."""
    model = next((v for v in versions if v.source == MaskVersion.Source.MODEL), None)
    return model, (versions[-1] if versions else None)


# Metrics of a pair never change (versions are append-only and the key names both), so each
# process also keeps them in memory: Django's default cache (local memory, 300 entries) would
# otherwise forget most of a large project. EFFORT_CACHE names a shared cache alias to use.
_MEMO: dict[str, dict[str, Any]] = {}
_MEMO_MAX = 200_000


def metrics_cache() -> BaseCache:
    return caches[getattr(settings, "EFFORT_CACHE", "default")]


def _cache_key(model: MaskVersion | None, final: MaskVersion, spacing: Sequence[float]) -> str:
    raw = f"{model.storage_key if model else '-'}|{final.storage_key}|{list(spacing)}"
    digest = hashlib.sha1(raw.encode(), usedforsecurity=False).hexdigest()
    return f"effort-metrics:{_METRICS_CACHE_VERSION}:{digest}"


def mask_metrics(
    pairs: dict[int, tuple[Sequence[MaskVersion], Sequence[float]]],
) -> dict[int, MaskMetrics]:
    """Metrics of many lesions: lesion id -> (its versions ordered by id, volume spacing).

    Loads only the masks whose pair is not cached yet; a cached pair costs no mask read.
    """
    keys: dict[int, str] = {}
    out: dict[int, MaskMetrics] = {}
    for lesion_id, (versions, spacing) in pairs.items():
        model, final = _pair(versions)
        if final is None:
            out[lesion_id] = MaskMetrics()
        else:
            keys[lesion_id] = _cache_key(model, final, spacing)
    cached = {key: _MEMO[key] for key in keys.values() if key in _MEMO}
    missing = [key for key in keys.values() if key not in cached]
    if missing:
        cached.update(metrics_cache().get_many(missing))
    fresh: dict[str, dict[str, Any]] = {}
    for lesion_id, key in keys.items():
        if key in cached:
            out[lesion_id] = MaskMetrics(**cached[key])
            continue
        versions, spacing = pairs[lesion_id]
        model, final = _pair(versions)
        assert final is not None
        final_mask = mask_version_load(final)
        if model is None:
            slices = int(np.count_nonzero(final_mask.any(axis=(1, 2))))
            metrics = MaskMetrics(slices=slices, slices_fixed=slices)
        elif model.pk == final.pk:
            metrics = _compare(final_mask, final_mask, spacing)
        else:
            metrics = _compare(mask_version_load(model), final_mask, spacing)
        out[lesion_id] = metrics
        fresh[key] = asdict(metrics)
    if fresh:
        metrics_cache().set_many(fresh, timeout=None)
    if len(_MEMO) + len(cached) > _MEMO_MAX:
        _MEMO.clear()
    _MEMO.update(cached)
    _MEMO.update(fresh)
    return out


# ---- per lesion and per task ---------------------------------------------------------------


@dataclass
class LesionEffort:
    lesion: int
    lesion_class: str
    task: int
    round: int
    project: str
    annotator: str
    reviewer: str
    model_version: str
    active_s: float
    interactions: dict[str, int]
    metrics: MaskMetrics


@dataclass
class TaskEffort:
    task: int
    round: int
    state: str
    annotator: str
    reviewer: str
    # Active seconds on the task, including time on no particular lesion.
    active_s: float
    interactions: dict[str, int]
    lesions: list[LesionEffort] = field(default_factory=list)


def effort_tasks(tasks: QuerySet[Task]) -> QuerySet[Task]:
    """The tasks with everything :func:`task_efforts` reads, in a fixed number of queries."""
    versions = MaskVersion.objects.select_related("author_model").order_by("id")
    return tasks.select_related(
        "round__project", "series__volume", "assignee", "reviewer"
    ).prefetch_related(
        Prefetch(
            "lesions",
            queryset=Lesion.objects.order_by("id").prefetch_related(
                Prefetch("mask_versions", queryset=versions)
            ),
        )
    )


def _no_tools() -> dict[str, int]:
    return dict.fromkeys(TOOLS, 0)


def _model_label(version: MaskVersion | None) -> str:
    if version is None:
        return ""
    if version.author_model is not None:
        return version.author_model.name
    return version.author_backend


def task_efforts(tasks: QuerySet[Task], *, with_metrics: bool = True) -> list[TaskEffort]:
    """Effort of every task of ``tasks`` and of each of its lesions (queries do not grow)."""
    task_list = list(effort_tasks(tasks).order_by("round__number", "id"))
    ids = [t.pk for t in task_list]
    spans: dict[tuple[int, int], list[tuple[datetime, datetime, int | None]]] = defaultdict(list)
    for row in ActiveInterval.objects.filter(task_id__in=ids).values_list(
        "task_id", "user_id", "started_at", "ended_at", "lesion_id"
    ):
        spans[(row[0], row[1])].append((row[2], row[3], row[4]))
    signals: dict[tuple[int, int], list[datetime]] = defaultdict(list)
    counts: dict[tuple[int, int | None], dict[str, int]] = defaultdict(_no_tools)
    task_counts: dict[int, dict[str, int]] = defaultdict(_no_tools)
    for task_id, user_id, lesion_id, tool, at in Interaction.objects.filter(
        task_id__in=ids
    ).values_list("task_id", "user_id", "lesion_id", "tool", "at"):
        signals[(task_id, user_id)].append(at)
        counts[(task_id, lesion_id)][tool] = counts[(task_id, lesion_id)].get(tool, 0) + 1
        task_counts[task_id][tool] = task_counts[task_id].get(tool, 0) + 1

    cutoff = idle_cutoff_s()
    seconds: dict[int, dict[int | None, float]] = defaultdict(lambda: defaultdict(float))
    for (task_pk, user_pk), rows in spans.items():
        for lesion_pk, value in active_seconds(
            rows, signals.get((task_pk, user_pk), []), cutoff_s=cutoff
        ).items():
            seconds[task_pk][lesion_pk] += value

    metrics: dict[int, MaskMetrics] = {}
    if with_metrics:
        metrics = mask_metrics(
            {
                lesion.pk: (list(lesion.mask_versions.all()), task.series.volume.spacing)
                for task in task_list
                for lesion in task.lesions.all()
            }
        )

    out = []
    for task in task_list:
        lesions = list(task.lesions.all())
        by_lesion = seconds.get(task.pk, {})
        lesion_ids = {lesion.pk for lesion in lesions}
        unattributed = sum(v for k, v in by_lesion.items() if k not in lesion_ids)
        share = unattributed / len(lesions) if lesions else 0.0
        annotator = task.assignee.get_username() if task.assignee else ""
        reviewer = task.reviewer.get_username() if task.reviewer else ""
        effort = TaskEffort(
            task=task.pk,
            round=task.round.number,
            state=task.state,
            annotator=annotator,
            reviewer=reviewer,
            active_s=sum(by_lesion.values()),
            interactions=dict(task_counts.get(task.pk, _no_tools())),
        )
        for lesion in lesions:
            model, _ = _pair(list(lesion.mask_versions.all()))
            effort.lesions.append(
                LesionEffort(
                    lesion=lesion.pk,
                    lesion_class=lesion.lesion_class,
                    task=task.pk,
                    round=task.round.number,
                    project=task.round.project.slug,
                    annotator=annotator,
                    reviewer=reviewer,
                    model_version=_model_label(model),
                    active_s=by_lesion.get(lesion.pk, 0.0) + share,
                    interactions=dict(counts.get((task.pk, lesion.pk), _no_tools())),
                    metrics=metrics.get(lesion.pk, MaskMetrics()),
                )
            )
        out.append(effort)
    return out


def lesion_efforts(tasks: QuerySet[Task]) -> list[LesionEffort]:
    return [lesion for task in task_efforts(tasks) for lesion in task.lesions]
