"""List endpoints cost a fixed number of queries, however many rows they return."""

from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from projects.models import AuditEvent, Project, Task
from projects.services import membership_set
from projects.task_services import task_claim_next, task_review, task_submit

pytestmark = pytest.mark.django_db


def queries(client: APIClient, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_list_queries_do_not_grow_with_rows(
    make_user: Callable[..., Any],
    make_project: Callable[..., Project],
    import_volume: Callable[[Project], Any],
    client_for: Callable[[Any], APIClient],
) -> None:
    manager = make_user("boss", can_create_projects=True)
    reviewer = make_user("rev")
    client = client_for(manager)

    def grow(n: int) -> None:
        for i in range(n):
            project = make_project(f"p{Project.objects.count()}-{i}", manager=manager)
            membership_set(project=project, user=reviewer, role="reviewer")
            import_volume(project)
            task = task_claim_next(user=manager, project=project)
            assert task is not None
            task_submit(task=task, user=manager)
            task_review(task=task, reviewer=reviewer, decision="reject", comment="again")

    grow(1)
    slug = Project.objects.first().slug  # type: ignore[union-attr]
    small = {
        url: queries(client, url) for url in ["/api/projects/", f"/api/projects/{slug}/tasks/"]
    }
    grow(4)
    for _ in range(3):
        import_volume(Project.objects.get(slug=slug))
    large = {url: queries(client, url) for url in small}
    assert large == small


def test_next_task_and_audit_lists_cost_the_same_with_10x_the_tasks(
    workspace: dict[str, Any],
    make_tasks: Callable[..., list[Task]],
    client_for: Callable[[Any], APIClient],
) -> None:
    project, task = workspace["project"], workspace["task"]
    annotator = client_for(workspace["annotator"])
    manager = client_for(workspace["manager"])
    slug = project.slug

    def next_queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            response = annotator.post(f"/api/projects/{slug}/tasks/next/")
            assert response.status_code == 200
        Task.objects.filter(pk=response.json()["id"]).update(state=Task.State.SUBMITTED)
        return len(captured)

    def audit_rows(n: int) -> None:
        AuditEvent.objects.bulk_create(
            AuditEvent(project=project, task=task, actor=workspace["annotator"], action="x")
            for _ in range(n)
        )

    urls = [
        f"/api/projects/{slug}/tasks/",
        f"/api/projects/{slug}/audit/",
        f"/api/projects/{slug}/audit/?action=x",
        f"/api/tasks/{task.pk}/audit/",
    ]
    make_tasks(project, 5)
    audit_rows(5)
    next_queries()  # the first claim of the session warms nothing up: count from the second
    small = {"next": next_queries(), **{url: queries(manager, url) for url in urls}}
    make_tasks(project, 50)
    audit_rows(50)
    large = {"next": next_queries(), **{url: queries(manager, url) for url in urls}}
    assert large == small
