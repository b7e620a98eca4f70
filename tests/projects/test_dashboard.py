"""The manager's dashboard and effort table: exact aggregates, CSV, permissions, query count."""

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from annotator.annotation.services import Author, effort_record, lesion_create, mask_version_save
from annotator.models import Series, Volume
from projects.models import Project, Task
from projects.services import membership_set, round_open
from projects.task_services import task_claim_next, task_review, task_submit

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def block(shape: tuple[int, int, int], z: range) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[z.start : z.stop, 40:50, 40:50] = True
    return mask


def finish(
    project: Project, user: Any, *, seconds: float, model: bool = False, edit: bool = False
) -> Task:
    """Claim the next task, draw one lesion, spend ``seconds`` on it (a brush stroke a minute,
    so nothing is idle) and submit. A model lesion is 4 slices; the edit erases its top one."""
    task = task_claim_next(user=user, project=project)
    assert task is not None
    lesion = lesion_create(task=task, user=user, lesion_class="tumour")
    shape = task.series.volume.shape_zyx
    if model:
        mask_version_save(
            lesion=lesion, mask=block(shape, range(10, 14)), source="model",
            author=Author(backend="test-model"),
        )  # fmt: skip
    if edit or not model:
        final = block(shape, range(10, 13))
        mask_version_save(lesion=lesion, mask=final, source="human", author=Author(user=user))
    start = T0 + timedelta(hours=task.pk)
    effort_record(
        task=task,
        user=user,
        intervals=[
            {
                "started_at": start,
                "ended_at": start + timedelta(seconds=seconds),
                "lesion": lesion.pk,
            }
        ],
        interactions=[
            {"tool": "brush", "at": start + timedelta(seconds=60 * k), "lesion": lesion.pk}
            for k in range(int(seconds // 60) + 1)
        ],
    )
    return task_submit(task=task, user=user)


@pytest.fixture
def campaign(
    make_user: Callable[..., Any],
    make_project: Callable[..., Project],
    import_volume: Callable[[Project], Any],
) -> dict[str, Any]:
    """Round 0 by hand (100 s and 200 s per lesion), round 1 with the model (20 s and 30 s)."""
    a1, a2, reviewer = make_user("a1"), make_user("a2"), make_user("rev")
    project = make_project("liver", annotator=a1, reviewer=reviewer)
    membership_set(project=project, user=a2, role="annotator")
    import_volume(project)
    import_volume(project)
    first = finish(project, a1, seconds=100)
    finish(project, a2, seconds=200)
    task_review(task=first, reviewer=reviewer, decision="accept")
    round_open(project=project)
    import_volume(project)
    import_volume(project)
    finish(project, a1, seconds=20, model=True)
    finish(project, a2, seconds=30, model=True, edit=True)
    manager = project.memberships.get(role="manager").user
    return {"project": project, "manager": manager, "a1": a1, "a2": a2, "reviewer": reviewer}


def test_dashboard_aggregates(
    campaign: dict[str, Any], client_for: Callable[..., APIClient]
) -> None:
    response = client_for(campaign["manager"]).get("/api/projects/liver/dashboard/")
    assert response.status_code == 200
    body = response.json()
    assert body["cost_basis"] == "manual_round"
    assert body["baseline_round"] == 0
    assert body["baseline_cost_s"] == 150
    r0, r1 = body["rounds"]
    assert r0 | {"cost_reduction": None} == {
        "round": 0, "tasks": 2, "lesions": 2, "manual": True, "model_version": None,
        "median_active_s": 150.0, "mean_active_s": 150.0, "model_dice_median": None,
        "model_dice_mean": None, "model_hd95_median_mm": None, "edited_fraction_mean": None,
        "accepted_without_edits": None, "slices": 0, "slices_fixed": 0, "cost_reduction": None,
    }  # fmt: skip
    assert r0["cost_reduction"] == 0.0
    assert r1["manual"] is False and r1["model_version"] == "test-model"
    assert r1["median_active_s"] == 25.0
    assert r1["model_dice_median"] == pytest.approx((1 + 6 / 7) / 2)
    assert r1["model_dice_mean"] == pytest.approx((1 + 6 / 7) / 2)
    assert r1["model_hd95_median_mm"] == pytest.approx(1.25)  # (0 + 2.5 mm) / 2
    assert r1["edited_fraction_mean"] == pytest.approx(0.125)
    assert r1["accepted_without_edits"] == 0.5
    assert (r1["slices"], r1["slices_fixed"]) == (7, 1)
    assert r1["cost_reduction"] == pytest.approx(1 - 25 / 150)

    states = {"unassigned": 0, "assigned": 0, "rejected": 0}
    keys = {"round", "total", *Task.State.values}
    assert [{k: v for k, v in q.items() if k in keys} for q in body["queue"]] == [
        {"round": 0, **states, "submitted": 1, "accepted": 1, "total": 2},
        {"round": 1, **states, "submitted": 2, "accepted": 0, "total": 2},
    ]  # fmt: skip
    today = timezone.localdate().isoformat()
    assert body["throughput"] == [
        {"day": today, "annotator": "a1", "submitted": 2, "accepted": 1},
        {"day": today, "annotator": "a2", "submitted": 2, "accepted": 0},
    ]
    assert body["annotators"] == [
        {"annotator": "a1", "tasks": 2, "lesions": 2, "active_s": 120.0, "median_active_s": 60.0},
        {"annotator": "a2", "tasks": 2, "lesions": 2, "active_s": 230.0, "median_active_s": 115.0},
    ]


def test_without_a_manual_round_the_cost_is_estimated_from_the_slices_fixed(
    make_user: Callable[..., Any],
    make_project: Callable[..., Project],
    import_volume: Callable[[Project], Any],
    client_for: Callable[..., APIClient],
) -> None:
    annotator = make_user("ann")
    project = make_project("lung", annotator=annotator)
    import_volume(project)
    finish(project, annotator, seconds=30, model=True, edit=True)
    manager = project.memberships.get(role="manager").user
    body = client_for(manager).get("/api/projects/lung/dashboard/").json()
    assert body["cost_basis"] == "slice_estimate" and body["baseline_round"] is None
    assert body["rounds"][0]["cost_reduction"] == pytest.approx(1 - 1 / 3)


def test_effort_csv(campaign: dict[str, Any], client_for: Callable[..., APIClient]) -> None:
    response = client_for(campaign["manager"]).get("/api/projects/liver/effort.csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="liver-effort.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert list(rows[0]) == [
        "project", "round", "task", "task_state", "lesion", "lesion_class", "annotator",
        "reviewer", "model_version", "active_s", "interactions_box", "interactions_point_pos",
        "interactions_point_neg", "interactions_brush", "interactions_eraser",
        "interactions_threshold", "interactions_propagate", "interactions_undo",
        "interactions_redo",
        "model_dice", "model_hd95_mm", "edited_fraction", "accepted_without_edits", "slices",
        "slices_fixed",
    ]  # fmt: skip
    assert len(rows) == 4
    edited = rows[-1]
    assert edited["project"] == "liver" and edited["round"] == "1"
    assert edited["annotator"] == "a2" and edited["task_state"] == "submitted"
    assert edited["model_version"] == "test-model"
    assert edited["active_s"] == "30" and edited["interactions_brush"] == "1"
    assert edited["model_dice"] == "0.8571" and edited["model_hd95_mm"] == "2.5"
    assert edited["edited_fraction"] == "0.25" and edited["accepted_without_edits"] == "false"
    assert (edited["slices"], edited["slices_fixed"]) == ("3", "1")
    manual = rows[0]
    assert manual["reviewer"] == "rev" and manual["model_dice"] == ""
    assert manual["active_s"] == "100" and manual["interactions_brush"] == "2"


@pytest.mark.parametrize(
    "url", ["/api/projects/alpha/dashboard/", "/api/projects/alpha/effort.csv"]
)
def test_only_managers_see_the_dashboard(
    url: str, workspace: dict[str, Any], client_for: Callable[..., APIClient]
) -> None:
    assert client_for(workspace["manager"]).get(url).status_code == 200
    assert client_for(workspace["annotator"]).get(url).status_code == 403
    assert client_for(workspace["reviewer"]).get(url).status_code == 403
    assert client_for(workspace["outsider"]).get(url).status_code == 404
    assert APIClient().get(url).status_code in (401, 403)


def test_dashboard_queries_do_not_grow_with_tasks(
    make_user: Callable[..., Any],
    make_project: Callable[..., Project],
    import_volume: Callable[[Project], Any],
    client_for: Callable[..., APIClient],
) -> None:
    annotator = make_user("ann")
    project = make_project("bulk", annotator=annotator)
    series = import_volume(project).series
    volume = series.volume

    def grow(n: int) -> None:
        """n more finished tasks on copies of the series (same voxels, no new import)."""
        for _ in range(n):
            copy = Series.objects.create(
                study=series.study,
                series_instance_uid=f"2.25.{Series.objects.count() + 1}",  # UIDs are <= 64 chars
                modality=series.modality,
                original_prefix=series.original_prefix,
            )
            Volume.objects.create(
                series=copy, storage_key=volume.storage_key, size=volume.size,
                spacing=volume.spacing, origin=volume.origin, direction=volume.direction,
                pixel_type=volume.pixel_type,
            )  # fmt: skip
            Task.objects.create(round=project.rounds.get(), series=copy, priority=10)
            finish(project, annotator, seconds=30, model=True, edit=True)

    client = client_for(project.memberships.get(role="manager").user)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/api/projects/bulk/dashboard/").status_code == 200
        return len(captured)

    grow(5)
    small = queries()
    grow(15)
    assert queries() == small
    assert Task.objects.filter(state="submitted").count() == 20
