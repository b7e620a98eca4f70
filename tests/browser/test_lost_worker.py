"""A job whose worker died, on the manager's rounds page in a real browser.

A round's batch job is left "running" by a worker of another machine that stopped answering
(its heartbeat a minute old). Headless Chromium signs in as the manager and opens the rounds
page: reading the round's progress re-queues the job (its message goes to the real broker,
where no worker listens), and the card shows it with the reason. Screenshot:
test-artifacts/browser/ (or $BROWSER_ARTIFACTS).
"""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from annotator.celery import app
from annotator.core.queues import BATCH as BATCH_QUEUE
from annotator.models import Lesion
from inference.engine import Phantom, key_slice_and_box
from inference.models import InferenceJob
from inference.services import segmentation_enqueue
from projects.models import Project
from tests.browser.harness import BrowserRunner
from tests.support.worker import purge_queues

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def real_broker() -> Iterator[None]:
    """Messages go to the configured broker (no worker takes them) instead of running inline."""
    app.conf.task_always_eager = False
    purge_queues()
    try:
        yield
    finally:
        purge_queues()
        app.conf.task_always_eager = settings.CELERY_TASK_ALWAYS_EAGER


def test_the_rounds_page_shows_a_job_requeued_after_its_worker_was_lost(
    run_browser: BrowserRunner,
    real_broker: None,
    workspace: dict[str, Any],
    phantom: Phantom,
) -> None:
    project: Project = workspace["project"]
    manager = workspace["manager"]
    manager.set_password("mgr-pw")
    manager.save()
    key_slice, box = key_slice_and_box(phantom.lesion_masks[0])
    lesion = Lesion.objects.create(
        task=workspace["task"], lesion_class="tumour", key_slice=key_slice, box=list(box)
    )
    job = segmentation_enqueue(lesion=lesion, user=manager, queue=BATCH_QUEUE)
    InferenceJob.objects.filter(pk=job.pk).update(
        state="running",
        attempts=1,
        worker="gpu3:5150:4026531836",
        started_at=timezone.now() - timedelta(minutes=2),
        heartbeat_at=timezone.now() - timedelta(minutes=1),
    )

    record = run_browser(
        "lost_worker.mjs", username=manager.username, password="mgr-pw", slug=project.slug
    )
    shown = record["result"]
    assert len(record["artifacts"]) == 1, record["artifacts"]
    assert shown["heading"] == "Re-queued (1)"
    [row] = shown["rows"]
    assert f"#{job.pk}" in row and "Worker lost; re-queued (attempt 2 of 3)" in row
    assert shown["title"].startswith("worker lost: gpu3 (process 5150) stopped during attempt 1")
    assert "1 re-queued after a lost worker" in shown["progress"]
    job.refresh_from_db()
    assert job.state == "queued" and job.notice.endswith("re-queued (attempt 2 of 3)")
