"""Queue rules: pool or assigned, agreement copies, ordering, stale claims; review rules; audit."""

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from annotator.annotation.services import Author, lesion_create, mask_version_save
from projects.models import AuditEvent, Project, Task
from projects.services import membership_set, project_update
from projects.task_services import (
    task_claim_next,
    task_create,
    task_review,
    task_set_model_confidence,
    task_submit,
    tasks_release_stale,
)

pytestmark = pytest.mark.django_db


def actions(task: Task) -> list[str]:
    return list(
        AuditEvent.objects.filter(task=task).order_by("id").values_list("action", flat=True)
    )


def test_priority_first_then_oldest(
    workspace: dict[str, Any], make_tasks: Callable[..., list[Task]]
) -> None:
    project, user = workspace["project"], workspace["annotator"]
    workspace["task"].delete()
    low, high_old, high_new = (
        make_tasks(project, 1, priority=1)[0],
        make_tasks(project, 1, priority=5)[0],
        make_tasks(project, 1, priority=5)[0],
    )
    order = []
    for _ in range(3):
        task = task_claim_next(user=user, project=project)
        assert task is not None
        order.append(task.pk)
        Task.objects.filter(pk=task.pk).update(state=Task.State.SUBMITTED)
    assert order == [high_old.pk, high_new.pk, low.pk]


def test_low_confidence_ordering_serves_the_least_confident_first(
    workspace: dict[str, Any], make_tasks: Callable[..., list[Task]]
) -> None:
    project, user = workspace["project"], workspace["annotator"]
    workspace["task"].delete()
    unscored, sure, unsure = make_tasks(project, 3, priority=9)
    task_set_model_confidence(task=sure, confidence=0.95)
    task_set_model_confidence(task=unsure, confidence=0.2)
    project_update(project=project, ordering="low_confidence")
    order = []
    for _ in range(3):
        task = task_claim_next(user=user, project=project)
        assert task is not None
        order.append(task.pk)
        Task.objects.filter(pk=task.pk).update(state=Task.State.SUBMITTED)
    assert order == [unsure.pk, sure.pk, unscored.pk]  # no score yet: last


def test_assigned_mode_serves_only_my_assigned_tasks(
    workspace: dict[str, Any], client_for: Callable[[Any], APIClient]
) -> None:
    project, task = workspace["project"], workspace["task"]
    manager = client_for(workspace["manager"])
    response = manager.patch(
        f"/api/projects/{project.slug}/", {"assignment": "assigned"}, format="json"
    )
    assert response.status_code == 200 and response.json()["assignment"] == "assigned"
    annotator = client_for(workspace["annotator"])
    assert annotator.post(f"/api/projects/{project.slug}/tasks/next/").status_code == 204

    response = manager.post(f"/api/tasks/{task.pk}/assign/", {"user": "reviewer"}, format="json")
    assert response.status_code == 400 and "not an annotator" in response.json()["detail"]
    response = manager.post(f"/api/tasks/{task.pk}/assign/", {"user": "annotator"}, format="json")
    assert response.status_code == 200 and response.json()["assignee"] == "annotator"
    mine = annotator.post(f"/api/projects/{project.slug}/tasks/next/").json()
    assert mine["id"] == task.pk and mine["claimed_at"] is not None

    response = manager.post(f"/api/tasks/{task.pk}/release/")
    assert response.status_code == 200 and response.json()["state"] == "unassigned"
    assert annotator.post(f"/api/projects/{project.slug}/tasks/next/").status_code == 204
    assert actions(task) == ["task.assigned", "task.released"]


def test_agreement_study_gives_each_annotator_one_copy(
    workspace: dict[str, Any],
    make_user: Callable[..., Any],
    client_for: Callable[[Any], APIClient],
) -> None:
    project = workspace["project"]
    project_update(project=project, annotators_per_task=2)
    series = workspace["task"].series
    copies = list(Task.objects.filter(series=series).order_by("copy"))
    assert len(copies) == 1  # existing tasks keep their count; new series get N copies
    task_create(series=series)
    copies = list(Task.objects.filter(series=series).order_by("copy"))
    assert [t.copy for t in copies] == [0, 1]

    first, second = workspace["annotator"], make_user("second")
    membership_set(project=project, user=second, role="annotator")
    got = task_claim_next(user=first, project=project)
    assert got is not None
    Task.objects.filter(pk=got.pk).update(state=Task.State.SUBMITTED)
    assert task_claim_next(user=first, project=project) is None  # never the other copy
    other = task_claim_next(user=second, project=project)
    assert other is not None and other.pk != got.pk and other.series_id == got.series_id

    # a manager cannot break the rule either
    Task.objects.filter(pk=other.pk).update(state=Task.State.UNASSIGNED, assignee=None)
    response = client_for(workspace["manager"]).post(
        f"/api/tasks/{other.pk}/assign/", {"user": "annotator"}, format="json"
    )
    assert response.status_code == 409 and "copy" in response.json()["detail"]


def test_stale_claims_return_to_the_pool(
    workspace: dict[str, Any],
    make_tasks: Callable[..., list[Task]],
    phantom: Any,
) -> None:
    project, user = workspace["project"], workspace["annotator"]
    worked, untouched = workspace["task"], make_tasks(project, 1)[0]
    for task in (worked, untouched):
        Task.objects.filter(pk=task.pk).update(
            state=Task.State.ASSIGNED,
            assignee=user,
            claimed_at=timezone.now() - timedelta(hours=5),
        )
        task.refresh_from_db()
    mask_version_save(
        lesion=lesion_create(task=worked, user=user, lesion_class="tumour"),
        mask=phantom.lesion_masks[0],
        source="human",
        author=Author(user=user),
        parent=None,
    )

    assert tasks_release_stale(older_than=timedelta(hours=10)) == 0
    call_command("release_stale_claims", "--older-than-hours", "2")
    untouched.refresh_from_db()
    worked.refresh_from_db()
    assert untouched.state == Task.State.UNASSIGNED and untouched.assignee is None
    assert worked.state == Task.State.ASSIGNED and worked.assignee_id == user.pk
    assert actions(untouched) == ["task.released"]
    assert AuditEvent.objects.get(task=untouched).data["reason"] == "stale"

    # assigned projects are left alone
    project_update(project=project, assignment="assigned")
    Task.objects.filter(pk=untouched.pk).update(
        state=Task.State.ASSIGNED, assignee=user, claimed_at=timezone.now() - timedelta(hours=5)
    )
    assert tasks_release_stale(older_than=timedelta(hours=2)) == 0


def test_reviewer_must_differ_from_the_annotator(
    workspace: dict[str, Any], client_for: Callable[[Any], APIClient]
) -> None:
    project, manager = workspace["project"], workspace["manager"]
    task = task_claim_next(user=manager, project=project)
    assert task is not None
    task_submit(task=task, user=manager)
    client = client_for(manager)
    response = client.post(f"/api/tasks/{task.pk}/review/", {"decision": "accept"}, format="json")
    assert response.status_code == 403
    assert "reviewer must be someone else" in response.json()["detail"]

    project_update(project=project, reviewer_must_differ=False)
    response = client.post(f"/api/tasks/{task.pk}/review/", {"decision": "accept"}, format="json")
    assert response.status_code == 201


def test_reopen_is_a_manager_action_and_audited(
    workspace: dict[str, Any], client_for: Callable[[Any], APIClient]
) -> None:
    project, annotator = workspace["project"], workspace["annotator"]
    task = task_claim_next(user=annotator, project=project)
    assert task is not None
    manager = client_for(workspace["manager"])
    response = manager.post(f"/api/tasks/{task.pk}/reopen/", {"reason": "x"}, format="json")
    assert response.status_code == 409  # only accepted tasks
    task_submit(task=task, user=annotator)
    task_review(task=task, reviewer=workspace["reviewer"], decision="accept")
    editor = client_for(annotator)
    response = editor.post(f"/api/tasks/{task.pk}/lesions/", {"lesion_class": "tumour"})
    assert response.status_code == 409  # accepted: locked

    assert manager.post(f"/api/tasks/{task.pk}/reopen/", {}, format="json").status_code == 400
    response = manager.post(
        f"/api/tasks/{task.pk}/reopen/", {"reason": "the rim was missed"}, format="json"
    )
    assert response.status_code == 200 and response.json()["state"] == "assigned"
    assert response.json()["assignee"] == "annotator"
    response = editor.post(f"/api/tasks/{task.pk}/lesions/", {"lesion_class": "tumour"})
    assert response.status_code == 201

    trail = editor.get(f"/api/tasks/{task.pk}/audit/").json()["results"]
    assert [e["action"] for e in trail] == [
        "task.reopened",
        "task.accepted",
        "review.created",
        "task.submitted",
        "task.claimed",
    ]
    assert trail[0]["actor"] == "manager" and trail[0]["data"]["reason"] == "the rim was missed"


def test_project_audit_filters_and_pages(
    workspace: dict[str, Any],
    make_tasks: Callable[..., list[Task]],
    client_for: Callable[[Any], APIClient],
    phantom: Any,
) -> None:
    project, annotator = workspace["project"], workspace["annotator"]
    task = task_claim_next(user=annotator, project=project)
    assert task is not None
    lesion = lesion_create(task=task, user=annotator, lesion_class="tumour")
    mask_version_save(
        lesion=lesion,
        mask=phantom.lesion_masks[0],
        source="human",
        author=Author(user=annotator),
        parent=None,
    )
    task_submit(task=task, user=annotator)
    task_review(task=task, reviewer=workspace["reviewer"], decision="reject", comment="rim")

    client = client_for(workspace["manager"])
    url = f"/api/projects/{project.slug}/audit/"
    everything = client.get(url).json()
    assert everything["count"] == 5  # claimed, mask saved, submitted, review, rejected
    saved = client.get(url, {"action": "mask.saved"}).json()["results"]
    assert [e["data"]["lesion"] for e in saved] == [lesion.pk]
    by_reviewer = client.get(url, {"user": "reviewer"}).json()["results"]
    assert {e["action"] for e in by_reviewer} == {"review.created", "task.rejected"}
    rejected = client.get(url, {"action": "task.rejected"}).json()["results"][0]
    assert rejected["data"]["comment"] == "rim" and rejected["task"] == task.pk
    assert client.get(url, {"task": "x"}).status_code == 400

    other = make_tasks(project, 60)
    AuditEvent.objects.bulk_create(
        AuditEvent(project=project, task=t, action="task.released") for t in other
    )
    page = client.get(url).json()
    assert page["count"] == 65 and len(page["results"]) == 50 and page["next"]


def test_round_open_is_audited(
    workspace: dict[str, Any], client_for: Callable[[Any], APIClient]
) -> None:
    project: Project = workspace["project"]
    client = client_for(workspace["manager"])
    assert client.post(f"/api/projects/{project.slug}/rounds/").status_code == 201
    event = AuditEvent.objects.get(action="round.opened")
    assert event.actor == workspace["manager"] and event.data == {"round": 1}
