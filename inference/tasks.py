from annotator.core import queues
from annotator.core.background import acks_late_task
from inference import encoding, recovery, services, training


@acks_late_task(queue=queues.INTERACTIVE)
def run_segmentation_job(*, job_id: int) -> None:
    services.segmentation_run(job_id=job_id)


# Each delivery encodes for about a minute (encoding.YIELD_AFTER_S) and queues the rest.
@acks_late_task(queue=queues.BATCH)
def run_encoding_job(*, job_id: int) -> None:
    encoding.encoding_run(job_id=job_id)


# Training reads every accepted volume of the project: allow it an hour.
@acks_late_task(queue=queues.TRAIN, soft_time_limit=3600, time_limit=3660)
def run_training_job(*, job_id: int) -> None:
    training.training_run(job_id=job_id)


# Sent by celery beat every SWEEP_INTERVAL_S: a short expiry, so that sweeps queued while no
# worker listened do not pile up.
@acks_late_task(queue=queues.DEFAULT, soft_time_limit=120, time_limit=150)
def sweep() -> None:
    recovery.sweep()
