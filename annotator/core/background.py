"""The one task decorator every Celery task uses.

Tasks are thin shims over services: they take primary keys as keyword arguments, load, and call a
service. They are declared with Celery's ``shared_task``, so an app's ``tasks.py`` does not import
the site's Celery application (``annotator.celery``, the shell): the task joins whichever app is
current when it is first used, and its queue travels with it.
"""

from collections.abc import Callable
from typing import Any

from celery import shared_task

from annotator.core import queues

# Task name -> its queue, for messages sent by name (celery beat, another process): the Celery
# app routes with this very dict (``annotator.celery``), filled as the tasks are declared.
ROUTES: dict[str, dict[str, str]] = {}


def acks_late_task(
    *, queue: str, soft_time_limit: int = 600, time_limit: int = 660, max_retries: int = 0
) -> Callable[[Callable[..., Any]], Any]:
    """Register a task routed to ``queue`` with the delivery guarantees every task needs.

    ``acks_late`` + ``reject_on_worker_lost`` put the message back when a worker dies mid-task, so
    every task must be idempotent (lock the row, check its state, return early if done).
    """
    if queue not in queues.ALL:
        raise ValueError(f"unknown queue {queue!r}; expected one of {queues.ALL}")

    def decorator(func: Callable[..., Any]) -> Any:
        name = f"{func.__module__}.{func.__name__}"
        ROUTES[name] = {"queue": queue}
        return shared_task(
            name=name,
            queue=queue,
            acks_late=True,
            reject_on_worker_lost=True,
            soft_time_limit=soft_time_limit,
            time_limit=time_limit,
            max_retries=max_retries,
        )(func)

    return decorator
