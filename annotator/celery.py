"""The Celery application (the site shell: the apps' tasks do not import it; they are declared
with :func:`annotator.core.background.acks_late_task`, which binds them to this app when it loads).

Queues are named for workloads so that workers can be sized per kind of work:

- ``gpu-interactive``: an annotator is waiting (box and point prompts); served first.
- ``gpu-batch``: pre-annotating a whole round.
- ``train``: retraining a model.
- ``default``: everything else (imports, exports, housekeeping: the periodic sweep below).
"""

import os
from typing import Any

from celery import Celery
from celery.signals import worker_init
from kombu import Queue

from annotator.core import queues
from annotator.core.background import ROUTES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "annotator.settings")

app = Celery("annotator")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

QUEUES = queues.ALL
app.conf.task_queues = tuple(Queue(name, routing_key=name) for name in QUEUES)
app.conf.task_routes = ROUTES


@app.on_after_finalize.connect
def _schedule_sweep(sender: Celery, **kwargs: Any) -> None:
    """``celery beat`` sends the sweep (inference.recovery: jobs whose worker is gone, mask
    files whose version never committed) every ``SWEEP_INTERVAL_S``; a sweep nobody took
    within that time expires rather than pile up behind a dead worker."""
    from django.conf import settings

    interval = settings.SWEEP_INTERVAL_S
    sender.add_periodic_task(
        interval, sender.signature("inference.tasks.sweep"), name="sweep", expires=interval
    )


# Settings of the engine, which imports no Django and reads them from the environment.
ENGINE_ENVIRONMENT = ("LITEMEDSAM_EMBEDDINGS_DIR", "LITEMEDSAM_EMBEDDINGS_MB")


@worker_init.connect
def _engine_environment(**kwargs: Any) -> None:
    """A worker gives the engine its settings (before its pool starts: every process has
    them), so the backends it builds keep their embeddings where the settings say."""
    from django.conf import settings

    for name in ENGINE_ENVIRONMENT:
        os.environ[name] = str(getattr(settings, name))
