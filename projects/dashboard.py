"""The manager's dashboard: throughput, queue depth, effort and model quality per round, and the
annotation cost the model saves.

Cost is active seconds per lesion (:mod:`projects.effort`), over the lesions of finished tasks
(submitted or accepted). The baseline is the manual round: the lowest-numbered round whose
finished lesions have no model mask at all (round 0 when it was run with the model off). Then
``cost_basis == "manual_round"`` and a round's ``cost_reduction`` is
``1 - median active s per lesion of the round / median active s per lesion of the baseline``.

Without a manual round the manual cost is estimated from the slices an annotator had to
re-contour: manual work draws every slice of the final mask; with the model, a slice whose 2D
Dice of model against final is under 0.9 (in either mask: erasing a leaked slice is work too)
was drawn again, the others were not. Then ``cost_basis == "slice_estimate"`` and
``cost_reduction = 1 - slices re-contoured / slices of the final masks`` (summed over the
round's model-annotated lesions; negative when the model made more work than it saved). With
neither, ``cost_basis`` is None.
"""

import csv
import io
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from django.db.models import Count
from django.db.models.functions import TruncDate

from projects.effort import TOOLS, LesionEffort, TaskEffort, task_efforts
from projects.models import Project, Review, Task

DONE = (Task.State.SUBMITTED, Task.State.ACCEPTED)
MANUAL_ROUND = "manual_round"
SLICE_ESTIMATE = "slice_estimate"
COST_DEFINITION = (
    "cost = active seconds per lesion (idle cut-off applied) over lesions of submitted or "
    "accepted tasks; manual_round: cost_reduction = 1 - median cost of the round / median cost "
    "of the baseline round (the first round without model masks); slice_estimate (no manual "
    "round): cost_reduction = 1 - slices re-contoured (2D Dice of model vs final < 0.9) / "
    "slices of the final masks"
)


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _mean(values: Sequence[float]) -> float | None:
    return float(statistics.fmean(values)) if values else None


def queue_depth(*, project: Project) -> list[dict[str, Any]]:
    """Tasks by state for every round of the project."""
    rows: dict[int, dict[str, Any]] = {
        number: {"round": number, **dict.fromkeys(Task.State.values, 0), "total": 0}
        for number in project.rounds.order_by("number").values_list("number", flat=True)
    }
    for row in (
        Task.objects.filter(round__project=project)
        .values("round__number", "state")
        .annotate(n=Count("id"))
    ):
        entry = rows[row["round__number"]]
        entry[row["state"]] = row["n"]
        entry["total"] += row["n"]
    return list(rows.values())


def throughput(*, project: Project) -> list[dict[str, Any]]:
    """Tasks submitted (last submission) and accepted per day and annotator."""
    days: dict[tuple[str, str], dict[str, Any]] = {}

    def entry(day: Any, annotator: str | None) -> dict[str, Any]:
        key = (day.isoformat(), annotator or "")
        return days.setdefault(
            key, {"day": key[0], "annotator": key[1], "submitted": 0, "accepted": 0}
        )

    submitted = (
        Task.objects.filter(round__project=project, submitted_at__isnull=False)
        .annotate(day=TruncDate("submitted_at"))
        .values("day", "assignee__username")
        .annotate(n=Count("id"))
    )
    for row in submitted:
        entry(row["day"], row["assignee__username"])["submitted"] += row["n"]
    accepted = (
        Review.objects.filter(task__round__project=project, decision=Review.Decision.ACCEPT)
        .annotate(day=TruncDate("created"))
        .values("day", "task__assignee__username")
        .annotate(n=Count("task", distinct=True))
    )
    for review in accepted:
        entry(review["day"], review["task__assignee__username"])["accepted"] += review["n"]
    return [days[key] for key in sorted(days)]


def round_summary(number: int, lesions: list[LesionEffort], tasks: int) -> dict[str, Any]:
    active = [lesion.active_s for lesion in lesions]
    modelled = [lesion for lesion in lesions if lesion.metrics.model_dice is not None]
    dices = [m.metrics.model_dice for m in modelled if m.metrics.model_dice is not None]
    hd95s = [m.metrics.model_hd95_mm for m in modelled if m.metrics.model_hd95_mm is not None]
    edited = [m.metrics.edited_fraction for m in modelled if m.metrics.edited_fraction is not None]
    labels = Counter(m.model_version for m in modelled)
    return {
        "round": number,
        "tasks": tasks,
        "lesions": len(lesions),
        "manual": bool(lesions) and not modelled,
        "model_version": labels.most_common(1)[0][0] if labels else None,
        "median_active_s": _median(active),
        "mean_active_s": _mean(active),
        "model_dice_median": _median(dices),
        "model_dice_mean": _mean(dices),
        "model_hd95_median_mm": _median(hd95s),
        "edited_fraction_mean": _mean(edited),
        "accepted_without_edits": (
            sum(bool(m.metrics.accepted_without_edits) for m in modelled) / len(modelled)
            if modelled
            else None
        ),
        "slices": sum(lesion.metrics.slices for lesion in modelled),
        "slices_fixed": sum(lesion.metrics.slices_fixed for lesion in modelled),
        "cost_reduction": None,
    }


def apply_cost_reduction(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Fill each round's ``cost_reduction``; returns the basis and the baseline used."""
    baseline = next(
        (r for r in rounds if r["manual"] and r["median_active_s"]),
        None,
    )
    if baseline is not None:
        for r in rounds:
            if r["median_active_s"] is not None:
                r["cost_reduction"] = 1.0 - r["median_active_s"] / baseline["median_active_s"]
        return {
            "cost_basis": MANUAL_ROUND,
            "baseline_round": baseline["round"],
            "baseline_cost_s": baseline["median_active_s"],
        }
    estimated = [r for r in rounds if r["slices"]]
    for r in estimated:
        r["cost_reduction"] = 1.0 - r["slices_fixed"] / r["slices"]
    return {
        "cost_basis": SLICE_ESTIMATE if estimated else None,
        "baseline_round": None,
        "baseline_cost_s": None,
    }


def annotator_summary(tasks: list[TaskEffort]) -> list[dict[str, Any]]:
    grouped: dict[str, list[TaskEffort]] = defaultdict(list)
    for task in tasks:
        grouped[task.annotator].append(task)
    return [
        {
            "annotator": name,
            "tasks": len(done),
            "lesions": sum(len(t.lesions) for t in done),
            "active_s": sum(t.active_s for t in done),
            "median_active_s": _median([lesion.active_s for t in done for lesion in t.lesions]),
        }
        for name, done in sorted(grouped.items())
    ]


def project_dashboard(*, project: Project) -> dict[str, Any]:
    """Everything the dashboard page draws, in a number of queries that does not grow."""
    efforts = task_efforts(Task.objects.filter(round__project=project, state__in=DONE))
    by_round: dict[int, list[TaskEffort]] = defaultdict(list)
    for task in efforts:
        by_round[task.round].append(task)
    queue = queue_depth(project=project)
    rounds = [
        round_summary(
            row["round"],
            [lesion for task in by_round[row["round"]] for lesion in task.lesions],
            len(by_round[row["round"]]),
        )
        for row in queue
    ]
    cost = apply_cost_reduction(rounds)
    return {
        "project": project.slug,
        **cost,
        "cost_definition": COST_DEFINITION,
        "rounds": rounds,
        "queue": queue,
        "throughput": throughput(project=project),
        "annotators": annotator_summary(efforts),
    }


def _tool_column(tool: str) -> str:
    return "interactions_" + tool.replace("+", "_pos").replace("-", "_neg")


EFFORT_CSV_COLUMNS = [
    "project",
    "round",
    "task",
    "task_state",
    "lesion",
    "lesion_class",
    "annotator",
    "reviewer",
    "model_version",
    "active_s",
    *(_tool_column(tool) for tool in TOOLS),
    "model_dice",
    "model_hd95_mm",
    "edited_fraction",
    "accepted_without_edits",
    "slices",
    "slices_fixed",
]


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if value % 1 else str(int(value))
    return value


def effort_csv(*, project: Project) -> str:
    """One row per lesion of the project (every task state), columns ``EFFORT_CSV_COLUMNS``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EFFORT_CSV_COLUMNS)
    for task in task_efforts(Task.objects.filter(round__project=project)):
        for lesion in task.lesions:
            m = lesion.metrics
            row = [
                lesion.project,
                lesion.round,
                lesion.task,
                task.state,
                lesion.lesion,
                lesion.lesion_class,
                lesion.annotator,
                lesion.reviewer,
                lesion.model_version,
                lesion.active_s,
                *(lesion.interactions.get(tool, 0) for tool in TOOLS),
                m.model_dice,
                m.model_hd95_mm,
                m.edited_fraction,
                m.accepted_without_edits,
                m.slices,
                m.slices_fixed,
            ]
            writer.writerow([_cell(v) for v in row])
    return out.getvalue()
