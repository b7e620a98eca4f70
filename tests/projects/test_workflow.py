"""The task life cycle through the API: claim, lesions, submit, review, rework, lock."""

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from annotator.annotation.services import Author, mask_version_save
from projects.models import Task
from projects.services import round_open
from projects.task_services import task_claim_next

pytestmark = pytest.mark.django_db


def claim(client: APIClient, slug: str) -> dict[str, Any]:
    response = client.post(f"/api/projects/{slug}/tasks/next/")
    assert response.status_code == 200, response.content
    return response.json()


def add_masked_lesion(task_id: int, user: Any, client: APIClient, phantom: Any) -> int:
    lesion = client.post(
        f"/api/tasks/{task_id}/lesions/", {"lesion_class": "tumour"}, format="json"
    ).json()
    from annotator.models import Lesion

    mask_version_save(
        lesion=Lesion.objects.get(pk=lesion["id"]),
        mask=phantom.lesion_masks[0],
        source="human",
        author=Author(user=user),
        parent=None,
    )
    return int(lesion["id"])


def test_reject_returns_the_task_to_the_same_annotator_with_the_comment(
    workspace: dict[str, Any], client_for: Callable[[Any], APIClient], phantom: Any
) -> None:
    slug = workspace["project"].slug
    annotator = client_for(workspace["annotator"])
    reviewer = client_for(workspace["reviewer"])
    task = claim(annotator, slug)
    assert task["state"] == "assigned" and task["assignee"] == "annotator"
    add_masked_lesion(task["id"], workspace["annotator"], annotator, phantom)
    assert annotator.post(f"/api/tasks/{task['id']}/submit/").json()["state"] == "submitted"

    waiting = reviewer.get(f"/api/projects/{slug}/tasks/?state=submitted").json()
    assert [t["id"] for t in waiting["results"]] == [task["id"]]
    response = reviewer.post(f"/api/tasks/{task['id']}/review/", {"decision": "reject"})
    assert response.status_code == 400 and "comment" in response.json()
    response = reviewer.post(
        f"/api/tasks/{task['id']}/review/",
        {"decision": "reject", "comment": "the lower slices miss the rim"},
        format="json",
    )
    assert response.status_code == 201

    again = claim(annotator, slug)  # the annotator's "next" gives the rejected task back first
    assert again["id"] == task["id"] and again["state"] == "rejected"
    assert again["last_review"]["comment"] == "the lower slices miss the rim"
    assert again["assignee"] == "annotator"
    assert annotator.post(f"/api/tasks/{task['id']}/submit/").json()["state"] == "submitted"
    reviewer.post(f"/api/tasks/{task['id']}/review/", {"decision": "accept"}, format="json")
    assert Task.objects.get(pk=task["id"]).state == Task.State.ACCEPTED


def test_accepted_tasks_are_locked(
    workspace: dict[str, Any], client_for: Callable[[Any], APIClient], phantom: Any
) -> None:
    slug = workspace["project"].slug
    annotator = client_for(workspace["annotator"])
    task = claim(annotator, slug)
    lesion = add_masked_lesion(task["id"], workspace["annotator"], annotator, phantom)
    annotator.post(f"/api/tasks/{task['id']}/submit/")
    client_for(workspace["reviewer"]).post(
        f"/api/tasks/{task['id']}/review/", {"decision": "accept"}, format="json"
    )
    response = annotator.patch(f"/api/lesions/{lesion}/", {"lesion_class": "node"}, format="json")
    assert response.status_code == 409
    assert annotator.delete(f"/api/lesions/{lesion}/").status_code == 409
    assert annotator.post(f"/api/tasks/{task['id']}/submit/").status_code == 409
    again = client_for(workspace["reviewer"]).post(
        f"/api/tasks/{task['id']}/review/", {"decision": "reject", "comment": "x"}, format="json"
    )
    assert again.status_code == 409


def test_submit_needs_a_mask_on_every_lesion(
    workspace: dict[str, Any], client_for: Callable[[Any], APIClient]
) -> None:
    annotator = client_for(workspace["annotator"])
    task = claim(annotator, workspace["project"].slug)
    annotator.post(f"/api/tasks/{task['id']}/lesions/", {"lesion_class": "tumour"}, format="json")
    response = annotator.post(f"/api/tasks/{task['id']}/submit/")
    assert response.status_code == 409
    assert "no mask" in response.json()["detail"]


def test_next_task_is_204_when_the_queue_is_empty_and_never_hands_out_a_task_twice(
    workspace: dict[str, Any], make_user: Callable[..., Any]
) -> None:
    from projects.services import membership_set

    project = workspace["project"]
    first = task_claim_next(user=workspace["annotator"], project=project)
    assert first is not None
    second_user = make_user("second")
    membership_set(project=project, user=second_user, role="annotator")
    assert task_claim_next(user=second_user, project=project) is None
    # the first annotator gets their own task back rather than a new one
    assert task_claim_next(user=workspace["annotator"], project=project) == first


def test_lesion_validation_gives_field_messages(
    workspace: dict[str, Any], client_for: Callable[[Any], APIClient]
) -> None:
    annotator = client_for(workspace["annotator"])
    task = claim(annotator, workspace["project"].slug)
    url = f"/api/tasks/{task['id']}/lesions/"
    response = annotator.post(url, {"lesion_class": "banana"}, format="json")
    assert response.status_code == 400 and "lesion_class" in response.json()
    response = annotator.post(
        url, {"lesion_class": "tumour", "key_slice": 3, "box": [10, 10, 500, 20]}, format="json"
    )
    assert response.status_code == 400 and "box" in response.json()
    response = annotator.post(url, {"lesion_class": "tumour", "key_slice": 999}, format="json")
    assert response.status_code == 400 and "key_slice" in response.json()


def test_manager_creates_a_project_and_a_plain_user_cannot(
    team: dict[str, Any], client_for: Callable[[Any], APIClient]
) -> None:
    body = {
        "name": "Liver",
        "slug": "liver",
        "modality": "CT",
        "lesion_classes": [{"name": "HCC"}, {"name": "cyst", "color": "#00ff00"}],
    }
    response = client_for(team["manager"]).post("/api/projects/", body, format="json")
    assert response.status_code == 201, response.content
    project = response.json()
    assert project["my_role"] == "manager" and project["current_round"] == 0
    assert [c["name"] for c in project["lesion_classes"]] == ["HCC", "cyst"]
    assert project["window_presets"][0]["name"] == "Soft tissue"
    again = client_for(team["manager"]).post("/api/projects/", body, format="json")
    assert again.status_code == 400 and "slug" in again.json()
    body["slug"] = "other"
    assert (
        client_for(team["outsider"]).post("/api/projects/", body, format="json").status_code == 403
    )
    bad = client_for(team["manager"]).post(
        "/api/projects/", {**body, "slug": "x", "modality": "XR"}, format="json"
    )
    assert bad.status_code == 400 and "modality" in bad.json()


def test_a_new_round_takes_new_imports(
    workspace: dict[str, Any], import_volume: Callable[..., Any]
) -> None:
    project = workspace["project"]
    round_1 = round_open(project=project)
    assert round_1.number == 1
    assert project.rounds.get(number=0).state == "closed"
    imported = import_volume(project)
    assert imported.task is not None and imported.task.round == round_1
