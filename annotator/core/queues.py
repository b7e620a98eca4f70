"""The Celery queues, named for workloads so that workers can be sized per kind of work.

One home for the names: the Celery app declares these queues, settings route to ``DEFAULT``,
tasks name theirs with :func:`annotator.core.background.acks_late_task`, and jobs record theirs.
Pure Python (settings import it)."""

# An annotator is waiting (box and point prompts): served first.
INTERACTIVE = "gpu-interactive"
# Pre-annotating a whole round, pre-encoding volumes.
BATCH = "gpu-batch"
# Retraining a model.
TRAIN = "train"
# Everything else: imports, exports, housekeeping.
DEFAULT = "default"

# In the order a worker that consumes several empties them.
ALL: tuple[str, ...] = (INTERACTIVE, BATCH, TRAIN, DEFAULT)
