"""Every object is scoped by membership: foreign objects are 404, the wrong role is 403."""

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from annotator.annotation.services import Author, lesion_create, mask_version_save
from inference.models import InferenceJob
from projects.models import AuditEvent, Project, Task
from projects.services import membership_set
from projects.task_services import task_claim_next

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_projects(
    make_user: Callable[..., Any],
    make_project: Callable[..., Project],
    import_volume: Callable[[Project], Any],
    phantom: Any,
) -> dict[str, Any]:
    annotator_a = make_user("ann-a")
    annotator_b = make_user("ann-b")
    project_a = make_project("project-a", annotator=annotator_a)
    project_b = make_project("project-b", annotator=annotator_b)
    import_volume(project_a)
    import_volume(project_b)
    task_b = task_claim_next(user=annotator_b, project=project_b)
    assert task_b is not None
    lesion_b = lesion_create(task=task_b, user=annotator_b, lesion_class="tumour")
    mask_b = mask_version_save(
        lesion=lesion_b,
        mask=phantom.lesion_masks[0],
        source="human",
        author=Author(user=annotator_b),
        parent=None,
    )
    job_b = InferenceJob.objects.create(
        lesion=lesion_b, prompt={}, backend="x", queue="gpu-interactive"
    )
    return {
        "annotator_a": annotator_a,
        "project_a": project_a,
        "project_b": project_b,
        "task_b": task_b,
        "lesion_b": lesion_b,
        "mask_b": mask_b,
        "job_b": job_b,
    }


def test_annotator_of_a_gets_404_for_everything_of_b(
    two_projects: dict[str, Any], client_for: Callable[[Any], APIClient]
) -> None:
    client = client_for(two_projects["annotator_a"])
    b, task, lesion = (
        two_projects["project_b"].slug,
        two_projects["task_b"].pk,
        two_projects["lesion_b"].pk,
    )
    mask, job = two_projects["mask_b"].pk, two_projects["job_b"].pk
    reads = [
        f"/api/projects/{b}/",
        f"/api/projects/{b}/tasks/",
        f"/api/projects/{b}/rounds/",
        f"/api/projects/{b}/members/",
        f"/api/projects/{b}/rounds/0/export/",
        f"/api/projects/{b}/model-versions/",
        f"/api/tasks/{task}/",
        f"/api/tasks/{task}/lesions/",
        f"/api/tasks/{task}/review/",
        f"/api/lesions/{lesion}/",
        f"/api/lesions/{lesion}/masks/",
        f"/api/masks/{mask}/",
        f"/api/masks/{mask}/data/",
        f"/api/jobs/{job}/",
    ]
    for url in reads:
        assert client.get(url).status_code == 404, url
    writes = [
        (f"/api/projects/{b}/tasks/next/", {}),
        (f"/api/projects/{b}/rounds/", {}),
        (f"/api/tasks/{task}/submit/", {}),
        (f"/api/tasks/{task}/review/", {"decision": "accept"}),
        (f"/api/tasks/{task}/lesions/", {"lesion_class": "tumour"}),
        (f"/api/tasks/{task}/effort/", {}),
        (f"/api/lesions/{lesion}/segment/", {"key_slice": 1, "box": [1, 1, 5, 5]}),
    ]
    for url, body in writes:
        assert client.post(url, body, format="json").status_code == 404, url
    assert client.patch(f"/api/projects/{b}/", {"name": "x"}, format="json").status_code == 404
    assert client.delete(f"/api/lesions/{lesion}/").status_code == 404
    listed = client.get("/api/projects/").json()["results"]
    assert [p["slug"] for p in listed] == ["project-a"]


def test_annotator_gets_403_for_manager_actions_in_own_project(
    two_projects: dict[str, Any], client_for: Callable[[Any], APIClient], phantom_file: Any
) -> None:
    client = client_for(two_projects["annotator_a"])
    a = two_projects["project_a"].slug
    assert client.patch(f"/api/projects/{a}/", {"name": "x"}, format="json").status_code == 403
    assert client.get(f"/api/projects/{a}/members/").status_code == 403
    response = client.post(
        f"/api/projects/{a}/members/", {"username": "ann-b", "role": "manager"}, format="json"
    )
    assert response.status_code == 403
    assert client.post(f"/api/projects/{a}/rounds/").status_code == 403
    assert client.get(f"/api/projects/{a}/rounds/0/export/").status_code == 403
    with open(phantom_file, "rb") as f:
        response = client.post(f"/api/projects/{a}/volumes/", {"file": f}, format="multipart")
    assert response.status_code == 403
    assert "manager" in response.json()["detail"]
    # ... while the annotator's own actions are allowed
    assert client.get(f"/api/projects/{a}/").status_code == 200
    assert client.post(f"/api/projects/{a}/tasks/next/").status_code == 200


def test_anonymous_requests_are_refused(two_projects: dict[str, Any]) -> None:
    client = APIClient()
    assert client.get("/api/projects/").status_code in (401, 403)
    assert client.get(f"/api/tasks/{two_projects['task_b'].pk}/").status_code in (401, 403)


def test_token_auth_for_scripts(two_projects: dict[str, Any]) -> None:
    client = APIClient()
    response = client.post(
        "/api/auth/token/", {"username": "ann-a", "password": "pw-ann-a"}, format="json"
    )
    assert response.status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    assert client.get("/api/me/").json()["username"] == "ann-a"
    wrong = APIClient().post(
        "/api/auth/token/", {"username": "ann-a", "password": "nope"}, format="json"
    )
    assert wrong.status_code == 400


def test_reviewer_cannot_claim_and_annotator_cannot_review(
    workspace: dict[str, Any], client_for: Callable[[Any], APIClient]
) -> None:
    slug = workspace["project"].slug
    reviewer = client_for(workspace["reviewer"])
    assert reviewer.post(f"/api/projects/{slug}/tasks/next/").status_code == 403
    annotator = client_for(workspace["annotator"])
    task = annotator.post(f"/api/projects/{slug}/tasks/next/").json()
    response = annotator.post(
        f"/api/tasks/{task['id']}/review/", {"decision": "accept"}, format="json"
    )
    assert response.status_code == 403
    # another annotator of the same project does not see this task at all
    membership_set(project=workspace["project"], user=workspace["outsider"], role="annotator")
    other = client_for(workspace["outsider"])
    assert other.get(f"/api/tasks/{task['id']}/").status_code == 404


@pytest.fixture
def queue_matrix(
    workspace: dict[str, Any],
    make_user: Callable[..., Any],
    make_project: Callable[..., Project],
    make_tasks: Callable[..., list[Task]],
) -> dict[str, Any]:
    """Project alpha with a claimed task and an accepted one; a foreign annotator in beta."""
    project, annotator = workspace["project"], workspace["annotator"]
    claimed = task_claim_next(user=annotator, project=project)
    assert claimed is not None
    accepted = make_tasks(project, 1)[0]
    Task.objects.filter(pk=accepted.pk).update(state=Task.State.ACCEPTED, assignee=annotator)
    foreign = make_user("foreign")
    beta = make_project("beta", annotator=foreign)
    make_tasks(beta, 1)
    beta_task = task_claim_next(user=foreign, project=beta)
    assert beta_task is not None
    return {**workspace, "claimed": claimed, "accepted": accepted, "foreign": foreign}


QUEUE_ENDPOINTS = ["assign", "release", "reopen", "task-audit", "project-audit"]
EXPECTED = {  # role -> status of each endpoint, in QUEUE_ENDPOINTS order
    "anonymous": [403, 403, 403, 403, 403],  # session auth first: 403, not 401
    "foreign": [404, 404, 404, 404, 404],
    "annotator": [403, 403, 403, 200, 403],
    "reviewer": [403, 403, 403, 200, 403],
    "manager": [200, 200, 200, 200, 200],
}


def test_queue_and_audit_endpoints_permission_matrix(
    queue_matrix: dict[str, Any], client_for: Callable[[Any], APIClient]
) -> None:
    slug, claimed, accepted = (
        queue_matrix["project"].slug,
        queue_matrix["claimed"].pk,
        queue_matrix["accepted"].pk,
    )
    requests: dict[str, tuple[str, str, dict[str, Any]]] = {
        "assign": ("post", f"/api/tasks/{claimed}/assign/", {"user": "annotator"}),
        "release": ("post", f"/api/tasks/{claimed}/release/", {}),
        "reopen": ("post", f"/api/tasks/{accepted}/reopen/", {"reason": "recheck"}),
        "task-audit": ("get", f"/api/tasks/{claimed}/audit/", {}),
        "project-audit": ("get", f"/api/projects/{slug}/audit/", {}),
    }
    seen = {}
    for role, expected in EXPECTED.items():  # the manager goes last: its actions change state
        client = APIClient() if role == "anonymous" else client_for(queue_matrix[role])
        for endpoint, status in zip(QUEUE_ENDPOINTS, expected, strict=True):
            method, url, body = requests[endpoint]
            if method == "post":
                response = client.post(url, body, format="json")
            else:
                response = client.get(url)
            assert response.status_code == status, (role, endpoint, response.content)
            if status == 404:
                assert set(response.json()) == {"detail"}  # nothing about the object leaks
            seen[(role, endpoint)] = response

    # the trails hold only this project's events, and the task trail only the task's
    project_tasks = set(Task.objects.filter(round__project__slug=slug).values_list("pk", flat=True))
    trail = seen[("manager", "project-audit")].json()["results"]
    assert trail and {e["task"] for e in trail} <= project_tasks
    assert {e["action"] for e in trail} >= {"task.claimed", "task.assigned", "task.reopened"}
    task_trail = seen[("annotator", "task-audit")].json()["results"]
    assert {e["task"] for e in task_trail} == {claimed}
    assert not AuditEvent.objects.filter(project__slug="beta", task_id__in=project_tasks).exists()
