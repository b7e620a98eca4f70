"""Concurrent "next task" claims on a real database never hand out a task twice."""

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections

from annotator.models import Series, Study
from projects.models import AuditEvent, Membership, Project, Role, Task
from projects.services import membership_set
from projects.task_services import task_claim_next

pytestmark = pytest.mark.django_db(transaction=True)


def claim_in_threads(
    project: Project, users: list[Any], *, limit: int | None = None
) -> list[tuple[int, int]]:
    """Every user claims (and submits) tasks in its own thread, all starting at once, until the
    queue is empty or ``limit`` claims each; returns (task id, user id) per claim."""
    claimed: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(users))

    def work(user: Any) -> None:
        try:
            start.wait()
            count = 0
            while limit is None or count < limit:
                task = task_claim_next(user=user, project=project)
                if task is None:
                    assert limit is None, "the queue ran dry before the limit"
                    break
                claimed.append((task.pk, user.pk))
                Task.objects.filter(pk=task.pk).update(state=Task.State.SUBMITTED)
                count += 1
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return claimed


@pytest.mark.skipif(
    not connection.features.has_select_for_update_skip_locked,
    reason="needs a database with SELECT ... FOR UPDATE SKIP LOCKED (PostgreSQL)",
)
def test_parallel_claims_are_exclusive(
    make_user: Callable[..., Any], make_project: Callable[..., Project]
) -> None:
    project = make_project("race")
    round_ = project.rounds.get()
    study = Study.objects.create(project=project, study_instance_uid="1.2")
    for i in range(60):
        series = Series.objects.create(
            study=study, series_instance_uid=f"1.2.{i}", modality="CT", original_prefix="x/"
        )
        Task.objects.create(round=round_, series=series)
    users = [make_user(f"a{i}") for i in range(12)]
    for user in users:
        membership_set(project=project, user=user, role="annotator")

    claimed = claim_in_threads(project, users, limit=5)
    task_ids = [task_id for task_id, _ in claimed]
    assert len(task_ids) == 60 and len(set(task_ids)) == 60
    owners = dict(Task.objects.values_list("pk", "assignee_id"))
    assert all(owners[task_id] == user_id for task_id, user_id in claimed)


@pytest.mark.skipif(
    not connection.features.has_select_for_update_skip_locked,
    reason="needs a database with SELECT ... FOR UPDATE SKIP LOCKED (PostgreSQL)",
)
def test_fifty_annotators_drain_two_thousand_tasks_exactly_once(
    make_project: Callable[..., Project], make_tasks: Callable[..., list[Task]]
) -> None:
    project = make_project("drain")
    make_tasks(project, 2000, priority=0)
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"d{i}") for i in range(50)
    )
    Membership.objects.bulk_create(
        Membership(user=user, project=project, role=Role.ANNOTATOR) for user in users
    )

    claimed = claim_in_threads(project, users)
    task_ids = [task_id for task_id, _ in claimed]
    assert len(task_ids) == 2000 and len(set(task_ids)) == 2000
    assert not Task.objects.exclude(state=Task.State.SUBMITTED).exists()
    owners = dict(Task.objects.values_list("pk", "assignee_id"))
    assert all(owners[task_id] == user_id for task_id, user_id in claimed)
    assert AuditEvent.objects.filter(action="task.claimed").count() == 2000
