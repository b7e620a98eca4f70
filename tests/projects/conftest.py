"""Cheap tasks in bulk: series rows without images, for queue tests."""

from collections.abc import Callable
from typing import Any

import pytest

from annotator.models import Series, Study
from projects.models import Project, Task


@pytest.fixture
def make_tasks(db: None) -> Callable[..., list[Task]]:
    def make(project: Project, n: int, *, copies: int = 1, **fields: Any) -> list[Task]:
        """``n`` series in the open round, ``copies`` tasks each; ``fields`` set on every task."""
        round_ = project.rounds.get(state="open")
        study, _ = Study.objects.get_or_create(
            project=project, study_instance_uid=f"2.25.{project.pk}"
        )
        first = Series.objects.filter(study=study).count()
        series = Series.objects.bulk_create(
            Series(
                study=study,
                series_instance_uid=f"2.25.{project.pk}.{first + i}",
                modality="CT",
                original_prefix="x/",
            )
            for i in range(n)
        )
        return Task.objects.bulk_create(
            Task(round=round_, series=s, copy=k, **fields) for s in series for k in range(copies)
        )

    return make
